"""Running-average meters used for loss/accuracy logging."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Optional

import torch

__all__ = ["AverageMeter", "MetricMeter"]


class AverageMeter:
    """Track the latest value and the running (or exponential moving) average."""

    def __init__(self, ema: bool = False):
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.avg * 0.9 + val * 0.1 if self.ema else self.sum / self.count


class MetricMeter:
    """A dict of :class:`AverageMeter`; ``str()`` gives "name val (avg)" pairs."""

    def __init__(self, delimiter: str = " "):
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[dict]) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            self.meters[k].update(v.item() if isinstance(v, torch.Tensor) else v)

    def __str__(self) -> str:
        return self.delimiter.join(
            f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items()
        )
