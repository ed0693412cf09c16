"""Trainers, registered in dassl's TRAINER_REGISTRY on import.

Shared plumbing: clip_backbone.py (CLIP loading, text encoder, prompt pieces) and
prompt_trainer.py (the trainer base); EMPL's sampler and objective: sgld.py, empl.py,
multi_prompt_losses.py, open_vocab.py; the world CLIP of the bundled benchmark: world_clip.py;
one file per method."""
from . import cocoop, coop, empl_coop, empl_maple, empl_proda, maple, proda, world_clip, zsclip  # noqa: F401
