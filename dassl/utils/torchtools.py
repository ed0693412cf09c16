"""Checkpoint I/O and small nn.Module helpers."""
from __future__ import annotations

import os
import os.path as osp
import pickle
import random
import shutil
import warnings
from collections import OrderedDict
from functools import partial
from typing import Iterable, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from .errors import UserError
from .tools import atomic_write, mkdir_if_missing

# resume_from_checkpoint, open_specified_layers and count_num_param: neither this project nor
# CoOp's nor MaPLe's code calls them, but other CoOp-family code written for real Dassl imports
# them by name (e.g. ml-stat-Sustech/CLIP_Calibration's base_learner.py), so they stay.
__all__ = [
    "CheckpointWriteError",
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "open_specified_layers",
    "count_num_param",
    "load_pretrained_weights",
    "get_rng_state",
    "set_rng_state",
]


def get_rng_state() -> dict:
    """Snapshot of the python, numpy, torch (and CUDA) global RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore a :func:`get_rng_state` snapshot (CUDA only if the device count matches)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


class CheckpointWriteError(UserError, OSError):
    """A checkpoint could not be written, or did not read back as written (a full or failing
    disk). Nothing the run wrote before is lost: the ``checkpoint`` pointer still names the
    previous complete file."""


def _strip_module(state_dict: dict) -> "OrderedDict[str, torch.Tensor]":
    """Drop the 'module.' prefix that nn.DataParallel adds to parameter names."""
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def save_checkpoint(state: dict, save_dir: str, is_best: bool = False,
                    remove_module_from_keys: bool = True, model_name: str = "") -> str:
    """Save ``state`` to ``save_dir/model_name`` (default ``model.pth.tar-<epoch>``).

    Also records the file name in ``save_dir/checkpoint`` (read by
    :func:`resume_from_checkpoint`) and, if ``is_best``, copies it to
    ``model-best.pth.tar``. Every file is written to a temp file first and
    renamed, so an interrupted run never leaves a truncated checkpoint. The file is read back
    and checked before ``checkpoint`` names it: until then the pointer keeps naming the
    previous complete checkpoint (which callers delete only after this returns).
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _strip_module(state["state_dict"])

    fpath = osp.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    _write_checkpoint_file(fpath, lambda f: torch.save(state, f), "wb")
    _verify_checkpoint(fpath, state)
    print(f"Checkpoint saved to {fpath}")

    _write_checkpoint_file(osp.join(save_dir, "checkpoint"), lambda f: f.write(osp.basename(fpath) + "\n"), "w")

    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")

        def _copy(f):
            with open(fpath, "rb") as src:
                shutil.copyfileobj(src, f)

        _write_checkpoint_file(best_fpath, _copy, "wb")
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


def _write_checkpoint_file(path: str, write_fn, mode: str) -> None:
    """atomic_write, with a failure (a full or failing disk) as one CheckpointWriteError."""
    try:
        atomic_write(path, write_fn, mode=mode)
    except OSError as err:
        raise CheckpointWriteError(_write_failure(path, f"{type(err).__name__}: {err}")) from err


def _write_failure(path: str, why: str) -> str:
    """The one-line message of a checkpoint file that could not be written: what failed, which
    checkpoint the pointer still names, and what to do."""
    pointer = osp.join(osp.dirname(path), "checkpoint")
    previous = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            previous = f.readline().strip() or None
    kept = f"{pointer} names {previous}, which is kept" if previous else "no earlier checkpoint of this run exists"
    return (f"could not write {path} ({why}); {kept}. Is the disk full or failing? Free space (or choose "
            "another --output-dir), then run the same command again to resume")


def _verify_checkpoint(fpath: str, state: dict) -> None:
    """Read ``fpath`` back: it must load and hold the tensors and epoch of ``state``. If not,
    remove it and raise (``checkpoint`` still names the previous file)."""
    try:
        back = torch.load(fpath, map_location="cpu", weights_only=False)
        ok = (isinstance(back, dict) and back.get("epoch") == state.get("epoch")
              and list(back.get("state_dict", {})) == list(state["state_dict"]))
        why = "its content differs from what was written"
    except Exception as err:  # noqa: BLE001 - any failure to read it back
        ok, why = False, f"{type(err).__name__}: {err}"
    if not ok:
        if osp.exists(fpath):
            os.remove(fpath)
        raise CheckpointWriteError(_write_failure(fpath, f"it did not read back, {why}; the file was removed"))


def load_checkpoint(fpath: str) -> dict:
    """Load a checkpoint onto CPU (or GPU when available), handling py2 pickles.

    ``weights_only=False`` because our checkpoints hold optimizer/scheduler
    states and RNG states (numpy arrays), which torch>=2.6 refuses by default.
    """
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location, weights_only=False)
    except UnicodeDecodeError:
        pickle.load = partial(pickle.load, encoding="latin1")
        pickle.Unpickler = partial(pickle.Unpickler, encoding="latin1")
        return torch.load(fpath, pickle_module=pickle, map_location=map_location, weights_only=False)
    except Exception:
        print(f'Unable to load checkpoint from "{fpath}"')
        raise


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None,
                           restore_rng: bool = False) -> int:
    """Load the checkpoint named in ``fdir/checkpoint``; return its epoch.

    The model's weights are always restored; optimizer and scheduler states
    only when given and present in the file; the global RNG states only with
    ``restore_rng`` (an extension over Dassl, for exact resume).
    """
    with open(osp.join(fdir, "checkpoint"), "r") as f:
        fpath = osp.join(fdir, f.readline().strip())
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and "scheduler" in checkpoint:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    if restore_rng and checkpoint.get("rng_state") is not None:
        set_rng_state(checkpoint["rng_state"])
        print("Loaded RNG states")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def open_specified_layers(model: nn.Module, open_layers: Union[str, List[str]]) -> None:
    """Train only the named direct children of ``model``; freeze (and eval) the rest."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    for layer in open_layers:
        if not hasattr(model, layer):
            raise AttributeError(f'"{layer}" is not an attribute of {type(model).__name__}')
    for name, module in model.named_children():
        is_open = name in open_layers
        module.train(is_open)
        for p in module.parameters():
            p.requires_grad = is_open


def count_num_param(model: Optional[nn.Module] = None, params: Optional[Iterable] = None) -> int:
    """Number of parameters of ``model``, or of ``params`` (tensors or param-group dicts)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("model and params must provide at least one.")


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load weights whose names and shapes match; report (not fail on) the rest."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = _strip_module(checkpoint.get("state_dict", checkpoint))
    model_dict = model.state_dict()
    matched = {k: v for k, v in state_dict.items() if k in model_dict and model_dict[k].size() == v.size()}
    discarded = [k for k in state_dict if k not in matched]
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)")
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")
