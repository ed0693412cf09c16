"""EMPL_CoOp: energy-based multi-prompt learning on CoOp's shared context (docs/EMPL.md).

phi = CoOp's context (TRAINER.COOP.N_CTX, CTX_INIT, PREC; CSC False, class token at the end);
N prompts are drawn by SGLD around it at text block L - l; L_in is the NLL of the mean of the
N+1 softmaxes. Keys: TRAINER.EMPL.* (README, "EMPL configuration").
"""
from . import coop
from .empl import EMPLMixin
from .multi_prompt_losses import mixture_log_probs, mixture_nll
from .prompt_trainer import register_trainer


class PromptLearner(coop.PromptLearner):
    def context_sets(self):
        return self.ctx.unsqueeze(0)  # one prompt set: [1, M, d]


@register_trainer
class EMPL_CoOp(EMPLMixin, coop.CoOp):
    """Energy-based Multi-prompt Learning with CoOp's context as the anchor."""

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CSC or cfg.TRAINER.COOP.CLASS_TOKEN_POSITION != "end":
            raise ValueError(
                "EMPL_CoOp samples one context shared by all classes: it needs TRAINER.COOP.CSC False "
                "and TRAINER.COOP.CLASS_TOKEN_POSITION end"
            )

    def build_custom_clip(self, cfg, classnames, clip_model):
        return coop.CustomCLIP(cfg, classnames, clip_model, prompt_learner_cls=PromptLearner)

    def build_model(self):
        super().build_model()
        self.build_empl()

    def multi_prompt_loss(self, logits, labels, anchor_features):
        """L_in over the anchor and its samples: logits [1, S, B, V]."""
        logits = logits.flatten(0, 1)
        return mixture_nll(logits, labels), mixture_log_probs(logits)

    def multi_prompt_prediction(self, logits):
        return mixture_log_probs(logits.flatten(0, 1))
