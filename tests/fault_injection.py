"""Test-only fault injection for train.py runs (tests/test_reliability.py); not part of the engine.

``install("kill@N")`` makes every trainer built afterwards send SIGKILL to its own process, and
``install("nan@N")`` turn its learnable parameters into NaN, just before global training
iteration N: 0-based, ``epoch * batches_per_epoch + batch_idx``, counted before the iteration's
forward_backward runs (a run resumed within an epoch starts at the resumed batch, as the engine
numbers it). From iteration N on, ``diskfull@N`` makes every checkpoint write fail as on a full
disk (ENOSPC), and ``corrupt@N`` makes every checkpoint reach the disk damaged, as a failing disk
would (the write succeeds, the read-back does not). tests/train_with_faults.py installs it from DASSL_FAULT_INJECT and runs train.py.
"""
import errno
import functools
import os
import re
import signal
import sys

import torch

FAULT_ENV = "DASSL_FAULT_INJECT"


def parse(spec: str):
    """("kill" | "nan", N) from "kill@N" / "nan@N"; ValueError otherwise."""
    match = re.fullmatch(r"(kill|nan|diskfull|corrupt)@(\d+)", spec.strip())
    if match is None:
        raise ValueError(f"{FAULT_ENV} must be kill@N, nan@N, diskfull@N or corrupt@N, got {spec!r}")
    return match.group(1), int(match.group(2))


def _break_checkpoint_writes(kind: str) -> None:
    """Every later torch.save (the engine's checkpoints) fails (diskfull) or writes bytes that
    do not load (corrupt)."""
    def save(obj, f, *args, **kwargs):
        if kind == "diskfull":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        f.write(b"\x00" * 64)

    torch.save = save


def _inject(trainer, kind: str) -> None:
    if kind in ("diskfull", "corrupt"):
        _break_checkpoint_writes(kind)
    elif kind == "kill":
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
