"""Trainers: registry, builder and the TrainerBase/SimpleTrainer/TrainerX(U) templates."""
from .build import TRAINER_REGISTRY, build_trainer  # isort:skip
from .trainer import SimpleTrainer, TrainerBase, TrainerX, TrainerXU

__all__ = ["TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX", "TrainerXU"]
