"""Test-only fault injection for train.py runs (tests/test_reliability.py); not part of the engine.

``install("kill@N")`` makes every trainer built afterwards send SIGKILL to its own process, and
``install("nan@N")`` turn its learnable parameters into NaN, just before global training
iteration N: 0-based, ``epoch * batches_per_epoch + batch_idx``, counted before the iteration's
forward_backward runs (a run resumed within an epoch starts at the resumed batch, as the engine
numbers it). tests/train_with_faults.py installs it from DASSL_FAULT_INJECT and runs train.py.
"""
import functools
import os
import re
import signal
import sys

import torch

FAULT_ENV = "DASSL_FAULT_INJECT"


def parse(spec: str):
    """("kill" | "nan", N) from "kill@N" / "nan@N"; ValueError otherwise."""
    match = re.fullmatch(r"(kill|nan)@(\d+)", spec.strip())
    if match is None:
        raise ValueError(f"{FAULT_ENV} must be kill@N or nan@N, got {spec!r}")
    return match.group(1), int(match.group(2))


def _inject(trainer, kind: str) -> None:
    if kind == "kill":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        with torch.no_grad():
            for name in trainer.get_model_names():
                for p in trainer._models[name].parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))


def install(spec: str) -> None:
    """Wrap the forward_backward of every trainer constructed from now on (see module doc)."""
    kind, at = parse(spec)
    from dassl.engine.trainer import SimpleTrainer

    original_init = SimpleTrainer.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        forward_backward = self.forward_backward

        @functools.wraps(forward_backward)
        def faulty_forward_backward(*fb_args, **fb_kwargs):
            if self.epoch * self.num_batches + self.batch_idx == at:
                _inject(self, kind)
            return forward_backward(*fb_args, **fb_kwargs)

        self.forward_backward = faulty_forward_backward

    SimpleTrainer.__init__ = __init__
