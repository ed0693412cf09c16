"""Pretrain a small CLIP on the procedural world (datasets/world.py), cache it, load it.

    python tools/pretrain_world_clip.py                                  # world-tiny, CPU, ~3 min on 2 cores
    python tools/pretrain_world_clip.py --config world-small --device cuda

The model is the real ``clip.model.CLIP`` at small width (architectures in
``clip_backbone.LOCAL_CLIP_CONFIGS``), trained from its deterministic init with the standard
symmetric contrastive loss on freshly rendered (image, caption) batches: AdamW, one-cycle
learning rate, logit scale clamped at 100. The text transformer runs on the captions cut to the
longest one in the batch (clip_backbone.TextEncoder), which gives the same features as the
77-token run. Everything is seeded: the same config gives the same weights on the same machine
and thread count.

The weights are cached at ``<cache>/tiny_clip/<name>-<hash of the config>.pt`` (written
atomically), where ``<cache>`` is ``$EMPL_CACHE_DIR``, else ``$XDG_CACHE_HOME/empl``, else
``~/.cache/empl``. A run finding the file skips training. Trainers use the model with
``MODEL.BACKBONE.NAME world-tiny``: ``load_clip`` reads the cached weights through
``LOCAL_CLIP_WEIGHTS``; if they are missing it raises an error naming the command above
(training never starts on demand inside a prompt-learning run).
"""
import argparse
import functools
import hashlib
import json
import math
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from clip.model import CLIP

from .clip_backbone import LOCAL_CLIP_CONFIGS, LOCAL_CLIP_WEIGHTS, TextEncoder, build_local_clip, l2_normalize, tokenize

# Pretraining recipes, one per world CLIP of LOCAL_CLIP_CONFIGS. Changing any value (or the
# world's WORLD_VERSION / caption templates) changes the cache key.
PRETRAIN_CONFIGS = {
    "world-tiny": dict(steps=2400, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_fraction=0.1, seed=0),
    "world-small": dict(steps=3000, batch_size=256, lr=1e-3, weight_decay=0.05, warmup_fraction=0.1, seed=0),
}
MAX_LOGIT_SCALE = math.log(100.0)
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, as INPUT.PIXEL_MEAN in the configs
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
COMMAND = "python tools/pretrain_world_clip.py"
log_line = functools.partial(print, flush=True)


# ----------------------------------------------------------------------------- config and cache
def pretrain_config(name: str = "world-tiny", **overrides) -> Dict:
    """The full pretraining config of a world CLIP (architecture, recipe, world version), with
    ``overrides`` of recipe keys (tests use fewer steps)."""
    from datasets.world import CAPTION_TEMPLATES, WORLD_VERSION

    if name not in PRETRAIN_CONFIGS:
        raise ValueError(f"unknown world CLIP {name!r}; choose from {sorted(PRETRAIN_CONFIGS)}")
    recipe = dict(PRETRAIN_CONFIGS[name])
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise ValueError(f"unknown pretraining keys {sorted(unknown)}; valid: {sorted(recipe)}")
    recipe.update(overrides)
    return {"name": name, "architecture": LOCAL_CLIP_CONFIGS[name], "recipe": recipe,
            "world_version": WORLD_VERSION, "caption_templates": list(CAPTION_TEMPLATES)}


def cache_dir() -> str:
    """``$EMPL_CACHE_DIR``, else ``$XDG_CACHE_HOME/empl``, else ``~/.cache/empl``."""
    if os.environ.get("EMPL_CACHE_DIR"):
        return os.path.expanduser(os.environ["EMPL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "empl")


def config_hash(config: Dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def checkpoint_path(config: Dict) -> str:
    """Where the weights of this exact config are cached."""
    return os.path.join(cache_dir(), "tiny_clip", f"{config['name']}-{config_hash(config)}.pt")


def pretrain_command(config: Dict) -> str:
    cmd = f"{COMMAND} --config {config['name']}"
    default = pretrain_config(config["name"])["recipe"]
    for key, value in config["recipe"].items():
        if value != default[key]:
            cmd += f" --{key.replace('_', '-')} {value}"
    return cmd


def load_cached_state(config: Dict) -> Dict[str, torch.Tensor]:
    """The cached state dict of ``config``; a clear error when missing or unreadable."""
    path = checkpoint_path(config)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the pretrained {config['name']} CLIP is not cached at {path}. Pretrain it first "
            f"(minutes on a CPU, once): {pretrain_command(config)}"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        state, saved_config = saved["state_dict"], saved["config"]
    except Exception as err:  # truncated zip, pickle garbage, not our file
        raise ValueError(
            f"cannot read the cached {config['name']} CLIP {path} ({type(err).__name__}: {err}); delete "
            f"the file and pretrain again: {pretrain_command(config)}"
        ) from None
    if saved_config != config:
        raise ValueError(f"{path} holds another pretraining config than its name says; delete it and run "
                         f"{pretrain_command(config)}")
    return state


# ----------------------------------------------------------------------------- training
def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> CLIP-normalised float [B, 3, H, W]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class CaptionTokens:
    """Memoised clip tokenization: captions -> token ids [B, 77]."""

    def __init__(self):
        self._ids: Dict[str, torch.Tensor] = {}

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        missing = [c for c in set(captions) if c not in self._ids]
        if missing:
            self._ids.update(zip(missing, tokenize(missing)))
        return torch.stack([self._ids[c] for c in captions])


def encode_captions(model: CLIP, text_encoder: TextEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """Normalised text features [B, D] of token ids [B, 77], run on the longest caption only."""
    return l2_normalize(text_encoder(model.token_embedding(tokens), tokens))


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor):
    """CLIP's symmetric InfoNCE: features [B, D] (normalised), pair i matches pair i."""
    logits = logit_scale.exp() * image_features @ text_features.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def pretrain(config: Dict, device: str = "cpu", log_every: int = 50, log=log_line):
    """Train the world CLIP of ``config`` from its deterministic init.

    Batch ``t`` is rendered from ``numpy.random.default_rng([seed, t])``. Returns (model in eval
    mode on CPU, history {"loss": [per step], "seconds": float, "shape_zero_shot": float}).
    """
    from datasets.world import render_caption_batch

    recipe = config["recipe"]
    if recipe["warmup_fraction"] * recipe["steps"] < 2:
        raise ValueError(f"warmup_fraction * steps must be at least 2 (one-cycle warmup), got {recipe}")
    torch.manual_seed(recipe["seed"])
    model = build_local_clip(config["name"]).to(device).train()
    text_encoder = TextEncoder(model)
    tokens_of = CaptionTokens()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe["lr"], total_steps=recipe["steps"], pct_start=recipe["warmup_fraction"])
    losses: List[float] = []
    start = time.time()
    for step in range(recipe["steps"]):
        images, captions = render_caption_batch(np.random.default_rng([recipe["seed"], step]), recipe["batch_size"])
        image_features = l2_normalize(model.encode_image(images_to_tensor(images).to(device)))
        text_features = encode_captions(model, text_encoder, tokens_of(captions).to(device))
        loss = contrastive_loss(image_features, text_features, model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            log(f"step {step + 1}/{recipe['steps']}  loss {np.mean(losses[-log_every:]):.4f}  "
                f"logit_scale {model.logit_scale.exp().item():.1f}  {time.time() - start:.0f}s")
    seconds = time.time() - start
    model = model.cpu().eval()
    return model, {"loss": losses, "seconds": seconds, "shape_zero_shot": shape_zero_shot(model, recipe["seed"])}


@torch.no_grad()
def shape_zero_shot(model: CLIP, seed: int, n_images: int = 500) -> float:
    """Sanity check on held-out pretraining-style images: accuracy of "a {shape}." over the
    10 shapes (chance 0.1)."""
    from datasets.synthetic_shapes import SHAPES
    from datasets.world import render_scene, sample_scene

    rng = np.random.default_rng([seed, 10 ** 6])
    labels = rng.integers(len(SHAPES), size=n_images)
    images = np.stack([render_scene(sample_scene(rng, shape=SHAPES[y]), rng, "pretrain") for y in labels])
    image_features = l2_normalize(model.encode_image(images_to_tensor(images)))
    text_features = l2_normalize(model.encode_text(tokenize([f"a {s}." for s in SHAPES])))
    predictions = (image_features @ text_features.t()).argmax(dim=1).numpy()
    return float((predictions == labels).mean())


def save_checkpoint(model: CLIP, config: Dict, history: Dict, path: str) -> None:
    """Atomic torch.save of {"state_dict", "config", "history"}."""
    payload = {"state_dict": model.state_dict(), "config": config, "history": history}
    # Imported here: the trainers package must import under real Dassl (drop-in), which has no
    # atomic_write; pretraining runs only in this repository.
    from dassl.utils import atomic_write

    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")


def ensure_pretrained(config: Dict, device: str = "cpu", log=log_line) -> str:
    """The cache path of ``config``'s weights, pretraining and caching them first if missing."""
    path = checkpoint_path(config)
    if os.path.isfile(path):
        load_cached_state(config)  # fails clearly on a corrupt file
        log(f"Pretrained {config['name']} CLIP found in the cache: {path}")
        return path
    log(f"Pretraining the {config['name']} CLIP on the procedural world ({config['recipe']}) on {device}")
    model, history = pretrain(config, device=device, log=log)
    save_checkpoint(model, config, history, path)
    log(f"Done in {history['seconds']:.0f}s; zero-shot shape accuracy on pretraining-style images "
        f"{100 * history['shape_zero_shot']:.1f}% (chance 10%); saved {path}")
    return path


def _register_weights():
    for name in PRETRAIN_CONFIGS:
        LOCAL_CLIP_WEIGHTS[name] = lambda name=name: load_cached_state(pretrain_config(name))


_register_weights()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain (or find cached) a world CLIP for the bundled benchmark.")
    parser.add_argument("--config", default="world-tiny", choices=sorted(PRETRAIN_CONFIGS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--print-path", action="store_true", help="print the cache path and exit")
    for key, value in PRETRAIN_CONFIGS["world-tiny"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None,
                            help="override the recipe (changes the cache key)")
    args = parser.parse_args(argv)
    overrides = {k: getattr(args, k) for k in PRETRAIN_CONFIGS[args.config] if getattr(args, k) is not None}
    config = pretrain_config(args.config, **overrides)
    if args.print_path:
        print(checkpoint_path(config))
        return 0
    ensure_pretrained(config, device=args.device)
    return 0
