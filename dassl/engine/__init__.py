"""Trainers: registry, builder and the TrainerBase/SimpleTrainer/TrainerX templates."""
from .build import TRAINER_REGISTRY, build_trainer  # isort:skip
from .trainer import SimpleTrainer, TrainerBase, TrainerX

__all__ = ["TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX"]
