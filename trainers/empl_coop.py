"""EMPL_CoOp: energy-based multi-prompt learning on CoOp's shared context (docs/EMPL.md).

phi = CoOp's context (TRAINER.COOP.N_CTX, CTX_INIT, PREC; CSC False, class token at the end);
N prompts are drawn by SGLD around it at text block L - l; L_in is the NLL of the mean of the
N+1 softmaxes (EMPLMixin's default). Keys: TRAINER.EMPL.* (README, "EMPL configuration").
"""
from . import coop
from .empl import EMPLMixin
from .errors import UserValueError
from .prompt_trainer import register_trainer


@register_trainer
class EMPL_CoOp(EMPLMixin, coop.CoOp):
    """Energy-based Multi-prompt Learning with CoOp's context as the anchor."""

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CSC or cfg.TRAINER.COOP.CLASS_TOKEN_POSITION != "end":
            raise UserValueError(
                "EMPL_CoOp samples one context shared by all classes: it needs TRAINER.COOP.CSC False "
                "and TRAINER.COOP.CLASS_TOKEN_POSITION end"
            )
