"""A memo of what a frozen image encoder computes, shared by every run in a process.

CoOp, CoCoOp, ProDA, their EMPL versions and zero-shot CLIP never change the image encoder.
When the images do not change either (no random augmentation), an image's features are the same
at every epoch, in every evaluation and in every run on the same backbone: the bundled
benchmark's main job evaluates each test image some 40 times. ``MODEL.BACKBONE.CACHE_IMAGE_FEATURES
True`` computes them once per process.

Images are keyed by their bytes (the transformed tensor), so a hit is exact. Misses are
computed as one batch; a lone miss is padded to two rows, because a batch of one takes another
matrix-multiplication path whose last bits differ (tests/test_feature_cache.py checks that the
features do not depend on the batching, so a run gives the same numbers with and without the
cache, in one process or many).
"""
import hashlib
from typing import Callable, Dict, Hashable

import torch

# Dassl's random INPUT.TRANSFORMS (the names both Dassl.pytorch and the bundled dassl use).
# Kept here rather than imported: real Dassl, in a CoOp checkout, exports no such list.
RANDOM_TRANSFORMS = ("random_flip", "random_resized_crop", "random_crop", "random_translation", "cutout",
                     "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment", "randaugment_fixmatch",
                     "randaugment2", "gaussian_noise", "colorjitter", "randomgrayscale", "gaussian_blur")

_STORES: Dict[Hashable, Dict[bytes, torch.Tensor]] = {}


def check_cacheable(cfg) -> None:
    """CACHE_IMAGE_FEATURES needs training images that are the same at every epoch."""
    random_ones = [t for t in cfg.INPUT.TRANSFORMS if t in RANDOM_TRANSFORMS]
    if random_ones:
        raise ValueError(
            f"MODEL.BACKBONE.CACHE_IMAGE_FEATURES True needs deterministic INPUT.TRANSFORMS, but {random_ones} "
            "change the images at every epoch: drop them or set CACHE_IMAGE_FEATURES False"
        )


def backbone_key(cfg, clip_model, device, prec: str) -> Hashable:
    """What identifies an image encoder's outputs: its name, weights file, a fingerprint of its
    weights, the precision and the device."""
    visual = clip_model.visual
    fingerprint = tuple(float(p.detach().double().sum()) for p in list(visual.parameters())[:4])
    return (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.get("CHECKPOINT", ""), fingerprint, prec, str(device))


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
            batch = images[missing if len(missing) > 1 else missing * 2]
            features = encode(batch)[: len(missing)]
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
