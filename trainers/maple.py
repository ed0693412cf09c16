"""MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023).

Prompts on both branches of CLIP, coupled:
- text: a shared context ctx [M, d] in the prompt "[SOS] ctx <rest of CTX_INIT> <class>.", and
  compound deep prompts [M, d] that replace the context tokens' hidden states at the input of
  text blocks 1 .. PROMPT_DEPTH - 1;
- vision: M prompt tokens appended after the image tokens, proj(ctx) at block 0 and
  compound_prompt_projections[i - 1](compound_prompts_text[i - 1]) replacing them at block i
  (text-to-vision coupling functions, Linear text width -> vision width).
CLIP's blocks run from our code (trainers/clip_backbone.py); the clip package is not forked.
Keys: TRAINER.MAPLE.N_CTX, CTX_INIT, PREC, PROMPT_DEPTH (1 = shallow MaPLe).

As in the reference, CTX_INIT words with N_CTX <= 4 make ctx the embeddings of the first N_CTX
tokens of the words, and the remaining words stay in the prompt as frozen tokens ("a photo of a"
with N_CTX 2: "a photo" is learned, "of a" is not); otherwise ctx is random and the prompt is
"X .. X <class>.". Parameter names are the reference's (ctx, proj, compound_prompts_text,
compound_prompt_projections).
"""
import copy
from typing import Dict, Tuple

import torch
import torch.nn as nn

from .class_prompts import ClassPromptLearner, leading_words_context
from .errors import UserValueError
from .prompted_clip import DeepPromptedCLIP
from .prompt_trainer import ClipPromptTrainer, declare_node, register_trainer


def add_config(cfg):
    """TRAINER.MAPLE with MaPLe's defaults (its train.py)."""
    declare_node(cfg, "MAPLE", N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)  # depth 1: shallow MaPLe

def check_prompt_depth(depth: int, text_layers: int, vision_layers: int) -> None:
    if not 1 <= depth <= min(text_layers, vision_layers):
        raise UserValueError(
            f"TRAINER.MAPLE.PROMPT_DEPTH must be in 1..{min(text_layers, vision_layers)} for this CLIP "
            f"({text_layers} text and {vision_layers} vision blocks), got {depth}"
        )


class MultiModalPromptLearner(ClassPromptLearner):
    """MaPLe's learned tensors.

    ctx [M, d]; compound_prompts_text: PROMPT_DEPTH - 1 tensors [M, d]; proj and
    compound_prompt_projections: Linear(d -> w), w = vision width.
    forward() -> text prompt embeddings [C, 77, d].
    """

    def __init__(self, cfg, classnames, clip_model, vision_width: int, vision_layers: int):
        super().__init__()
        maple = cfg.TRAINER.MAPLE
        text_width = clip_model.ln_final.weight.shape[0]
        check_prompt_depth(maple.PROMPT_DEPTH, len(clip_model.transformer.resblocks), vision_layers)
        self.prompt_depth = maple.PROMPT_DEPTH

        ctx, prompt_prefix = leading_words_context(clip_model, maple.N_CTX, maple.CTX_INIT, "TRAINER.MAPLE")
        n_ctx = ctx.shape[0]
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of MaPLe context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        # Shallow coupling: the text context projected to the first vision prompts. fp32 in every
        # precision (the reference makes it half): its output is cast where it enters the CLIP.
        self.proj = nn.Linear(text_width, vision_width)
        # Deep compound prompts (fp32, as in the reference) and their couplings.
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(nn.init.normal_(torch.empty(n_ctx, text_width), std=0.02))
             for _ in range(self.prompt_depth - 1)]
        )
        coupling = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(coupling) for _ in range(self.prompt_depth - 1)]
        )

        self.init_classes(clip_model, classnames, prompt_prefix, n_ctx)

    def text_deep_prompts(self) -> Dict[int, torch.Tensor]:
        """{text block i: [M, d]} for i = 1 .. PROMPT_DEPTH - 1."""
        return {i + 1: prompt for i, prompt in enumerate(self.compound_prompts_text)}

    def vision_prompts(self) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """(first vision prompts [M, w], {vision block i: [M, w]} for i = 1 .. PROMPT_DEPTH - 1)."""
        deep = {
            i + 1: coupling(prompt)
            for i, (coupling, prompt) in enumerate(zip(self.compound_prompt_projections, self.compound_prompts_text))
        }
        return self.proj(self.ctx), deep

    def forward(self) -> torch.Tensor:
        return self.classes.assemble(self.ctx)


class CustomCLIP(DeepPromptedCLIP):
    """Frozen CLIP with MaPLe's prompts on both encoders."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(lambda width, layers: MultiModalPromptLearner(cfg, classnames, clip_model, width, layers),
                         clip_model)


@register_trainer
class MaPLe(ClipPromptTrainer):
    """Multi-modal Prompt Learning (MaPLe). https://arxiv.org/abs/2210.03117"""

    cfg_node = "MAPLE"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.TRAINER.MAPLE.PROMPT_DEPTH < 1:
            raise UserValueError(f"TRAINER.MAPLE.PROMPT_DEPTH must be >= 1, got {cfg.TRAINER.MAPLE.PROMPT_DEPTH}")
        if cfg.TRAINER.MAPLE.N_CTX < 1:
            raise UserValueError(f"TRAINER.MAPLE.N_CTX must be >= 1, got {cfg.TRAINER.MAPLE.N_CTX}")

    def build_custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model)
