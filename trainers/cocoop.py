"""CoCoOp: Conditional Prompt Learning for Vision-Language Models (Zhou et al., CVPR 2022).

A meta-net turns each image's feature into a bias added to every context vector, so each image
gets its own prompts. Keys: TRAINER.COCOOP.N_CTX, CTX_INIT, PREC.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .class_prompts import ClassPromptLearner, init_context
from .clip_backbone import l2_normalize
from .prompted_clip import PromptedCLIP
from .prompt_trainer import ClipPromptTrainer, declare_node, register_trainer


def add_config(cfg):
    """TRAINER.COCOOP with CoCoOp's defaults (CoOp's train.py)."""
    declare_node(cfg, "COCOOP", N_CTX=16, CTX_INIT="", PREC="fp16")


class PromptLearner(ClassPromptLearner):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        cocoop = cfg.TRAINER.COCOOP
        ctx, prompt_prefix = init_context(clip_model, cocoop.N_CTX, cocoop.CTX_INIT)
        n_ctx = ctx.shape[0]
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)

        vis_dim = clip_model.visual.output_dim
        ctx_dim = clip_model.ln_final.weight.shape[0]
        # Layer names as in the reference, so its checkpoints load.
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))  # fp32 in every precision (the reference makes it half under PREC fp16): LEARNED_DTYPE
        self.init_classes(clip_model, classnames, prompt_prefix, n_ctx)

    def forward(self, image_features):
        """image_features [B, D] -> per-image prompts [B, C, 77, d]."""
        # Half image features (PREC fp16) enter the fp32 meta-net as fp32.
        bias = self.meta_net(image_features.to(self.ctx.dtype)).unsqueeze(1)  # [B, 1, d]
        ctx_shifted = self.ctx.unsqueeze(0) + bias  # [B, M, d]
        return torch.stack([self.classes.assemble(ctx_i) for ctx_i in ctx_shifted])


class CustomCLIP(PromptedCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(PromptLearner(cfg, classnames, clip_model), clip_model)

    # Text sequences per text-encoder pass: all images' prompts go through together (the
    # reference loops over images), in chunks so a 1000-class evaluation batch fits in memory.
    max_sequences_per_pass = 8192

    def image_text_logits(self, image_features):
        """Normalised image_features [B, D] -> logits [B, C] with each image's own prompts."""
        n_cls = self.prompt_learner.n_cls
        tokenized = self.prompt_learner.tokenized_prompts.to(image_features.device)
        chunk = max(1, self.max_sequences_per_pass // n_cls)
        logits = []
        for feats in image_features.split(chunk):
            prompts = self.prompt_learner(feats)  # [b, C, 77, d]
            text = self.text_encoder(prompts.flatten(0, 1), tokenized.repeat(len(feats), 1))
            text = l2_normalize(text).view(len(feats), n_cls, -1)
            logits.append(torch.einsum("bd,bcd->bc", feats, text))
        return self.logit_scale.exp() * torch.cat(logits)

    def forward(self, image, label=None):
        """Logits [B, C]; in training mode with labels, the cross-entropy loss instead."""
        logits = self.image_text_logits(self.encode_image(image))
        if self.prompt_learner.training and label is not None:
            return F.cross_entropy(logits, label)
        return logits


@register_trainer
class CoCoOp(ClipPromptTrainer):
    """Conditional Context Optimization (CoCoOp). https://arxiv.org/abs/2203.05557"""

    cfg_node = "COCOOP"

    def build_custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model)

    def compute_loss(self, image, label):
        return self.model(image, label), None
