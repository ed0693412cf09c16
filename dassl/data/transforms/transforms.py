"""Image transforms built from ``cfg.INPUT`` (Dassl's ``build_transform``).

Training pipeline, in this order, for the names in ``cfg.INPUT.TRANSFORMS``:
resize (unless a crop sets the size), random_translation, random_crop, random_resized_crop,
random_flip, the auto-augment policies, the randaugment variants, colorjitter,
randomgrayscale, gaussian_blur, to-tensor, cutout, normalize, gaussian_noise, instance_norm.
Test pipeline: resize the shorter edge to max(INPUT.SIZE), center crop INPUT.SIZE, to-tensor,
normalize and instance_norm if chosen (no augmentation).
"""
import random

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

from dassl.utils import UserValueError

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # always part of the test pipeline; a no-op name for training
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

# The choices that draw something at random, so that an image's tensor differs between reads.
RANDOM_CHOICES = ("random_flip", "random_resized_crop", "random_crop", "random_translation", "cutout",
                  "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment", "randaugment_fixmatch",
                  "randaugment2", "gaussian_noise", "colorjitter", "randomgrayscale", "gaussian_blur")


def random_choices(cfg):
    """The random transforms among cfg.INPUT.TRANSFORMS (empty: every read gives the same tensor)."""
    return [t for t in cfg.INPUT.TRANSFORMS if t in RANDOM_CHOICES]


INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class Random2DTranslation:
    """With probability ``p`` resize to 1.125x (height, width) and random-crop back to
    (height, width); otherwise just resize to (height, width)."""

    def __init__(self, height, width, p=0.5, interpolation=InterpolationMode.BILINEAR):
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_w, new_h = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        img = F.resize(img, [new_h, new_w], interpolation=self.interpolation)
        x1 = int(round(random.uniform(0, new_w - self.width)))
        y1 = int(round(random.uniform(0, new_h - self.height)))
        return F.crop(img, y1, x1, self.height, self.width)


class InstanceNormalization:
    """Normalize a CxHxW tensor by its own per-channel mean and std."""

    def __init__(self, eps=1e-8):
        self.eps = eps

    def __call__(self, img):
        flat = img.reshape(img.shape[0], -1)
        mean = flat.mean(1).view(-1, 1, 1)
        std = flat.std(1).view(-1, 1, 1)
        return (img - mean) / (std + self.eps)


class Cutout:
    """Zero ``n_holes`` random square patches of side ``length`` of a CxHxW tensor."""

    def __init__(self, n_holes=1, length=16):
        self.n_holes, self.length = n_holes, length

    def __call__(self, img):
        h, w = img.shape[1], img.shape[2]
        mask = np.ones((h, w), np.float32)
        for _ in range(self.n_holes):
            y, x = np.random.randint(h), np.random.randint(w)
            y1, y2 = np.clip([y - self.length // 2, y + self.length // 2], 0, h)
            x1, x2 = np.clip([x - self.length // 2, x + self.length // 2], 0, w)
            mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)


class GaussianNoise:
    """With probability ``p`` add N(mean, std^2) noise to a tensor."""

    def __init__(self, mean=0, std=0.15, p=0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


class RandomMagnitudeRandAugment:
    """``n`` RandAugment ops, each applied with probability ``p`` at a magnitude drawn
    uniformly per op (Dassl's randaugment_fixmatch with p=1, randaugment2 with p=0.6)."""

    def __init__(self, n=2, p=1.0):
        self.n, self.p = n, p

    def __call__(self, img):
        for _ in range(self.n):
            if random.random() <= self.p:
                img = T.RandAugment(num_ops=1, magnitude=random.randint(0, 30), num_magnitude_bins=31)(img)
        return img


def _interpolation(cfg):
    mode = cfg.INPUT.INTERPOLATION
    if mode not in INTERPOLATION_MODES:
        raise UserValueError(f"INPUT.INTERPOLATION {mode!r} is not one of {sorted(INTERPOLATION_MODES)}")
    return INTERPOLATION_MODES[mode]


def build_transform(cfg, is_train=True, choices=None):
    """Build the training (``is_train``) or test transform.

    Args:
        cfg (CfgNode): config; reads ``cfg.INPUT``.
        is_train (bool): training pipeline (augmentation) or test pipeline.
        choices (list, optional): transform names overriding ``cfg.INPUT.TRANSFORMS``.

    Returns ``None`` when ``cfg.INPUT.NO_TRANSFORM``, else a ``torchvision`` Compose.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    unknown = [c for c in choices if c not in AVAI_CHOICES]
    if unknown:
        raise UserValueError(f"INPUT.TRANSFORMS: unknown transform(s) {unknown}; valid names: {', '.join(AVAI_CHOICES)}")
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    build = _build_transform_train if is_train else _build_transform_test
    return build(cfg, choices, f"{cfg.INPUT.SIZE[0]}x{cfg.INPUT.SIZE[1]}", normalize)


def _build_transform_train(cfg, choices, target_size, normalize):
    print("Building transform_train")
    inp = cfg.INPUT
    interp = _interpolation(cfg)
    size = inp.SIZE
    tfm = []

    def add(message, transform):
        print(f"+ {message}")
        tfm.append(transform)

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        add(f"resize to {target_size}", T.Resize(size, interpolation=interp))
    if "random_translation" in choices:
        add("random translation", Random2DTranslation(size[0], size[1]))
    if "random_crop" in choices:
        add(f"random crop (padding = {inp.CROP_PADDING})", T.RandomCrop(size, padding=inp.CROP_PADDING))
    if "random_resized_crop" in choices:
        add(f"random resized crop (size={size}, scale={inp.RRCROP_SCALE})",
            T.RandomResizedCrop(size, scale=inp.RRCROP_SCALE, interpolation=interp))
    if "random_flip" in choices:
        add("random flip", T.RandomHorizontalFlip())
    for name, policy in (("imagenet_policy", "IMAGENET"), ("cifar10_policy", "CIFAR10"), ("svhn_policy", "SVHN")):
        if name in choices:
            add(name.replace("_", " "), T.AutoAugment(getattr(T.AutoAugmentPolicy, policy)))
    if "randaugment" in choices:
        add(f"randaugment (n={inp.RANDAUGMENT_N}, m={inp.RANDAUGMENT_M})",
            T.RandAugment(num_ops=inp.RANDAUGMENT_N, magnitude=inp.RANDAUGMENT_M, num_magnitude_bins=31))
    if "randaugment_fixmatch" in choices:
        add(f"randaugment_fixmatch (n={inp.RANDAUGMENT_N})", RandomMagnitudeRandAugment(inp.RANDAUGMENT_N))
    if "randaugment2" in choices:
        add(f"randaugment2 (n={inp.RANDAUGMENT_N})", RandomMagnitudeRandAugment(inp.RANDAUGMENT_N, p=0.6))
    if "colorjitter" in choices:
        b, c, s, h = inp.COLORJITTER_B, inp.COLORJITTER_C, inp.COLORJITTER_S, inp.COLORJITTER_H
        add(f"color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})",
            T.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))
    if "randomgrayscale" in choices:
        add("random gray scale", T.RandomGrayscale(p=inp.RGS_P))
    if "gaussian_blur" in choices:
        add(f"gaussian blur (kernel={inp.GB_K})", T.RandomApply([T.GaussianBlur(inp.GB_K)], p=inp.GB_P))
    add("to torch tensor of range [0, 1]", T.ToTensor())
    if "cutout" in choices:
        add(f"cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})", Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN))
    if "normalize" in choices:
        add(f"normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})", normalize)
    if "gaussian_noise" in choices:
        add(f"gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})", GaussianNoise(inp.GN_MEAN, inp.GN_STD))
    if "instance_norm" in choices:
        add("instance normalization", InstanceNormalization())
    return T.Compose(tfm)


def _build_transform_test(cfg, choices, target_size, normalize):
    print("Building transform_test")
    interp = _interpolation(cfg)
    size = cfg.INPUT.SIZE
    print(f"+ resize the smaller edge to {max(size)}")
    print(f"+ {target_size} center crop")
    print("+ to torch tensor of range [0, 1]")
    tfm = [T.Resize(max(size), interpolation=interp), T.CenterCrop(size), T.ToTensor()]
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return T.Compose(tfm)
