"""EMPL_MaPLe: energy-based multi-prompt learning on MaPLe's text side (docs/EMPL.md).

phi = MaPLe's text context and its compound deep prompts: H is the context tokens' hidden
state at the input of text block L - l, which carries the deep prompts of the blocks before it
(PROMPT_DEPTH 9 of 12 blocks with SGLD_LAYERS 2: blocks 10 and 11 are prompt-free, so every
sample runs the last l blocks unchanged). The vision branch is MaPLe's, unchanged: its prompts
come from the learned tensors through the coupling functions, and the image features keep
their gradient in the loss. L_in is the NLL of the mean of the N+1 softmaxes, as in EMPL_CoOp
(EMPLMixin's default). Keys: TRAINER.MAPLE.*, TRAINER.EMPL.*.
"""
from . import maple
from .empl import EMPLMixin
from .prompt_trainer import register_trainer


@register_trainer
class EMPL_MaPLe(EMPLMixin, maple.MaPLe):
    """Energy-based Multi-prompt Learning with MaPLe's text prompts as the anchor."""

    trains_image_side = True  # MaPLe's vision prompts are learned
