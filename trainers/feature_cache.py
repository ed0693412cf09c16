"""A memo of what a frozen image encoder computes, shared by every run in a process.

CoOp, CoCoOp, ProDA, their EMPL versions and zero-shot CLIP never change the image encoder.
When the images do not change either (no random augmentation), an image's features are the same
at every epoch, in every evaluation and in every run on the same backbone: the bundled
benchmark's main job evaluates each test image some 40 times. ``MODEL.BACKBONE.CACHE_IMAGE_FEATURES
True`` computes them once per process.

Images are keyed by their bytes (the transformed tensor), so a hit is exact. Misses are
encoded ENCODE_CHUNK at a time, the last chunk padded to that size (`encode_in_chunks`). CPU
matrix kernels are chosen by the shape of the call, and on some CPUs batches of different sizes
round differently in the last bits (AMD EPYC: 1-3 images against 5 or more). At one fixed shape
each row's arithmetic does not depend on the other rows, so a cached feature is the same bits
whichever images missed with it, in whatever order the runs of a process meet them: a run gives
the same numbers in one process (python -m tools.run_protocol --in-process) or many. Against the
uncached encoder, which encodes each batch as it comes, the features agree to a few float32
ulps, not bit for bit (tests/test_feature_cache.py).
"""
import hashlib
from typing import Callable, Dict, Hashable

import torch
from .errors import UserValueError

# Dassl's random INPUT.TRANSFORMS (the names both Dassl.pytorch and the bundled dassl use).
# Kept here rather than imported: real Dassl, in a CoOp checkout, exports no such list.
RANDOM_TRANSFORMS = ("random_flip", "random_resized_crop", "random_crop", "random_translation", "cutout",
                     "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment", "randaugment_fixmatch",
                     "randaugment2", "gaussian_noise", "colorjitter", "randomgrayscale", "gaussian_blur")

# Rows per encoder call for cache misses: small enough that padding a training batch costs
# little, large enough for the CPU's batched kernels.
ENCODE_CHUNK = 32

_STORES: Dict[Hashable, Dict[bytes, torch.Tensor]] = {}


def check_cacheable(cfg) -> None:
    """CACHE_IMAGE_FEATURES needs training images that are the same at every epoch."""
    random_ones = [t for t in cfg.INPUT.TRANSFORMS if t in RANDOM_TRANSFORMS]
    if random_ones:
        raise UserValueError(
            f"MODEL.BACKBONE.CACHE_IMAGE_FEATURES True needs deterministic INPUT.TRANSFORMS, but {random_ones} "
            "change the images at every epoch: drop them or set CACHE_IMAGE_FEATURES False"
        )


def backbone_key(cfg, clip_model, device, prec: str) -> Hashable:
    """What identifies an image encoder's outputs: its name, weights file, a fingerprint of its
    weights, the precision and the device."""
    visual = clip_model.visual
    fingerprint = tuple(float(p.detach().double().sum()) for p in list(visual.parameters())[:4])
    return (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.get("CHECKPOINT", ""), fingerprint, prec, str(device))


def encode_in_chunks(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     chunk: int = ENCODE_CHUNK) -> torch.Tensor:
    """encode(images), computed in calls of exactly `chunk` rows: the last chunk is padded with
    copies of its last image and the padding's outputs are dropped. images [B, ...] -> [B, D]."""
    pieces = []
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        pad = chunk - len(part)
        if pad:
            part = torch.cat([part, part[-1:].expand(pad, *part.shape[1:])])
        pieces.append(encode(part)[: chunk - pad])
    return torch.cat(pieces)


class ImageFeatureCache:
    """``cache(images, encode)`` = ``encode(images)``, from memory where it can."""

    def __init__(self, key: Hashable):
        self.store = _STORES.setdefault(key, {})

    def __len__(self):
        return len(self.store)

    @staticmethod
    def image_keys(images: torch.Tensor):
        rows = images.detach().cpu().contiguous()
        return [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in rows]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """images [B, 3, H, W] -> encode's output [B, D] (detached)."""
        keys = self.image_keys(images)
        missing, seen = [], set()
        for i, key in enumerate(keys):
            if key not in self.store and key not in seen:
                seen.add(key)
                missing.append(i)
        if missing:
            features = encode_in_chunks(encode, images[missing])
            for i, feature in zip(missing, features):
                self.store[keys[i]] = feature.detach().clone()
        return torch.stack([self.store[k] for k in keys]).to(images.device)


def image_feature_cache(cfg, clip_model, device, prec: str) -> ImageFeatureCache:
    """The process-wide cache of this backbone's image features (after check_cacheable)."""
    check_cacheable(cfg)
    return ImageFeatureCache(backbone_key(cfg, clip_model, device, prec))


def clear() -> None:
    """Forget every cached feature (tests)."""
    _STORES.clear()
