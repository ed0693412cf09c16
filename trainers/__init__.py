"""Prompt learners on CLIP, registered in dassl's TRAINER_REGISTRY (import this package).

Shared plumbing: clip_backbone.py (CLIP loading, text encoder, prompt pieces) and
prompt_trainer.py (the trainer base); one file per method."""
from . import cocoop, coop, zsclip  # noqa: F401
