"""Trainers, registered in dassl's TRAINER_REGISTRY on import.

Shared plumbing: clip_backbone.py (CLIP loading and precision), clip_encoders.py (the encoders
run block by block), class_prompts.py (prompt assembly), prompted_clip.py (the model shells) and
prompt_trainer.py (the trainer base); EMPL's sampler and objective: sgld.py, empl.py,
empl_config.py (its keys), multi_prompt_losses.py, open_vocab.py; one file per method.

In this repository the package is `trainers`; installed into a CoOp or MaPLe checkout
(pyproject.toml) it is `multiprompt`: `import multiprompt` registers the trainers and
`multiprompt.add_method_config(cfg)` declares their config keys."""
from . import cocoop, coop, empl_coop, empl_maple, empl_proda, kgcoop, maple, proda, promptsrc, zsclip  # noqa: F401
from .config import add_method_config  # noqa: F401
