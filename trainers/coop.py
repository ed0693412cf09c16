"""CoOp: Learning to Prompt for Vision-Language Models (Zhou et al., IJCV 2022).

Learned context vectors replace the hand-written template: "[ctx_1 .. ctx_M] <class>.", shared
by all classes or one set per class (CSC), with the class token at the end, in the middle or in
front. Keys: TRAINER.COOP.N_CTX, CSC, CTX_INIT, PREC, CLASS_TOKEN_POSITION.
"""
import torch.nn as nn

from .class_prompts import ClassPromptLearner, init_context
from .clip_backbone import l2_normalize
from .errors import UserValueError
from .prompted_clip import ClassTextCLIP
from .prompt_trainer import ClipPromptTrainer, declare_node, register_trainer


def add_config(cfg):
    """TRAINER.COOP with CoOp's defaults (its train.py's extend_cfg), so its config files merge."""
    declare_node(
        cfg, "COOP",
        N_CTX=16,  # number of context vectors
        CSC=False,  # class-specific context
        CTX_INIT="",  # initialization words
        PREC="fp16",  # fp16, fp32, amp
        CLASS_TOKEN_POSITION="end",  # end, middle or front
    )


class PromptLearner(ClassPromptLearner):
    """ctx: [M, d] shared or [C, M, d] class-specific; forward() -> prompts [C, 77, d]."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        coop = cfg.TRAINER.COOP
        n_cls = len(classnames)
        ctx_init = coop.CTX_INIT
        if ctx_init:
            # As in CoOp, words give one shared context even with CSC (checkpoints stay compatible).
            if coop.CSC:
                print("Note: TRAINER.COOP.CSC is ignored when CTX_INIT is set (as in CoOp)")
            ctx, prompt_prefix = init_context(clip_model, coop.N_CTX, ctx_init)
        else:
            print("Initializing class-specific contexts" if coop.CSC else "Initializing a generic context")
            ctx, prompt_prefix = init_context(clip_model, coop.N_CTX, n_sets=n_cls if coop.CSC else None)
        n_ctx = ctx.shape[-2]
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")

        self.ctx = nn.Parameter(ctx)
        self.init_classes(clip_model, classnames, prompt_prefix, n_ctx)
        self.class_token_position = coop.CLASS_TOKEN_POSITION

    def context_sets(self):
        """The shared context as one prompt set (EMPL's anchor): [M, d] -> [1, M, d]."""
        if self.ctx.dim() != 2:
            raise UserValueError(
                "class-specific contexts (TRAINER.COOP.CSC True) are one context per class, not a prompt set "
                "shared by all classes: context_sets() needs CSC False (or CTX_INIT, which gives a shared context)"
            )
        return super().context_sets()

    def forward(self):
        return self.classes.assemble(self.ctx, self.class_token_position)


class CustomCLIP(ClassTextCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(PromptLearner(cfg, classnames, clip_model), clip_model)

    def class_text_features(self):
        """Normalised [C, D] text features of the current prompts."""
        prompts = self.prompt_learner()
        return l2_normalize(self.text_encoder(prompts, self.prompt_learner.tokenized_prompts.to(prompts.device)))


@register_trainer
class CoOp(ClipPromptTrainer):
    """Context Optimization (CoOp). https://arxiv.org/abs/2109.01134"""

    cfg_node = "COOP"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        position = cfg.TRAINER.COOP.CLASS_TOKEN_POSITION
        if position not in ("end", "middle", "front"):
            raise UserValueError(f"TRAINER.COOP.CLASS_TOKEN_POSITION must be end, middle or front, got {position!r}")

    def build_custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model)
