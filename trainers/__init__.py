"""Trainers, registered in dassl's TRAINER_REGISTRY on import.

Shared plumbing: clip_backbone.py (CLIP loading, text encoder, prompt pieces) and
prompt_trainer.py (the trainer base); EMPL's sampler and objective: sgld.py, empl.py,
multi_prompt_losses.py, open_vocab.py; one file per method."""
from . import cocoop, coop, empl_coop, empl_maple, empl_proda, maple, proda, zsclip  # noqa: F401
