"""CLIP's encoders run block by block from our code, so that prompts can enter inside them.

- `TextEncoder`: CLIP's text transformer on prompt embeddings, cut to the longest prompt; it can
  stop or start at any block (EMPL) and replace the context tokens' hidden states at chosen
  blocks (deep prompts, MaPLe).
- `LayerSplitText`: the text encoder split at a block (EMPL samples the context's hidden states
  there; the blocks after it turn any such states into class text features).
- `VisionEncoder`: CLIP's ViT image side, with prompt tokens appended after the patch tokens
  and replaced at chosen blocks (MaPLe's vision prompts).
Both run CLIP's own weights (the clip package is not forked); the frozen weights keep their
dtype, and learned tensors are cast to it where they enter (`replace_tokens`, `embed`).
"""
from typing import Collection, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .clip_backbone import CLIP, l2_normalize
from .errors import UserValueError


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
            raise UserValueError(
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


class LayerSplitText:
    """The text encoder split at block L - l for prompts "[SOS] ctx_1..ctx_M <name> . [EOS]".

    A host with deep text prompts (MaPLe) names their blocks in deep_prompt_blocks: they must
    all be at or before the split, so that the last l blocks are prompt-free and a sampled H is
    never overwritten. A deep prompt at block L - l itself is the anchor H there.
    """

    def __init__(self, text_encoder, sgld_layers: int, n_ctx: int, deep_prompt_blocks: Collection[int] = ()):
        depth = text_encoder.num_layers
        if not 1 <= sgld_layers <= depth:
            raise UserValueError(f"TRAINER.EMPL.SGLD_LAYERS must be in 1..{depth} for this CLIP, got {sgld_layers}")
        self.encoder = text_encoder
        self.split = depth - sgld_layers
        self.n_ctx = n_ctx
        if deep_prompt_blocks and max(deep_prompt_blocks) > self.split:
            raise UserValueError(
                f"TRAINER.EMPL.SGLD_LAYERS={sgld_layers} samples prompts at text block {self.split}, but the host "
                f"has deep text prompts up to block {max(deep_prompt_blocks)}, which would overwrite them: "
                f"use SGLD_LAYERS <= {depth - max(deep_prompt_blocks)} or a smaller prompt depth"
            )

    def prefix(
        self, prompts: torch.Tensor, tokenized: torch.Tensor, deep_prompts: Optional[Dict[int, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hidden states at the input of block L - l, sequences cut at the longest prompt.

        prompts [P, 77, d], tokenized [P, 77] -> (hidden [P, T, d], eot [P]).
        deep_prompts {block: [M, d]} (blocks <= L - l) replace the context states on the way.
        """
        eot = eot_positions(tokenized)
        x = self.encoder.embed(prompts[:, : int(eot.max()) + 1])
        x = self.encoder.run_blocks(x, 0, self.split, deep_prompts=deep_prompts)
        if deep_prompts and self.split in deep_prompts:
            x = replace_tokens(x, 1, deep_prompts[self.split])
        return x, eot

    def context_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """The context positions' states: [..., T, d] -> [..., M, d]."""
        return hidden[..., 1 : 1 + self.n_ctx, :]

    def features(self, hidden: torch.Tensor, eot: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Normalised text features with the context states replaced.

        hidden [A, P, T, d] (A prompt sets or chain groups), eot [P] (or [A, P]: each group its
        own sequences), states [A, S, M, d] -> [A, S, P, D]: prompt s of group a on every one of
        the P sequences.
        """
        groups, samples = states.shape[:2]
        n_seq, length, width = hidden.shape[1:]
        x = hidden.unsqueeze(1).expand(groups, samples, n_seq, length, width)
        ctx = states.unsqueeze(2).expand(groups, samples, n_seq, self.n_ctx, width).type(x.dtype)
        x = torch.cat([x[..., :1, :], ctx, x[..., 1 + self.n_ctx :, :]], dim=-2)
        x = self.encoder.run_blocks(x.reshape(-1, length, width), self.split)
        if eot.dim() == 2:
            eot = eot.unsqueeze(1).expand(groups, samples, n_seq).reshape(-1)
        else:
            eot = eot.repeat(groups * samples)
        feats = self.encoder.final_features(x, eot)
        return l2_normalize(feats).view(groups, samples, n_seq, -1)
