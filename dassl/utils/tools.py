"""File-system, JSON, seeding and string helpers."""
from __future__ import annotations

import functools
import json
import os
import os.path as osp
import random
import tempfile
import warnings
from difflib import SequenceMatcher
from typing import Any, Iterable, List

import numpy as np
import PIL
import torch
from PIL import Image
from .errors import UserError, UserValueError

__all__ = [
    "mkdir_if_missing",
    "check_isfile",
    "read_json",
    "write_json",
    "atomic_write",
    "set_random_seed",
    "training_seed",
    "read_image",
    "UnreadableImageError",
    "collect_env_info",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents) if it does not exist; '' is a no-op."""
    if dirname:
        os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath: str) -> bool:
    """Return whether ``fpath`` is a file, warning if it is not."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def read_json(fpath: str) -> Any:
    """Load a JSON file."""
    with open(fpath, "r") as f:
        return json.load(f)


def atomic_write(fpath: str, write_fn, mode: str = "w", overwrite: bool = True) -> bool:
    """Call ``write_fn(fileobj)`` on a temp file next to ``fpath``, then rename it.

    ``os.replace`` is atomic on POSIX within one file system, so a reader (or a
    crash mid-write) never sees a half-written ``fpath``. With ``overwrite=False`` an
    existing ``fpath`` (a user's file, or one another process wrote meanwhile) is never
    replaced: the temp file is hard-linked into place, which fails if ``fpath`` exists.
    Returns whether ``fpath`` now holds what ``write_fn`` wrote.
    """
    dirname = osp.dirname(osp.abspath(fpath))
    mkdir_if_missing(dirname)
    fd, tmp = tempfile.mkstemp(prefix=f".{osp.basename(fpath)}.", suffix=".tmp", dir=dirname)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; match a normally created file
        if overwrite:
            os.replace(tmp, fpath)
            return True
        return _link_unless_exists(tmp, fpath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _link_unless_exists(tmp: str, fpath: str) -> bool:
    """Move ``tmp`` to ``fpath`` unless ``fpath`` exists (then drop ``tmp``)."""
    try:
        os.link(tmp, fpath)  # atomic and exclusive
    except FileExistsError:
        os.remove(tmp)
        return False
    except OSError:  # a file system without hard links: check, then rename
        if osp.exists(fpath):
            os.remove(tmp)
            return False
        os.replace(tmp, fpath)
        return True
    os.remove(tmp)
    return True


def write_json(obj: Any, fpath: str, overwrite: bool = True) -> bool:
    """Write ``obj`` to ``fpath`` as indented JSON (atomically; see atomic_write)."""
    return atomic_write(fpath, lambda f: json.dump(obj, f, indent=4, separators=(",", ": ")), overwrite=overwrite)


def training_seed(cfg) -> int:
    """The seed of a run's training randomness: SEED + TRAIN.SEED_OFFSET (SEED where SEED < 0,
    unseeded, or where a config lacks the key)."""
    offset = int(cfg.TRAIN.get("SEED_OFFSET", 0))
    if offset < 0:
        raise UserValueError(f"TRAIN.SEED_OFFSET must be >= 0 (0 = off), got {offset}")
    if offset and cfg.SEED < 0:
        raise UserValueError(f"TRAIN.SEED_OFFSET {offset} re-runs a seeded run: set SEED (--seed) >= 0 too")
    return cfg.SEED + offset if cfg.SEED >= 0 else cfg.SEED


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


class UnreadableImageError(UserError, OSError):
    """An image file that is missing, truncated or not an image; the message names it."""

    def __str__(self) -> str:
        msg = super().__str__()
        hint = "set DATALOADER.SKIP_CORRUPT_IMAGES True to skip unreadable images"
        return msg if hint in msg else f"{msg} (replace or delete the file, or {hint})"


def read_image(path: str) -> Image.Image:
    """Read an image with PIL and convert it to RGB."""
    try:
        return Image.open(path).convert("RGB")
    except Exception as e:  # missing, truncated or non-image file
        raise UnreadableImageError(f'Cannot read image "{path}": {e}') from e


@functools.lru_cache(maxsize=1)
def collect_env_info() -> str:
    """Return a human-readable description of the software environment (computed once per
    process: it runs pip and other programs, and many runs in one process share it)."""
    from torch.utils.collect_env import get_pretty_env_info

    return get_pretty_env_info() + f"\n        Pillow ({PIL.__version__})"


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """List the entries of ``path`` that do not start with '.'."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: Iterable[str]) -> str | None:
    """Return the string in ``b`` most similar to ``a`` (last one wins ties, as Dassl)."""
    best, chosen = 0.0, None
    for cand in b:
        sim = SequenceMatcher(None, a, cand).ratio()
        if sim >= best:
            best, chosen = sim, cand
    return chosen


def check_availability(requested: str, available: List[str]) -> None:
    """Raise ``ValueError`` (with a suggestion) if ``requested`` is not in ``available``."""
    if requested not in available:
        guess = get_most_similar_str_to_a_from_b(requested, available)
        raise UserValueError(
            f"The requested one is expected to belong to {available}, "
            f"but got [{requested}] (do you mean [{guess}]?)"
        )


def tolist_if_not(x: Any) -> list:
    """Wrap ``x`` in a list unless it already is one."""
    return x if isinstance(x, list) else [x]
