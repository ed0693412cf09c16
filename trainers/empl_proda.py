"""EMPL_ProDA: energy-based multi-prompt learning on ProDA's K prompt sets (docs/EMPL.md).

The K prompt sets are the chain starts (N chains each); ProDA's Gaussian-bound loss is taken
over the K anchors and their K x N samples together; L_out uses the mean prompt's logits; the
prediction uses the mean text feature. Keys: TRAINER.PRODA.*, TRAINER.EMPL.*.
"""
from . import proda
from .empl import EMPLMixin
from .prompt_trainer import register_trainer


@register_trainer
class EMPL_ProDA(EMPLMixin, proda.ProDA):
    """Energy-based Multi-prompt Learning with ProDA's prompt sets as anchors."""

    def multi_prompt_loss(self, logits, labels, anchor_features):
        """logits [K, S, B, V]: ProDA's bound over all K x S prompts."""
        logits = logits.flatten(0, 1)
        return proda.proda_loss(logits, labels, anchor_features, self.method_cfg.ORTHO_WEIGHT), logits.mean(0)

    def multi_prompt_prediction(self, logits):
        return logits.flatten(0, 1).mean(0)
