"""Optimizers and learning-rate schedulers built from ``cfg.OPTIM``."""
from .optimizer import AVAI_OPTIMS, build_optimizer
from .lr_scheduler import (
    AVAI_SCHEDS,
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
)

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "AVAI_OPTIMS",
    "AVAI_SCHEDS",
]
