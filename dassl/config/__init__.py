"""Configuration (yacs) with Dassl's defaults."""
from .cfg_node import CfgNode, ConfigKeyError
from .defaults import _C as cfg_default

__all__ = ["get_cfg_default", "clean_cfg", "cfg_default", "CfgNode", "ConfigKeyError"]


def get_cfg_default() -> CfgNode:
    """Return a fresh (mutable) copy of the default config."""
    return cfg_default.clone()


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop the config nodes of all trainers other than ``trainer`` (for a short print(cfg))."""
    for key in list(cfg.TRAINER.keys()):
        if key not in ("NAME", trainer.upper()):
            cfg.TRAINER.pop(key, None)
