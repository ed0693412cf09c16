"""The world CLIP: a small CLIP pretrained on the procedural world, shipped with its weights.

    python -m tools.pretrain_world_clip                       # reproduce world-vit from scratch (CPU)
    python -m tools.pretrain_world_clip --device cuda --output /tmp/world-vit.pt

The model is the real ``clip.model.CLIP`` at small width (``WORLD_CLIP_CONFIGS``), trained from
its deterministic init with the symmetric contrastive loss on freshly rendered (image, caption)
batches (benchmark/world.py, benchmark/render.py): AdamW, a one-cycle learning rate, logit
scale clamped at 100. The token embedding is not weight-decayed, so the rows of tokens that no
caption uses keep their seeded init exactly; the weight file stores only the rows captions
train (``save_weights``), which keeps it small enough to ship in the repository
(benchmark/weights/, checked against ``SHIPPED_SHA256`` at load).

Trainers use it through ``MODEL.BACKBONE.NAME world-vit``, after ``register_world_clips()``
(train.py calls ``benchmark.register()``). ``load_clip`` stops with a clear error for a
world-* name that is not registered or whose weights are missing or altered; it never falls
back to a random init.
"""
import argparse
import functools
import hashlib
import math
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dassl.utils import UserKeyError, UserValueError
from trainers import clip_backbone
from trainers.clip_backbone import l2_normalize, tokenize
from trainers.clip_encoders import TextEncoder

from . import render, world

WORLD_CLIP_CONFIGS = {
    # 32x32 images in 4x4 patches (64 tokens + class token); width 64, 4 vision and 4 text blocks.
    "world-vit": dict(
        embed_dim=64, image_resolution=32, vision_layers=4, vision_width=64, vision_patch_size=4,
        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2, transformer_layers=4,
    ),
}
PRETRAIN_RECIPES = {
    # noun_noise, texture_noise: the share of object (texture) captions that misname the object
    # (texture) (world.caption): weakly supervised words, as DTD's and Pets' class names are for
    # real CLIP; aux_weight 3 keeps the image features learning what the captions misname
    # (benchmark v4, docs/BENCHMARK.md, "The world CLIP").
    "world-vit": dict(steps=8000, batch_size=128, lr=2e-3, weight_decay=0.1, warmup_fraction=0.05, aux_weight=3.0,
                      seed=0, noun_noise=0.3, texture_noise=0.5),
}
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
# sha256 of each shipped weight file; a file that does not match is refused.
SHIPPED_SHA256: Dict[str, str] = {
    "world-vit": "1a08387984c414dbcd8d1ab9b8dc382987643bbbe16cf212bf98c3ecab181151",
}
MAX_LOGIT_SCALE = math.log(100.0)
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, as INPUT.PIXEL_MEAN in the configs
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
COMMAND = "python -m tools.pretrain_world_clip"
log_line = functools.partial(print, flush=True)


# ----------------------------------------------------------------------------- registration
def register_world_clips() -> None:
    """Make the world CLIPs loadable by name (clip_backbone.load_clip)."""
    for name, config in WORLD_CLIP_CONFIGS.items():
        clip_backbone.register_local_clip(name, config, functools.partial(load_shipped_weights, name),
                                          vocabulary=world.VOCABULARY,
                                          read_file=functools.partial(read_checkpoint, name=name))


def shipped_path(name: str) -> str:
    return os.path.join(WEIGHTS_DIR, f"{name}.pt")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_shipped_weights(name: str) -> Dict[str, torch.Tensor]:
    """The full state dict of a shipped world CLIP, after the hash check (read once per process
    and file: the main job builds hundreds of models from it)."""
    path = shipped_path(name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the weights of {name} are missing: {path} (they ship with the repository; restore them with "
            f"`git checkout -- {os.path.relpath(path)}`, or pretrain them: {COMMAND} --config {name} "
            f"--output {os.path.relpath(path)})"
        )
    expected = SHIPPED_SHA256.get(name)
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        raise UserValueError(
            f"{path} is not the shipped {name} (sha256 {actual[:12]}..., expected {expected[:12]}...): restore it "
            f"with `git checkout -- {os.path.relpath(path)}`; to use weights you pretrained yourself, set "
            "MODEL.BACKBONE.CHECKPOINT to their file instead"
        )
    return _read_checked(path, name, os.path.getmtime(path), actual)


@functools.lru_cache(maxsize=4)
def _read_checked(path: str, name: str, mtime: float, sha256: str) -> Dict[str, torch.Tensor]:
    return read_weights(path, name)


# ----------------------------------------------------------------------------- weight files
def trained_token_ids() -> List[int]:
    """Ids of every token a pretraining caption (or the start/end marks) can contain."""
    from clip.simple_tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    words = list(world.VOCABULARY) + list(world.LOOKS.values()) + ["a", "on", "at", "the", "scene", "pattern", "."]
    ids = {tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]}
    for word in words:
        ids.update(tokenizer.encode(word))
    return sorted(ids)


def save_weights(model, config: Dict, history: Dict, path: str) -> None:
    """Atomic torch.save of the state dict with only the trained token-embedding rows, fp32."""
    from dassl.utils import atomic_write

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = torch.tensor(trained_token_ids())
    embedding = state.pop("token_embedding.weight")
    payload = {"state_dict": state, "token_rows": rows, "token_values": embedding[rows].clone(),
               "config": config, "history": history}
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")


WEIGHT_FILE_KEYS = {"state_dict", "token_rows", "token_values"}  # what save_weights writes (and more)


def read_weights(path: str, name: str) -> Dict[str, torch.Tensor]:
    """A full state dict from a weight file of save_weights (untrained token rows: the seeded init)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        missing = WEIGHT_FILE_KEYS - set(payload)
        if missing:
            raise UserKeyError(f"not a weight file of {COMMAND} (no {sorted(missing)})")
    except Exception as err:  # truncated zip, pickle garbage, not our file
        raise UserValueError(f"cannot read the {name} weights {path} ({type(err).__name__}: {err})") from None
    return _full_state(payload, name)


def _full_state(payload: Dict, name: str) -> Dict[str, torch.Tensor]:
    """A save_weights payload -> the full state dict (untrained token rows: the seeded init)."""
    state, rows, values = payload["state_dict"], payload["token_rows"], payload["token_values"]
    embedding = clip_backbone.build_local_clip(name).token_embedding.weight.detach().clone()
    embedding[rows] = values
    state = dict(state)
    state["token_embedding.weight"] = embedding
    return state


def read_checkpoint(path: str, name: str) -> Dict[str, torch.Tensor]:
    """MODEL.BACKBONE.CHECKPOINT for a world CLIP: a file of save_weights (weights you pretrained
    with tools/pretrain_world_clip.py) or a full CLIP state dict."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a JIT archive or a broken file: read_clip_state_dict reads or explains it
        payload = None
    if isinstance(payload, dict) and "token_rows" in payload:
        return _full_state(payload, name)
    return clip_backbone.read_clip_state_dict(path)


# ----------------------------------------------------------------------------- pretraining
def pretrain_config(name: str = "world-vit", **overrides) -> Dict:
    """Architecture, recipe and world version of a world CLIP, with ``overrides`` of recipe keys."""
    if name not in PRETRAIN_RECIPES:
        raise UserValueError(f"unknown world CLIP {name!r}; choose from {sorted(PRETRAIN_RECIPES)}")
    recipe = dict(PRETRAIN_RECIPES[name])
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise UserValueError(f"unknown pretraining keys {sorted(unknown)}; valid: {sorted(recipe)}")
    recipe.update(overrides)
    return {"name": name, "architecture": WORLD_CLIP_CONFIGS[name], "recipe": recipe,
            "world_version": world.WORLD_VERSION}


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


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor):
    """CLIP's symmetric InfoNCE: features [B, D] (normalised), pair i matches pair i."""
    logits = logit_scale.exp() * image_features @ text_features.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def aux_heads(embed_dim: int) -> torch.nn.ModuleDict:
    """Linear heads from the image embedding to each attribute of world.AUX_TARGETS."""
    sizes = {"family": len(world.FAMILIES), "member": len(world.MEMBER_FAMILY), "color": len(world.COLORS),
             "texture": len(world.TEXTURES), "scene": len(world.SCENES), "size": len(world.SIZES),
             "position": len(world.POSITIONS), "look": len(world.LOOKS)}
    return torch.nn.ModuleDict({target: torch.nn.Linear(embed_dim, sizes[target]) for target in world.AUX_TARGETS})


def aux_loss(heads: torch.nn.ModuleDict, image_embedding: torch.Tensor, scenes) -> torch.Tensor:
    """Mean over the attributes of the heads' cross-entropy (undefined labels ignored; an
    attribute no image of the batch defines is left out)."""
    losses = [F.cross_entropy(heads[k](image_embedding), torch.tensor(v, device=image_embedding.device),
                              ignore_index=-100)
              for k, v in world.aux_labels(scenes).items() if any(label >= 0 for label in v)]
    return sum(losses) / len(losses)


def build_optimizer(model, heads, recipe: Dict) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only, never on the token embedding (untrained rows stay
    at their init, so weight files need not store them) nor on the auxiliary heads."""
    decay, no_decay = [], list(heads.parameters())
    for name, param in model.named_parameters():
        (decay if param.dim() >= 2 and name != "token_embedding.weight" else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}], lr=recipe["lr"], betas=(0.9, 0.98), eps=1e-6)


def pretrain(config: Dict, device: str = "cpu", log_every: int = 250, log=log_line):
    """Train the world CLIP of ``config`` from its deterministic init.

    The loss is CLIP's contrastive loss plus ``aux_weight`` times that of linear heads that read
    the scene's attributes (object family and member, colour, texture, background, size,
    position, look) off the image embedding. The heads are thrown away after pretraining; they make
    the image encoder learn the objects' shapes in the CPU budget, where the contrastive signal
    alone teaches colours and backgrounds first (docs/BENCHMARK.md). Batch ``t`` is rendered
    from ``numpy.random.default_rng([seed, t])``. Returns (model in eval mode on CPU, history
    {"loss": [per step], "seconds": float}).
    """
    recipe = config["recipe"]
    if recipe["warmup_fraction"] * recipe["steps"] < 2:
        raise UserValueError(f"warmup_fraction * steps must be at least 2 (one-cycle warmup), got {recipe}")
    torch.manual_seed(recipe["seed"])
    model = clip_backbone.build_local_clip(config["name"]).to(device).train()
    heads = aux_heads(model.text_projection.shape[1]).to(device)
    text_encoder = TextEncoder(model)
    tokens_of = CaptionTokens()
    optimizer = build_optimizer(model, heads, recipe)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe["lr"], total_steps=recipe["steps"], pct_start=recipe["warmup_fraction"])
    losses: List[float] = []
    start = time.time()
    for step in range(recipe["steps"]):
        images, captions, scenes = render.render_caption_batch(np.random.default_rng([recipe["seed"], step]),
                                                               recipe["batch_size"], noun_noise=recipe["noun_noise"],
                                                               texture_noise=recipe["texture_noise"])
        image_embedding = model.encode_image(images_to_tensor(images).to(device))
        tokens = tokens_of(captions).to(device)
        text_features = l2_normalize(text_encoder(model.token_embedding(tokens), tokens))
        loss = contrastive_loss(l2_normalize(image_embedding), text_features, model.logit_scale)
        if recipe["aux_weight"] > 0:
            loss = loss + recipe["aux_weight"] * aux_loss(heads, image_embedding, scenes)
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
    return model.cpu().eval(), {"loss": losses, "seconds": time.time() - start}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain a world CLIP of the bundled benchmark from scratch.")
    parser.add_argument("--config", default="world-vit", choices=sorted(PRETRAIN_RECIPES))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--output", default=None,
                        help="weight file to write (default: <name>-reproduced.pt in the current folder)")
    for key, value in PRETRAIN_RECIPES["world-vit"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None,
                            help="override the recipe")
    args = parser.parse_args(argv)
    register_world_clips()
    overrides = {k: getattr(args, k) for k in PRETRAIN_RECIPES[args.config] if getattr(args, k) is not None}
    config = pretrain_config(args.config, **overrides)
    output = args.output or f"{args.config}-reproduced.pt"
    log_line(f"Pretraining {args.config} on the procedural world ({config['recipe']}) on {args.device}")
    model, history = pretrain(config, device=args.device)
    save_weights(model, config, history, output)
    log_line(f"Done in {history['seconds']:.0f}s; saved {output} (sha256 {file_sha256(output)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
