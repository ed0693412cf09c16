"""The checks a CoOp dataset runs before it writes or uses a file: settings, folders, split files
and few-shot caches. Each stops the run with one line naming the file or key and the fix.

Nothing invalid is written into a dataset folder: a split or few-shot cache is checked (every
split non-empty, every class in train and test, the right number of shots per class) before it
is written; one read back is checked the same way and against the folder.
"""
import os
import pickle
from collections import Counter

from dassl.data.datasets import Datum
from dassl.utils import UserValueError

DOCS = "docs/DATASETS.md"
# base_fit / base_heldout split the base classes again (first ceil(m/2) / the rest): tuning on a
# real dataset holds some base classes out as a stand-in for new classes (tools/tune_bundled.py).
SUBSAMPLE_CHOICES = ("all", "base", "new", "base_fit", "base_heldout")


def check_subsample(cfg):
    subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
    if subsample not in SUBSAMPLE_CHOICES:
        raise UserValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}, got {subsample!r}"
        )
    return subsample


def check_dataset_dir(path, cfg, name, dirname):
    if os.path.isdir(path):
        return
    hint = " (DATASET.ROOT is empty: pass --root DIR)" if not cfg.DATASET.ROOT else ""
    raise FileNotFoundError(
        f"{name}: dataset folder not found: {path}{hint}; expected DATASET.ROOT/{dirname}; "
        f"see {DOCS} for the layout"
    )


def images_per_class(counts):
    """One phrase on {class: images found}, e.g. "3 classes with 0 to 10 images each; none in 1
    (Forest)"."""
    if not counts:
        return "no class folders"
    lo, hi, n = min(counts.values()), max(counts.values()), len(counts)
    text = f"{n} class{'es' if n != 1 else ''} with " + (
        f"{lo} image{'s' if lo != 1 else ''} each" if lo == hi else f"{lo} to {hi} images each")
    empty = [str(c) for c, k in counts.items() if k == 0]
    if empty and len(empty) < n:
        text += f"; none in {len(empty)} ({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''})"
    return text


def check_split(splits, source, fix):
    """Stop unless (train, val, test) is usable: every split non-empty (val may be None), train
    labels 0..n-1, every train class in test, val and test only train's labels. ``source``
    names the split file or folder in the message, ``fix`` says what to do."""
    named = dict(zip(("train", "val", "test"), splits))
    for key, items in named.items():
        if items is not None and not items:
            raise UserValueError(f"{source}: the '{key}' split is empty. {fix}")
    names = {x.label: x.classname for x in named["train"]}
    gaps = sorted(set(range(max(names) + 1)) - set(names))
    if gaps:
        raise UserValueError(f"{source}: the 'train' split has no images of label(s) {gaps[:5]} "
                         f"(its labels run 0..{max(names)}). {fix}")
    for key in ("val", "test"):
        labels = {x.label for x in named[key]} if named[key] is not None else set(names)
        extra = sorted(labels - set(names))
        if extra:
            raise UserValueError(f"{source}: the '{key}' split has label(s) {extra[:5]} that 'train' lacks. {fix}")
        absent = sorted(set(names) - labels)
        if key == "test" and absent:
            listed = ", ".join(repr(names[y]) for y in absent[:5])
            raise UserValueError(f"{source}: {len(absent)} class(es) have no 'test' images ({listed}). {fix}")


def check_fewshot_cache(data, sources, path):
    """Stop unless the few-shot lists ``data[key]`` hold, for every class of the split's
    ``sources[key] = (items, shots)``, min(shots, images of that class) of its images."""
    fix = f"Delete {path} (or its folder {os.path.dirname(path)}) to draw the few-shot sets again"
    for key, (source, shots) in sources.items():
        labels = {x.impath: x.label for x in source}
        available = Counter(labels.values())
        foreign = [x.impath for x in data[key] if labels.get(x.impath, -1) != x.label]
        if foreign:
            raise UserValueError(f"{path} does not match the split: its '{key}' set has {len(foreign)} images the "
                             f"split's '{key}' set lacks, e.g. {foreign[0]} (another split, or the dataset moved). {fix}")
        counts = Counter(x.label for x in data[key])
        wrong = sorted(y for y in available if counts[y] != min(shots, available[y]))
        if wrong:
            y = wrong[0]
            raise UserValueError(f"{path} does not match the split: its '{key}' set has {counts[y]} images of label {y}, "
                             f"expected {min(shots, available[y])} ({len(wrong)} class(es) differ). {fix}")


def check_enough_shots(data_source, num_shots, source):
    """CoOp samples without repetition: every class needs at least num_shots items."""
    counts = Counter(item.label for item in data_source)
    names = {item.label: item.classname for item in data_source}
    short = sorted((n, label) for label, n in counts.items() if n < num_shots)
    if short:
        listed = ", ".join(f"'{names[label]}' (label {label}) has {n}" for n, label in short[:5])
        more = f" and {len(short) - 5} more classes" if len(short) > 5 else ""
        raise UserValueError(
            f"DATASET.NUM_SHOTS={num_shots} but some classes have fewer training images: {listed}"
            f"{more} in {source}. Lower DATASET.NUM_SHOTS to at most {short[0][0]}."
        )


def load_fewshot_cache(path, keys, what="few-shot cache"):
    """Read a pickled {key: [Datum]} cache, with an error naming the file when it is unreadable
    or holds something else."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except Exception as err:  # truncated, not a pickle, or from an incompatible codebase
        raise UserValueError(f"malformed {what} {path}: {err!r}. Delete it to regenerate it.") from err
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) and all(isinstance(x, Datum) for x in data[k]) for k in keys
    ):
        raise UserValueError(
            f"malformed {what} {path}: expected lists of Datum under {list(keys)}. Delete it to regenerate it."
        )
    # One image per class and list: cheap on ImageNet's 1.3M, and catches a moved dataset.
    firsts = {(k, x.label): x.impath for k in keys for x in reversed(data[k])}
    missing = next((p for p in firsts.values() if not os.path.isfile(p)), None)
    if missing:
        raise FileNotFoundError(
            f"{what} {path} refers to {missing}, which does not exist (was the dataset moved?). "
            "Delete it (and the split_fewshot folder) to regenerate the caches."
        )
    return data
