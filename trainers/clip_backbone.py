"""The CLIP plumbing every trainer shares, written once.

- `load_clip(cfg)`: a CLIP by name from the clip package's download cache, from a local file
  (MODEL.BACKBONE.CHECKPOINT), or one built from LOCAL_CLIP_CONFIGS (a tiny one for tests, the
  world-pretrained ones of the bundled benchmark, registered with their weights by
  benchmark.register(), random-init ones with OpenAI shapes for benchmarks).
- `resolve_precision`: CoOp's PREC (fp16 / fp32 / amp) on the device at hand (MODEL.BACKBONE.
  HALF_ON_CPU runs fp16 and amp on a CPU as on a GPU); `autocast_dtype`: amp's autocast dtype.
- `TextEncoder`: CLIP's text transformer run block by block from our code, on prompt
  embeddings, cut to the longest prompt; it can stop or start at any block (EMPL) and replace
  the context tokens' hidden states at chosen blocks (deep prompts, MaPLe).
- `VisionEncoder`: CLIP's ViT image side run block by block from our code, with prompt tokens
  appended after the patch tokens and replaced at chosen blocks (MaPLe's vision prompts).
- `ClassPrompts`: token ids and frozen token embeddings of "X .. X <class name>." prompts, and
  their assembly with learned context for CoOp's class-token positions.
"""
import functools
import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# clip-anytorch imports pkg_resources, whose deprecation warning (setuptools < 81 is pinned for
# it) would be the first line of every run.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
from clip import clip  # noqa: E402
from clip.model import CLIP
from clip.simple_tokenizer import SimpleTokenizer

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
        raise ValueError(f"unknown local CLIP {name!r}; choose from {sorted(LOCAL_CLIP_CONFIGS)}")
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
        raise ValueError(
            f"cannot read CLIP weights from {path} ({type(err).__name__}: {err}); the file is "
            "corrupt or not a CLIP checkpoint: delete it and download it again"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "text_projection" not in state:
        raise ValueError(f"{path} is not a CLIP checkpoint (no 'text_projection' weight)")
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
        raise ValueError(
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
            raise ValueError(
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
        raise ValueError(f"PREC must be one of {PRECISIONS}, got {prec!r}")
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


# --------------------------------------------------------------------------- text encoder
def self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """nn.MultiheadAttention's self-attention with its own weights, through fused SDPA.

    x: [batch, tokens, width] -> [batch, tokens, width].
    """
    batch, tokens, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = out.transpose(1, 2).reshape(batch, tokens, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def residual_block(block: nn.Module, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """One CLIP ResidualAttentionBlock on batch-first x: [batch, tokens, width]."""
    x = x + self_attention(block.attn, block.ln_1(x), causal)
    return x + block.mlp(block.ln_2(x))


def replace_tokens(x: torch.Tensor, start: int, tokens: torch.Tensor) -> torch.Tensor:
    """x [B, T, d] with positions start .. start + n replaced by tokens [n, d] (shared by the
    batch) or [B, n, d]; returns a new tensor."""
    tokens = tokens.type(x.dtype)
    tokens = tokens.expand(x.shape[0], -1, -1) if tokens.dim() == 2 else tokens
    return torch.cat([x[:, :start], tokens, x[:, start + tokens.shape[1] :]], dim=1)


def eot_positions(tokenized: torch.Tensor) -> torch.Tensor:
    """Index of the EOT token (the largest id) of each tokenized prompt: [P, 77] -> [P]."""
    return tokenized.argmax(dim=-1)


class TextEncoder(nn.Module):
    """CLIP's text side on prompt embeddings, block by block.

    The causal mask means no position before EOT sees anything after it, so sequences are cut
    to the longest prompt (max EOT + 1): same features as the full 77-token run, fewer FLOPs.
    """

    def __init__(self, clip_model: CLIP):
        super().__init__()
        self.blocks = clip_model.transformer.resblocks
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def embed(self, prompts: torch.Tensor) -> torch.Tensor:
        """Add positional embeddings: [P, T, d] (T <= 77) -> [P, T, d]."""
        return prompts.type(self.dtype) + self.positional_embedding[: prompts.shape[1]].type(self.dtype)

    def run_blocks(
        self,
        x: torch.Tensor,
        start: int = 0,
        end: Optional[int] = None,
        deep_prompts: Optional[Dict[int, torch.Tensor]] = None,
        ctx_start: int = 1,
    ) -> torch.Tensor:
        """Blocks [start, end) on x: [P, T, d].

        deep_prompts {block index: [n_ctx, d]}: the hidden states at positions
        ctx_start .. ctx_start + n_ctx are replaced by these at the input of that block (MaPLe).
        """
        end = self.num_layers if end is None else end
        for i in range(start, end):
            if deep_prompts and i in deep_prompts:
                x = replace_tokens(x, ctx_start, deep_prompts[i])
            x = residual_block(self.blocks[i], x, causal=True)
        return x

    def final_features(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm at the EOT token, then projection: x [..., T, d], eot [...] -> [..., D]."""
        gathered = x.gather(-2, eot[..., None, None].expand(*eot.shape, 1, x.shape[-1])).squeeze(-2)
        return self.ln_final(gathered).type(self.dtype) @ self.text_projection

    def forward(
        self, prompts: torch.Tensor, tokenized: torch.Tensor, deep_prompts: Optional[Dict[int, torch.Tensor]] = None
    ) -> torch.Tensor:
        """prompts [P, 77, d] (or already cut), tokenized [P, 77] -> unnormalised features [P, D]."""
        eot = eot_positions(tokenized)
        length = int(eot.max()) + 1
        x = self.run_blocks(self.embed(prompts[:, :length]), deep_prompts=deep_prompts)
        return self.final_features(x, eot)


class VisionEncoder(nn.Module):
    """CLIP's ViT image side, block by block, optionally with prompt tokens (MaPLe).

    Prompt tokens are appended after the class and patch tokens, before ln_pre, and the last
    n positions are replaced at the input of chosen blocks; only the class token is read out.
    Without prompts this is clip_model.visual(images).
    """

    def __init__(self, visual: nn.Module):
        super().__init__()
        if not hasattr(visual, "transformer") or not hasattr(visual, "class_embedding"):
            raise ValueError(
                f"prompted image encoding needs a ViT CLIP (got {type(visual).__name__}); "
                "use a ViT backbone such as ViT-B/16"
            )
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.blocks = visual.transformer.resblocks
        self.ln_post = visual.ln_post
        self.proj = visual.proj

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def width(self) -> int:
        return self.class_embedding.shape[0]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Class token + patch tokens + positional embeddings: [B, 3, H, W] -> [B, 1 + G*G, w]."""
        x = self.conv1(images).flatten(2).transpose(1, 2)  # [B, G*G, w]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)

    def forward(
        self,
        images: torch.Tensor,
        prompts: Optional[torch.Tensor] = None,
        deep_prompts: Optional[Dict[int, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """images [B, 3, H, W] -> unnormalised features [B, D].

        prompts [n, w]: appended to the tokens at the input of block 0. deep_prompts
        {block index: [n, w]}: replace those n prompt tokens at the input of that block.
        """
        x = self.embed(images)
        n_prompts = 0
        if prompts is not None:
            n_prompts = prompts.shape[-2]
            x = torch.cat([x, prompts.type(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        if deep_prompts and n_prompts == 0:
            raise ValueError("deep vision prompts replace appended prompt tokens: pass prompts too")
        x = self.ln_pre(x)
        for i, block in enumerate(self.blocks):
            if deep_prompts and i in deep_prompts:
                if deep_prompts[i].shape[-2] != n_prompts:
                    raise ValueError(
                        f"deep vision prompt of block {i} has {deep_prompts[i].shape[-2]} tokens, expected {n_prompts}"
                    )
                x = replace_tokens(x, x.shape[1] - n_prompts, deep_prompts[i])
            x = residual_block(block, x, causal=False)
        x = self.ln_post(x[:, 0])
        return x @ self.proj if self.proj is not None else x


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class PromptedCLIP(nn.Module):
    """A frozen CLIP with a prompt learner: the parts every method's CustomCLIP shares.

    Only `prompt_learner` is trained and checkpointed; the method defines the forward.
    """

    def __init__(self, prompt_learner: nn.Module, clip_model: CLIP):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.token_embedding = clip_model.token_embedding  # prompt pieces for new words (EMPL)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        # A trainer.feature_cache.ImageFeatureCache (MODEL.BACKBONE.CACHE_IMAGE_FEATURES); a
        # subclass whose encode_image uses the prompt learner (MaPLe) never reads it.
        self.image_feature_cache = None

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> normalised [B, D] of the frozen image encoder."""
        if self.image_feature_cache is not None:
            return self.image_feature_cache(image, self._encode_image)
        return self._encode_image(image)

    def _encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.image_encoder(image.type(self.dtype)))


class ClassTextCLIP(PromptedCLIP):
    """A PromptedCLIP whose text features depend on the class set only, not on the image (CoOp,
    MaPLe, ProDA): evaluation computes them once per class set (ClipPromptTrainer.model_inference).

    A subclass defines class_text_features() -> normalised [C, D] (or its own shape, with its own
    logits_from_features, as ProDA's K prompt sets).
    """

    def logits_from_features(self, image: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W], text_features [C, D] -> logits [B, C]."""
        return self.logit_scale.exp() * self.encode_image(image) @ text_features.t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(image, self.class_text_features())


class DeepPromptedCLIP(ClassTextCLIP):
    """A frozen ViT CLIP with learned prompts inside both encoders (MaPLe, PromptSRC).

    make_learner(vision_width, vision_layers) builds the prompt learner, which provides
    forward() (text prompt embeddings [C, 77, d]), tokenized_prompts, text_deep_prompts()
    ({text block: [M, d]}) and vision_prompts() ((first prompts [M_v, w] or None, {vision block:
    [M_v, w]})). The frozen image encoder without prompts stays PromptedCLIP.encode_image.
    """

    def __init__(self, make_learner: Callable[[int, int], nn.Module], clip_model: CLIP):
        vision_encoder = VisionEncoder(clip_model.visual)  # clear error for ResNet backbones
        super().__init__(make_learner(vision_encoder.width, vision_encoder.num_layers), clip_model)
        self.vision_encoder = vision_encoder

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> normalised [B, D], with the vision prompts."""
        prompts, deep_prompts = self.prompt_learner.vision_prompts()
        return l2_normalize(self.vision_encoder(image.type(self.dtype), prompts, deep_prompts))

    def class_text_features(self) -> torch.Tensor:
        """Normalised [C, D] text features with the shallow and deep text prompts."""
        learner = self.prompt_learner
        prompts = learner()
        tokenized = learner.tokenized_prompts.to(prompts.device)
        return l2_normalize(self.text_encoder(prompts, tokenized, deep_prompts=learner.text_deep_prompts()))


# --------------------------------------------------------------------------- prompts
def clean_classname(name: str) -> str:
    return name.replace("_", " ")


def tokenize(texts: Sequence[str]) -> torch.Tensor:
    """[P, 77] token ids."""
    return torch.cat([clip.tokenize(t) for t in texts])


@torch.no_grad()
def word_embeddings(clip_model: CLIP, words: str) -> torch.Tensor:
    """Token embeddings of `words` (no SOS/EOS): [n_tokens, d]."""
    ids = clip.tokenize(words)
    n_tokens = len(_tokenizer.encode(words))
    return clip_model.token_embedding(ids).type(clip_model.dtype)[0, 1 : 1 + n_tokens]


def init_context(clip_model: CLIP, n_ctx: int, ctx_init: str = "", n_sets: Optional[int] = None):
    """CoOp's context initialisation.

    ctx_init words -> their embeddings (n_ctx becomes their token count); else N(0, 0.02).
    Returns (ctx [n_ctx, d] or [n_sets, n_ctx, d], prompt_prefix string used for tokenizing);
    ctx is LEARNED_DTYPE (fp32) whatever the CLIP's precision (CoOp makes it the CLIP's dtype).
    """
    width = clip_model.ln_final.weight.shape[0]
    if ctx_init:
        ctx_init = ctx_init.replace("_", " ")
        ctx = word_embeddings(clip_model, ctx_init).to(LEARNED_DTYPE)
        if n_sets is not None:
            ctx = ctx.unsqueeze(0).repeat(n_sets, 1, 1)
        return ctx.clone(), ctx_init
    shape = (n_ctx, width) if n_sets is None else (n_sets, n_ctx, width)
    ctx = torch.empty(shape, dtype=LEARNED_DTYPE)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx)


# MaPLe and PromptSRC initialise the context from words only up to this many tokens.
MAX_N_CTX_FROM_WORDS = 4


def leading_words_context(clip_model: CLIP, n_ctx: int, ctx_init: str, node: str, n_ctx_key: str = "N_CTX"):
    """MaPLe's and PromptSRC's context initialisation (ctx [n_ctx, d] fp32, prompt prefix).

    CTX_INIT words with n_ctx <= MAX_N_CTX_FROM_WORDS: ctx is the embeddings of the words'
    first n_ctx tokens, and the whole words stay in the prompt, so the tokens after the first
    n_ctx are frozen ("a photo of a" with n_ctx 2: "a photo" is learned, "of a" is not).
    Otherwise CoOp's random context, "X .. X". node, n_ctx_key: the config keys, for the error.
    """
    if ctx_init and n_ctx <= MAX_N_CTX_FROM_WORDS:
        words = ctx_init.replace("_", " ")
        embeddings = word_embeddings(clip_model, words)  # [n_tokens, d]
        if embeddings.shape[0] < n_ctx:
            raise ValueError(
                f"{node}.CTX_INIT {ctx_init!r} has {embeddings.shape[0]} tokens, fewer than "
                f"{node}.{n_ctx_key}={n_ctx}: use longer words or a smaller {n_ctx_key}"
            )
        return embeddings[:n_ctx].to(LEARNED_DTYPE).clone(), words
    return init_context(clip_model, n_ctx)


class ClassPrompts(nn.Module):
    """Frozen token pieces of the prompts "<prefix words> <class name>." for a class list.

    Buffers (saved in checkpoints as CoOp saves them, and dropped again at load):
        token_prefix [C, 1, d]      the SOS embedding
        token_suffix [C, 77-1-M, d] class name, ".", EOS and padding
    tokenized_prompts [C, 77], name_lens [C].
    `clip_model` may be any module with CLIP's `token_embedding` and `dtype`.
    """

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], prompt_prefix: str, n_ctx: int):
        super().__init__()
        names = [clean_classname(c) for c in classnames]
        self.name_lens: List[int] = [len(_tokenizer.encode(n)) for n in names]
        self.tokenized_prompts = tokenize([f"{prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            embedding = clip_model.token_embedding(self.tokenized_prompts).type(clip_model.dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])
        self.n_cls = len(names)
        self.n_ctx = n_ctx

    def assemble(self, ctx: torch.Tensor, position: str = "end") -> torch.Tensor:
        """Prompt embeddings [C, 77, d] from context [M, d] (shared) or [C, M, d] (per class).

        position: where the class name goes: "end" (after the context), "middle" (between
        its two halves) or "front" (before it), as CoOp's CLASS_TOKEN_POSITION. The prompts
        have the frozen pieces' dtype (the CLIP's): a learned fp32 ctx is cast to it here.
        """
        ctx = ctx.to(self.token_prefix.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        if position not in ("middle", "front"):
            raise ValueError(f"CLASS_TOKEN_POSITION must be end, middle or front, got {position!r}")
        half = self.n_ctx // 2
        prompts = []
        for i, name_len in enumerate(self.name_lens):
            name, rest = suffix[i : i + 1, :name_len], suffix[i : i + 1, name_len:]
            ctx_i = ctx[i : i + 1]
            if position == "middle":
                pieces = [prefix[i : i + 1], ctx_i[:, :half], name, ctx_i[:, half:], rest]
            else:
                pieces = [prefix[i : i + 1], name, ctx_i, rest]
            prompts.append(torch.cat(pieces, dim=1))
        return torch.cat(prompts, dim=0)


class ClassPromptLearner(nn.Module):
    """What every prompt learner here has: the frozen class pieces `classes` (ClassPrompts),
    n_cls, n_ctx, prompt_prefix and tokenized_prompts, set by init_classes; and
    context_sets(), EMPL's anchor: the learned context `ctx` [M, d] as one prompt set [1, M, d]
    (a learner with several sets overrides it)."""

    def init_classes(self, clip_model: CLIP, classnames: Sequence[str], prompt_prefix: str, n_ctx: int) -> None:
        self.classes = ClassPrompts(clip_model, classnames, prompt_prefix, n_ctx)
        self.n_cls, self.n_ctx = len(classnames), n_ctx
        self.prompt_prefix = prompt_prefix

    @property
    def tokenized_prompts(self) -> torch.Tensor:
        return self.classes.tokenized_prompts

    def context_sets(self) -> torch.Tensor:
        return self.ctx.unsqueeze(0)
