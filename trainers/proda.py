"""ProDA: Prompt Distribution Learning (Lu et al., CVPR 2022), as a baseline and as EMPL's host.

K learnable prompt sets ("ProDA(xK)") give K text features per class; the loss is the Gaussian
upper bound of the expected cross-entropy over their distribution plus an orthogonality penalty
between the K prompts' features; inference uses the mean feature (docs/EMPL.md, "ProDA").
Keys: TRAINER.PRODA.N_PROMPTS, N_CTX, CTX_INIT, PREC, ORTHO_WEIGHT.
"""
import torch
import torch.nn as nn

from .clip_backbone import ClassPrompts, ClassTextCLIP, init_context, l2_normalize
from .multi_prompt_losses import proda_gaussian_bound_loss, prompt_orthogonality
from .prompt_trainer import ClipPromptTrainer, register_trainer


class PromptLearner(nn.Module):
    """ctx [K, M, d]: K prompt sets, class token at the end."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        proda = cfg.TRAINER.PRODA
        if proda.N_PROMPTS < 1:
            raise ValueError(f"TRAINER.PRODA.N_PROMPTS must be >= 1, got {proda.N_PROMPTS}")
        ctx, prompt_prefix = init_context(clip_model, proda.N_CTX, proda.CTX_INIT, n_sets=proda.N_PROMPTS)
        if proda.CTX_INIT:  # identical sets would have zero spread: perturb all but the first
            ctx[1:] += 0.02 * torch.randn_like(ctx[1:])
        print(f'Initial context: "{prompt_prefix}" x {proda.N_PROMPTS} prompt sets')
        self.ctx = nn.Parameter(ctx)
        self.n_ctx = ctx.shape[1]
        self.prompt_prefix = prompt_prefix
        self.classes = ClassPrompts(clip_model, classnames, prompt_prefix, self.n_ctx)

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def context_sets(self):
        return self.ctx

    def forward(self):
        """Prompt embeddings of every set and class: [K * C, 77, d], set-major."""
        return torch.cat([self.classes.assemble(ctx) for ctx in self.ctx])


class CustomCLIP(ClassTextCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(PromptLearner(cfg, classnames, clip_model), clip_model)

    def class_text_features(self):
        """Normalised [K, C, D]: every prompt set's feature of every class."""
        learner = self.prompt_learner
        n_sets = learner.ctx.shape[0]
        tokenized = learner.tokenized_prompts.to(learner.ctx.device).repeat(n_sets, 1)
        return l2_normalize(self.text_encoder(learner(), tokenized)).view(n_sets, learner.classes.n_cls, -1)

    def prompt_logits(self, image, text_features):
        """Per-prompt logits [K, B, C]."""
        return self.logit_scale.exp() * torch.einsum("bd,kcd->kbc", self.encode_image(image), text_features)

    def logits_from_features(self, image, text_features):
        """Prediction with the mean text feature: tau z.mu_c = mean_k of the per-prompt logits."""
        return self.prompt_logits(image, text_features).mean(0)


def proda_loss(prompt_logits, labels, anchor_features, ortho_weight):
    """Gaussian bound over all prompts' logits [K', B, C] + orthogonality of the K anchors' [K, C, D]."""
    loss = proda_gaussian_bound_loss(prompt_logits, labels)
    if ortho_weight > 0:
        loss = loss + ortho_weight * prompt_orthogonality(anchor_features)
    return loss


@register_trainer
class ProDA(ClipPromptTrainer):
    """Prompt Distribution Learning. https://arxiv.org/abs/2205.03340"""

    cfg_node = "PRODA"

    def build_custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model)

    def compute_loss(self, image, label):
        text_features = self.model.class_text_features()
        prompt_logits = self.model.prompt_logits(image, text_features)
        loss = proda_loss(prompt_logits, label, text_features, self.method_cfg.ORTHO_WEIGHT)
        return loss, prompt_logits.mean(0)
