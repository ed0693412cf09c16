"""``build_optimizer``: the optimizer named by ``cfg.OPTIM.NAME``."""
from __future__ import annotations

import warnings
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn

from dassl.utils import UserValueError

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: nn.Module, optim_cfg) -> list:
    """Two groups: NEW_LAYERS at LR, every other direct child at LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise TypeError("When OPTIM.STAGED_LR is True, build_optimizer() needs an nn.Module")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        warnings.warn("OPTIM.NEW_LAYERS is empty (OPTIM.STAGED_LR has no effect)")
    base_params, new_params = [], []
    for name, module in model.named_children():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg, param_groups: Optional[list] = None):
    """Build an optimizer from ``optim_cfg`` (the ``cfg.OPTIM`` node).

    Args:
        model: an ``nn.Module`` or an iterable of parameters (or param-group dicts).
        optim_cfg: node with NAME, LR, WEIGHT_DECAY, MOMENTUM, SGD_DAMPNING,
            SGD_NESTEROV, RMSPROP_ALPHA, ADAM_BETA1/2, STAGED_LR, NEW_LAYERS,
            BASE_LR_MULT.
        param_groups: if given, optimized as-is and ``model`` is ignored.
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise UserValueError(f"OPTIM.NAME must be one of {AVAI_OPTIMS}, but got '{name}'")
    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "staged_lr will be ignored, if you need to use staged_lr, "
            "please bind it with param_groups yourself."
        )
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg)
        else:
            param_groups = model.parameters() if isinstance(model, nn.Module) else model

    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad")
    if name == "sgd":
        return torch.optim.SGD(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    if name == "radam":
        # Dassl ships its own RAdam whose weight decay is decoupled (p -= lr*wd*p)
        # and which falls back to an SGD-with-momentum step while the variance
        # is intractable; torch's RAdam does the same with this flag.
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=wd, betas=betas, decoupled_weight_decay=True)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)
