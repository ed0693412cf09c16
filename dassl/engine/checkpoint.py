"""The checkpoint files a trainer writes: their names, reading and checking them, and resuming.

A trainer writes ``<output dir>/<model name>/model.pth.tar-<epoch>`` after each epoch (and
``model.pth.tar-<epoch>-iter<batches>`` within one, TRAIN.CHECKPOINT_ITERS), and a
``checkpoint`` file naming the newest. ``TrainerBase`` (trainer.py) keeps the hooks a trainer
overrides (``check_checkpoint``, ``find_model_file``, ``read_checked_checkpoint``,
``model_dir_fix``); the work they do is here. Every check fails with one line that names the
file, says what is wrong with it and ends with what to do (``fix``).

The file I/O itself (atomic writes, the read-back check, ``load_checkpoint``) is Dassl's
``dassl.utils.torchtools``.
"""
from __future__ import annotations

import os
import os.path as osp
import re
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from dassl.utils import UserValueError, get_rank, get_rng_state, get_world_size, load_checkpoint, set_rng_state

_CKPT_RE = re.compile(r"^model\.pth\.tar-(\d+)$")
# A mid-epoch checkpoint (TRAIN.CHECKPOINT_ITERS): model.pth.tar-<epoch in progress, 1-based>-iter<batches done>
_MID_CKPT_RE = re.compile(r"^model\.pth\.tar-(\d+)-iter(\d+)$")


# ----------------------------------------------------------------------------- file names
def mid_epoch_checkpoint_name(epoch: int, batches_done: int) -> str:
    """File name of the checkpoint written after ``batches_done`` batches of ``epoch`` (1-based)."""
    return f"model.pth.tar-{epoch}-iter{batches_done}"


def checkpoint_position(fname: str) -> Optional[Tuple[int, int]]:
    """(completed epochs, batches done in the next one) of a resumable checkpoint's file name,
    or None for any other file (model-best.pth.tar, the pointer, ...)."""
    match = _CKPT_RE.match(fname)
    if match:
        return int(match.group(1)), 0
    match = _MID_CKPT_RE.match(fname)
    if match:
        return int(match.group(1)) - 1, int(match.group(2))
    return None


def saved_epochs(fdir: str) -> List[int]:
    """The epochs N with a model.pth.tar-N in ``fdir`` (mid-epoch files are not epochs)."""
    if not osp.isdir(fdir):
        return []
    return sorted(int(m.group(1)) for m in map(_CKPT_RE.match, os.listdir(fdir)) if m)


def pointed_checkpoint(fdir: str) -> str:
    """The file name ``fdir/checkpoint`` names (the newest checkpoint)."""
    with open(osp.join(fdir, "checkpoint")) as f:
        return f.readline().strip()


def superseded_checkpoints(fdir: str, is_kept) -> List[str]:
    """The resume-only files in ``fdir`` older than the one ``checkpoint`` points at: the
    epochs for which ``is_kept(epoch)`` is False, and every mid-epoch file."""
    if not osp.isfile(osp.join(fdir, "checkpoint")):
        return []
    current = checkpoint_position(pointed_checkpoint(fdir))
    if current is None:
        return []
    superseded = []
    for fname in os.listdir(fdir):
        position = checkpoint_position(fname)
        if position is None or position >= current:
            continue
        if position[1] > 0 or not is_kept(position[0]):
            superseded.append(fname)
    return superseded


# ----------------------------------------------------------------------------- reading and checking
def read_checkpoint(fpath: str, fix: str) -> dict:
    """load_checkpoint, with one-line errors that name the file, say what is wrong with it and
    end with ``fix``: missing, unreadable (truncated, corrupt) or not a Dassl checkpoint."""
    if not osp.isfile(fpath):
        raise FileNotFoundError(f"checkpoint {fpath} does not exist; {fix}")
    try:
        checkpoint = load_checkpoint(fpath)
    except Exception as err:  # torch.load raises many kinds on a damaged file
        detail = str(err).strip().splitlines()[0].split(". ")[0][:160] if str(err).strip() else ""
        why = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise UserValueError(f"checkpoint {fpath} is unreadable, truncated or corrupt ({why}); {fix}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserValueError(f"{fpath} is not a Dassl checkpoint (it holds no state_dict); {fix}")
    return checkpoint


def _few(keys: List[str], n: int = 3) -> str:
    """'a, b, c (+2 more)'"""
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_state_dict(fpath: str, state_dict: dict, model: nn.Module, what: str, num_classes: Optional[int],
                     fix: str, skip: Sequence[str] = (), partial: bool = False) -> None:
    """Raise one ValueError line, naming ``fpath`` and ending with ``fix``, when ``state_dict``
    (read from ``fpath``) cannot go into ``model`` (``what``: e.g. "CoOp's prompt_learner"):
    - tensor names differ: written by another trainer or model;
    - shapes differ: another number of classes (when the differing size is ``num_classes``) or
      other settings (N_CTX, CSC, backbone, another trainer);
    - a learnable tensor (a parameter of the model) holds NaN or inf.
    ``skip``: tensor names (last component) left out of the name and shape checks. ``partial``:
    missing buffers are fine, only a missing parameter is an error."""
    own = model.state_dict()
    params = dict(model.named_parameters())

    def skipped(key):
        return key.rsplit(".", 1)[-1] in skip

    unexpected = [k for k in state_dict if k not in own and not skipped(k)]
    missing = [k for k in own if k not in state_dict and not skipped(k) and (not partial or k in params)]
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"it holds {_few(unexpected)}, which {what} does not have")
        if missing:
            parts.append(f"it lacks {_few(missing)}, which {what} needs")
        raise UserValueError(f"checkpoint {fpath} was written by another trainer or model: "
                         f"{'; '.join(parts)}; {fix}")
    for key, value in state_dict.items():
        mine = own.get(key)
        if skipped(key) or not torch.is_tensor(value) or not torch.is_tensor(mine):
            continue
        if tuple(value.shape) == tuple(mine.shape):
            continue
        cause = "with other settings (N_CTX, CSC, batch size, backbone) or by another trainer"
        if value.dim() == mine.dim() and num_classes:
            sizes = [(a, b) for a, b in zip(value.shape, mine.shape) if a != b]
            if len(sizes) == 1 and sizes[0][1] == num_classes:
                cause = f"for {sizes[0][0]} classes, and this run has {num_classes}"
        raise UserValueError(f"checkpoint {fpath} does not fit {what}: {key} has shape {tuple(value.shape)} "
                         f"there and {tuple(mine.shape)} here, so it was written {cause}; {fix}")
    for key in params:
        value = state_dict.get(key)
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise UserValueError(f"checkpoint {fpath} holds NaN/inf in the learnable tensor {key} ({bad} of "
                             f"{value.numel()} values): the run that wrote it diverged; {fix}")


def find_model_file(directory: str, name: str, epoch: Optional[int], trainer_name: str) -> str:
    """``directory/<name>/model-best.pth.tar`` (epoch None) or ``model.pth.tar-<epoch>``, written
    by a ``trainer_name`` run; a one-line FileNotFoundError listing the saved epochs when it is
    not there."""
    model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
    fdir = osp.join(directory, name)
    fpath = osp.join(fdir, model_file)
    if osp.isfile(fpath):
        return fpath
    if not osp.isdir(directory):
        raise FileNotFoundError(f"model folder {directory} does not exist: --model-dir must be the "
                                "--output-dir of a training run")
    if not osp.isdir(fdir):
        raise FileNotFoundError(f"no model at {fpath}: {directory} has no {name}/ folder, so it is not the "
                                f"output folder of a {trainer_name} training run; pass one as --model-dir")
    why = " (written only with TEST.FINAL_MODEL best_val)" if epoch is None else ""
    epochs = saved_epochs(fdir)
    if epochs:
        saved = (f"the epochs saved there are {', '.join(map(str, epochs))}"
                 f"{' and model-best.pth.tar' if osp.isfile(osp.join(fdir, 'model-best.pth.tar')) else ''}: "
                 "pass one of them as --load-epoch")
    elif osp.isfile(osp.join(fdir, "model-best.pth.tar")):
        saved = "only model-best.pth.tar is saved there: leave out --load-epoch"
    else:
        saved = "no epoch is saved there (the run finished none): train it first"
    raise FileNotFoundError(f"no model at {fpath}{why}; {saved}")


# ----------------------------------------------------------------------------- resuming
def resume_path(fdir: str) -> Tuple[str, str]:
    """(path, fix) of the checkpoint ``fdir/checkpoint`` points at: a FileNotFoundError when it
    does not exist; ``fix`` is what to do about one that cannot be resumed from."""
    fname = pointed_checkpoint(fdir)
    fpath = osp.join(fdir, fname)
    print(f'Loading checkpoint from "{fpath}"')
    pointer = osp.join(fdir, "checkpoint")
    if not osp.isfile(fpath):
        raise FileNotFoundError(
            f"{pointer} names {fpath}, which does not exist: delete the "
            "'checkpoint' file to train from scratch, or point it at an existing model.pth.tar-N"
        )
    others = sorted((f for f in os.listdir(fdir) if f != fname and checkpoint_position(f) is not None),
                    key=checkpoint_position)
    earlier = f"point {pointer} at another checkpoint ({', '.join(others)}), " if others else ""
    fix = (f"{earlier}delete {pointer} to train from scratch, or pass another --output-dir "
           "(resuming needs the trainer and settings that wrote it)")
    return fpath, fix


def check_resumable(checkpoint: dict, fpath: str, fix: str) -> None:
    """A checkpoint to resume from must say which epoch it finished."""
    if not isinstance(checkpoint.get("epoch"), int):
        raise UserValueError(f"checkpoint {fpath} holds no epoch number, so it cannot be resumed from; {fix}")


def resumed_rng_state(checkpoint: dict) -> Optional[dict]:
    """The global RNG states this process resumes with: its own rank's when the world size is
    unchanged, else the writer's rank 0's (with a note), or None when the file holds none."""
    per_rank = checkpoint.get("rng_states_per_rank")
    if per_rank is not None and len(per_rank) == get_world_size():
        return per_rank[get_rank()]
    if checkpoint.get("rng_state") is not None:
        if per_rank is not None:
            print(f"Note: the checkpoint was written by {len(per_rank)} process(es), this run has "
                  f"{get_world_size()}: the resumed run will not repeat the original one exactly")
        return checkpoint["rng_state"]
    return None


# ----------------------------------------------------------------------------- mid-epoch resume
def check_mid_epoch_resume(mid_epoch: dict, fpath: str, loader, rng_state: Optional[dict]) -> None:
    """Raise one ValueError line unless this run can continue the epoch the mid-epoch
    checkpoint ``fpath`` stopped in: ``loader`` is a DataLoader with the same batches per epoch
    and global batch size, and the file holds the RNG states to resume from."""
    pointer = osp.join(osp.dirname(fpath), "checkpoint")
    fix = (f"resume with the settings that wrote it, or point {pointer} at a model.pth.tar-N "
           "(or delete it to train from scratch)")
    if not isinstance(loader, torch.utils.data.DataLoader) or loader.batch_size is None:
        raise UserValueError(f"cannot resume from the mid-epoch checkpoint {fpath}: the training loader is a "
                         f"{type(loader).__name__}, not a DataLoader with a sampler and a batch size; {fix}")
    if rng_state is None or not mid_epoch.get("epoch_rng_states_per_rank"):
        raise UserValueError(f"the mid-epoch checkpoint {fpath} lacks the RNG states to resume from; {fix}")
    size = (len(loader), global_batch_size(loader))
    written = (mid_epoch["num_batches"], mid_epoch["batch_size"])
    if size != written:
        raise UserValueError(f"cannot resume from the mid-epoch checkpoint {fpath}: it was written with "
                         f"{written[0]} batches of {written[1]} per epoch, and this run has {size[0]} "
                         f"of {size[1]}; {fix}")


def global_batch_size(loader) -> Optional[int]:
    """The training batch over all processes (each takes batch_size / world size under torchrun)."""
    size = getattr(loader, "batch_size", None)
    return None if size is None else size * get_world_size()


def creates_iterator(loader) -> bool:
    """Whether ``iter(loader)`` creates a new DataLoader iterator, which draws its workers' base
    seed from the global torch RNG, rather than resetting the one persistent workers keep."""
    return not (getattr(loader, "persistent_workers", False) and getattr(loader, "_iterator", None) is not None)


def reuse_persistent_workers(loader) -> None:
    """Epochs after the first iterate a persistent-workers DataLoader through the iterator the
    first epoch created, and draw no base seed from the global RNG. A resumed run has no such
    iterator yet: create it now, leaving the RNG states as they were, so that the epoch's order
    is drawn from the same RNG state as in an uninterrupted run."""
    if creates_iterator(loader) and getattr(loader, "persistent_workers", False):
        state = get_rng_state()
        iter(loader)
        set_rng_state(state)


def meter_states(meters) -> dict:
    """The running averages of an epoch (MetricMeter, batch time, data time), as plain data."""
    losses, batch_time, data_time = meters
    return {"losses": [(k, dict(vars(m))) for k, m in losses.meters.items()],
            "batch_time": dict(vars(batch_time)), "data_time": dict(vars(data_time))}


def load_meter_states(meters, states: dict) -> None:
    losses, batch_time, data_time = meters
    for key, state in states["losses"]:
        vars(losses.meters[key]).update(state)
    vars(batch_time).update(states["batch_time"])
    vars(data_time).update(states["data_time"])
