"""Prompt assembly: the frozen class pieces of "<context> <class name>." prompts and the context
they are assembled with.

- `init_context` (CoOp) and `leading_words_context` (MaPLe, PromptSRC): the learned context's
  initial value and the prompt prefix its placeholders are tokenized as.
- `ClassPrompts`: token ids and frozen token embeddings of the prompts for a class list, and
  their assembly with learned context at CoOp's class-token positions.
- `ClassPromptLearner`: what every prompt learner here has (the class pieces, n_ctx,
  prompt_prefix, and EMPL's anchor `context_sets()`).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from .clip_backbone import CLIP, LEARNED_DTYPE, token_count, tokenize
from .errors import UserValueError


def clean_classname(name: str) -> str:
    return name.replace("_", " ")


@torch.no_grad()
def word_embeddings(clip_model: CLIP, words: str) -> torch.Tensor:
    """Token embeddings of `words` (no SOS/EOS): [n_tokens, d]."""
    ids = tokenize([words])
    n_tokens = token_count(words)
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
            raise UserValueError(
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
        self.name_lens: List[int] = [token_count(n) for n in names]
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
            raise UserValueError(f"CLASS_TOKEN_POSITION must be end, middle or front, got {position!r}")
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
