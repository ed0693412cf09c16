"""``build_lr_scheduler`` with Dassl's warmup wrappers.

The warmup schedulers wrap a "successor" (StepLR / MultiStepLR /
CosineAnnealingLR). They are stepped once per epoch; for the first
``warmup_epoch`` epochs they set the warmup LR, afterwards they delegate to the
successor. The successor was constructed first, so its own epoch counter starts
at 0 when warmup ends (WARMUP_RECOUNT=True) or is preset to ``warmup_epoch``.

Example, CoOp's vit_b16.yaml (cosine, LR=0.002, MAX_EPOCH=E, constant warmup
of 1 epoch at 1e-5): epoch 0 -> 1e-5, epoch e >= 1 -> cosine value at e - 1,
i.e. 0.001 * (1 + cos(pi * (e - 1) / E)).
"""
from __future__ import annotations

from typing import List

import torch
from torch.optim.lr_scheduler import LRScheduler

from dassl.utils import UserValueError

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    def __init__(self, optimizer, successor: LRScheduler, warmup_epoch: int,
                 last_epoch: int = -1, verbose: bool = False):
        # ``verbose`` is accepted for signature compatibility (torch dropped it).
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return self.warmup_lr()

    def warmup_lr(self) -> List[float]:
        """The LR of each param group at warmup epoch ``last_epoch`` (< warmup_epoch)."""
        raise NotImplementedError

    def step(self, epoch=None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            if epoch is None:
                self.successor.step()
            else:
                self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    # torch's default state_dict would pickle the successor object together
    # with (a copy of) its optimizer; after loading, the successor would then
    # step that stale copy and the real LR would stop changing. Save the
    # successor's own state_dict instead and load it into the live successor.
    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        successor = state.pop("successor", None)
        if isinstance(successor, LRScheduler):  # checkpoint written by real Dassl
            successor = successor.state_dict()
        if successor is not None:
            self.successor.load_state_dict(successor)
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """LR = ``cons_lr`` during warmup."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1, verbose=False):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

    def warmup_lr(self) -> List[float]:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """LR = ``min_lr`` at epoch 0, then ``base_lr * epoch / warmup_epoch``."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr, last_epoch=-1, verbose=False):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

    def warmup_lr(self) -> List[float]:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer, optim_cfg) -> LRScheduler:
    """Build the scheduler named by ``optim_cfg.LR_SCHEDULER`` (stepped once per epoch).

    Uses LR_SCHEDULER, STEPSIZE, GAMMA, MAX_EPOCH, WARMUP_EPOCH, WARMUP_TYPE,
    WARMUP_CONS_LR, WARMUP_MIN_LR and WARMUP_RECOUNT.
    """
    name = optim_cfg.LR_SCHEDULER
    stepsize, gamma, max_epoch = optim_cfg.STEPSIZE, optim_cfg.GAMMA, optim_cfg.MAX_EPOCH
    if name not in AVAI_SCHEDS:
        raise UserValueError(f"OPTIM.LR_SCHEDULER must be one of {AVAI_SCHEDS}, but got '{name}'")

    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(f"For single_step, OPTIM.STEPSIZE must be an integer, but got {stepsize!r}")
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize, gamma=gamma)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"For multi_step, OPTIM.STEPSIZE must be a list, but got {stepsize!r}")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepsize), gamma=gamma)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR
            )
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR
            )
        else:
            raise UserValueError(
                f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', but got '{optim_cfg.WARMUP_TYPE}'"
            )
    return scheduler
