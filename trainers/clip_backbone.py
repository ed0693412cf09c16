"""The frozen CLIP itself: loading it, its precision, its tokenizer and its feature space.

- `load_clip(cfg)`: a CLIP by name from the clip package's download cache, from a local file
  (MODEL.BACKBONE.CHECKPOINT), or one built from LOCAL_CLIP_CONFIGS (a tiny one for tests, the
  world-pretrained ones of the bundled benchmark, registered with their weights by
  benchmark.register(), random-init ones with OpenAI shapes for benchmarks).
- `resolve_precision`: CoOp's PREC (fp16 / fp32 / amp) on the device at hand (MODEL.BACKBONE.
  HALF_ON_CPU runs fp16 and amp on a CPU as on a GPU); `autocast_dtype`: amp's autocast dtype;
  `LEARNED_DTYPE`: the dtype of every learned tensor.
- `tokenize`: CLIP's token ids of texts; `l2_normalize`: features onto CLIP's unit sphere.

The rest of the CLIP plumbing builds on this module: clip_encoders.py (the encoders run block
by block), class_prompts.py (prompt assembly), prompted_clip.py (the model shells).
"""
import functools
import os
import warnings
from typing import Callable, Dict, Optional, Sequence

import torch

# clip-anytorch imports pkg_resources, whose deprecation warning (setuptools < 81 is pinned for
# it) would be the first line of every run.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
from clip import clip  # noqa: E402
from clip.model import CLIP
from clip.simple_tokenizer import SimpleTokenizer
from .errors import UserValueError

_tokenizer = SimpleTokenizer()

# CLIPs of the real architecture (clip.model.CLIP) built here from a configuration: random init
# from a fixed seed unless weights are registered for them or MODEL.BACKBONE.CHECKPOINT holds
# some. "tiny-vit" runs on a CPU in seconds (tests); "random-vit-b16" has the shapes of the
# OpenAI model (speed and memory benchmarks, parity checks without the weights). The bundled
# benchmark's world CLIPs ("world-*") are added by register_local_clip (benchmark.register()).
LOCAL_CLIP_CONFIGS = {
    "tiny-vit": dict(
        embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2, transformer_layers=4,
    ),
    "random-vit-b16": dict(
        embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
        context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12,
    ),
}
LOCAL_CLIP_SEED = 0
# name -> a function returning the state dict of a local CLIP's default weights (used when
# MODEL.BACKBONE.CHECKPOINT is empty; it raises a clear error when they are missing). Local CLIPs
# not listed here are random-init by default.
LOCAL_CLIP_WEIGHTS: Dict[str, Callable[[], Dict[str, torch.Tensor]]] = {}
# name -> the words a local CLIP was pretrained on: EMPL's default open vocabulary for it (the
# clip package's BPE words otherwise).
LOCAL_CLIP_VOCABULARIES: Dict[str, Sequence[str]] = {}
# Names of pretrained local CLIPs: never built with random weights (a missing registration or
# weight file is an error, not a silent random init).
PRETRAINED_PREFIX = "world-"


# name -> how to read a MODEL.BACKBONE.CHECKPOINT file of that local CLIP into a full state dict
# (read_clip_state_dict when not registered).
LOCAL_CLIP_FILE_READERS: Dict[str, Callable[[str], Dict[str, torch.Tensor]]] = {}


def register_local_clip(name: str, config: Dict, weights: Callable[[], Dict[str, torch.Tensor]],
                        vocabulary: Sequence[str] = (),
                        read_file: Optional[Callable[[str], Dict[str, torch.Tensor]]] = None) -> None:
    """Make a local CLIP loadable by name: its architecture, a function returning its weights,
    the words it was pretrained on (EMPL's open vocabulary on it) and, if its weight files have
    their own format, how to read one given as MODEL.BACKBONE.CHECKPOINT."""
    LOCAL_CLIP_CONFIGS[name] = dict(config)
    LOCAL_CLIP_WEIGHTS[name] = weights
    if vocabulary:
        LOCAL_CLIP_VOCABULARIES[name] = tuple(vocabulary)
    if read_file is not None:
        LOCAL_CLIP_FILE_READERS[name] = read_file


PRECISIONS = ("fp16", "fp32", "amp")
# The dtype of every learned tensor (prompts, couplings, meta-nets) in every precision: under
# PREC fp16 only the frozen CLIP is half, and the learned tensors are cast where they enter it
# (ClassPrompts.assemble, TextEncoder.embed, VisionEncoder, replace_tokens). Half parameters
# would lose SGD steps smaller than half their fp16 spacing (most of a warmup step at LR 1e-5).
LEARNED_DTYPE = torch.float32


# --------------------------------------------------------------------------- loading
def build_local_clip(name: str) -> CLIP:
    """A CLIP of LOCAL_CLIP_CONFIGS in fp32, initialised deterministically (same weights on
    every machine)."""
    if name not in LOCAL_CLIP_CONFIGS:
        raise UserValueError(f"unknown local CLIP {name!r}; choose from {sorted(LOCAL_CLIP_CONFIGS)}")
    cpu_rng_state = torch.random.get_rng_state()
    torch.manual_seed(LOCAL_CLIP_SEED)
    try:
        model = CLIP(**LOCAL_CLIP_CONFIGS[name])
    finally:
        torch.random.set_rng_state(cpu_rng_state)
    return model.eval()


def read_clip_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """State dict of an OpenAI JIT archive or of a saved state dict; clear error otherwise."""
    try:
        return torch.jit.load(path, map_location="cpu").eval().state_dict()
    except RuntimeError:
        pass
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, pickle garbage, ...
        raise UserValueError(
            f"cannot read CLIP weights from {path} ({type(err).__name__}: {err}); the file is "
            "corrupt or not a CLIP checkpoint: delete it and download it again"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "text_projection" not in state:
        raise UserValueError(f"{path} is not a CLIP checkpoint (no 'text_projection' weight)")
    return state


def clip_cache_path(name: str) -> str:
    """Where the clip package keeps (or would download) the weights of a named CLIP."""
    url = clip._MODELS[name]
    return os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))


def load_clip(cfg) -> CLIP:
    """The CLIP of cfg.MODEL.BACKBONE, on CPU, in the precision clip.build_model gives
    (fp16 for OpenAI weights, fp32 for tiny CLIPs); `resolve_precision` decides the rest."""
    name = cfg.MODEL.BACKBONE.NAME
    checkpoint = cfg.MODEL.BACKBONE.get("CHECKPOINT", "")
    if checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"MODEL.BACKBONE.CHECKPOINT={checkpoint}: no such file")

    if name.startswith(PRETRAINED_PREFIX) and name not in LOCAL_CLIP_WEIGHTS and not checkpoint:
        raise UserValueError(
            f"MODEL.BACKBONE.NAME {name!r} is a world CLIP of the bundled benchmark, but no world CLIP of that "
            "name is registered: call benchmark.register() before building the trainer (train.py does), and "
            f"check the name (registered: {sorted(n for n in LOCAL_CLIP_WEIGHTS if n.startswith(PRETRAINED_PREFIX))})"
        )
    if name in LOCAL_CLIP_CONFIGS:
        model = build_local_clip(name)
        if checkpoint:
            model.load_state_dict(LOCAL_CLIP_FILE_READERS.get(name, read_clip_state_dict)(checkpoint))
        elif name in LOCAL_CLIP_WEIGHTS:
            model.load_state_dict(LOCAL_CLIP_WEIGHTS[name]())
        return model

    if not checkpoint:
        if name not in clip._MODELS:
            raise UserValueError(
                f"unknown MODEL.BACKBONE.NAME {name!r}: use one of {sorted(clip._MODELS)} or "
                f"{sorted(LOCAL_CLIP_CONFIGS)}, or set MODEL.BACKBONE.CHECKPOINT to a local file"
            )
        checkpoint = clip_cache_path(name)
        if not os.path.isfile(checkpoint):
            try:
                checkpoint = clip._download(clip._MODELS[name], os.path.dirname(checkpoint))
            except Exception as err:
                raise FileNotFoundError(
                    f"CLIP weights for {name} are not on this machine and could not be downloaded "
                    f"({type(err).__name__}). Place {os.path.basename(checkpoint)} at {checkpoint}, "
                    f"or put it anywhere and set MODEL.BACKBONE.CHECKPOINT to its path "
                    f"(download: {clip._MODELS[name]})"
                ) from None
    return clip.build_model(read_clip_state_dict(checkpoint)).eval()


def resolve_precision(prec: str, device: torch.device, half_on_cpu: bool = False) -> str:
    """CoOp's PREC, except that fp16 and amp on CPU run in fp32 (CPU half kernels are slow),
    unless half_on_cpu (MODEL.BACKBONE.HALF_ON_CPU) asks for the GPU's half-precision path there
    too: fp16 weights, or autocast (`autocast_dtype`) with a GradScaler."""
    if prec not in PRECISIONS:
        raise UserValueError(f"PREC must be one of {PRECISIONS}, got {prec!r}")
    if half_on_cpu:
        return prec
    if prec == "fp16" and device.type == "cpu":
        warnings.warn("PREC fp16 on CPU: running in fp32 instead", stacklevel=2)
        return "fp32"
    if prec == "amp" and device.type == "cpu":
        return "fp32"
    return prec


def half_on_cpu(cfg) -> bool:
    """MODEL.BACKBONE.HALF_ON_CPU (False where a CoOp checkout's config lacks the key)."""
    return bool(cfg.MODEL.BACKBONE.get("HALF_ON_CPU", False))


@functools.lru_cache(maxsize=None)
def autocast_dtype(device_type: str) -> torch.dtype:
    """The dtype PREC amp autocasts to on a device type: fp16, as CoOp on a GPU; on a CPU whose
    torch has no fp16 autocast (it warns and runs fp32 instead), bfloat16."""
    if device_type != "cpu":
        return torch.float16
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast("cpu", dtype=torch.float16):
                probe = torch.ones(2, 2) @ torch.ones(2, 2)
        if probe.dtype == torch.float16:
            return torch.float16
    except (RuntimeError, AssertionError):
        pass
    return torch.bfloat16


def set_clip_precision(clip_model: CLIP, prec: str) -> CLIP:
    """fp16 -> half weights (as OpenAI ships them), fp32/amp -> float weights."""
    if prec == "fp16":
        from clip.model import convert_weights

        convert_weights(clip_model)
    else:
        clip_model.float()
    return clip_model


# --------------------------------------------------------------------------- text input and feature space
def tokenize(texts: Sequence[str]) -> torch.Tensor:
    """[P, 77] token ids (a new tensor)."""
    return torch.cat([_tokenize_one(t) for t in texts])


# CLIP's BPE runs in Python: EMPL tokenizes its unseen words at every training step, and on the
# world CLIP that was 6% of an EMPL_CoOp run. The cache holds 77 ids per text; tokenize() copies them out.
@functools.lru_cache(maxsize=1 << 16)
def _tokenize_one(text: str) -> torch.Tensor:
    return clip.tokenize(text)


@functools.lru_cache(maxsize=1 << 16)
def token_count(text: str) -> int:
    """Number of BPE tokens of text, without SOS/EOS."""
    return len(_tokenizer.encode(text))


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit length along the last dimension: [..., D] -> [..., D]."""
    return x / x.norm(dim=-1, keepdim=True)
