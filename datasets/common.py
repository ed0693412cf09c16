"""Machinery shared by the CoOp-family datasets, written once.

``CoOpDataset`` is the pipeline every split dataset of CoOp runs, with hooks for what differs:

    1. check that ``DATASET.ROOT/<dataset_dir>`` exists;
    2. ``load_splits()``: read ``split_zhou_<Name>.json`` (paths relative to ``image_dir``), or,
       when it is missing, ``build_split()`` from the raw files and save it (as CoOp does);
    3. ``DATASET.NUM_SHOTS >= 1``: a few-shot train set (and val with min(NUM_SHOTS, 4) shots),
       cached in ``split_fewshot/shot_{N}-seed_{SEED}.pkl``;
    4. ``DATASET.SUBSAMPLE_CLASSES``: all, base (first ceil(n/2) labels) or new (the rest,
       relabelled from 0).

A dataset file sets ``dataset_dir``, ``image_subdir`` and ``new_cnames`` and implements
``build_split()`` (or overrides ``load_splits()``). CoOp's static helpers (``read_split``,
``save_split``, ``split_trainval``, ``subsample_classes``, ``read_and_split_data``) live on the
base class, so ``OxfordPets.read_split(...)``, ``DescribableTextures.read_and_split_data(...)``
etc. keep working.

Nothing invalid is written into a dataset folder, and nothing there is overwritten: a split
or few-shot cache is checked (every split non-empty, every class in train and test, the right
number of shots per class) before it is written, atomically and only where no file exists
(``atomic_write(..., overwrite=False)``); one read back is checked the same way and against
the folder, and a mismatch stops the run with one line naming the file and the fix
(checks.py). ``ImageNetVariant`` is the test-only pipeline of the ImageNet variants; datasets
rendered on first use subclass generated.py's ``GeneratedDataset``.
"""
import json
import math
import os
import pickle
import random
from collections import Counter, OrderedDict, defaultdict

from dassl.data.datasets import Datum, DatasetBase
from dassl.utils import UserKeyError, UserValueError, atomic_write, listdir_nohidden, write_json  # write_json is atomic

from .checks import (
    DOCS,
    SUBSAMPLE_CHOICES,
    check_dataset_dir,
    check_enough_shots,
    check_fewshot_cache,
    check_split,
    check_subsample,
    images_per_class,
    load_fewshot_cache,
)


# ----------------------------------------------------------------------------- file helpers
def write_pickle_atomic(obj, path, overwrite=True):
    return atomic_write(path, lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL),
                        mode="wb", overwrite=overwrite)


def read_json_file(path, what="file"):
    """json.load with an error naming the file when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserValueError(
            f"malformed {what} {path}: {err}. Delete it and fetch it again "
            "(python -m datasets.fetch_splits) or let it be rebuilt."
        ) from err


def read_lines(path):
    """Non-empty stripped lines of a text file."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_classnames(text_file):
    """CoOp's ``classnames.txt`` ("<folder> <class name>" per line) as an OrderedDict
    {folder: class name}, in file order."""
    if not os.path.isfile(text_file):
        raise FileNotFoundError(
            f"class-name file not found: {text_file} (download ImageNet's classnames.txt as "
            f"described in {DOCS}, or run python -m datasets.fetch_splits)"
        )
    classnames = OrderedDict()
    for line in read_lines(text_file):
        folder, _, name = line.partition(" ")
        classnames[folder] = name
    return classnames


def try_cache_write(write, path, what):
    """``write(path)`` (returning whether it wrote); on a read-only dataset folder warn and go
    on without the file. A file another process wrote meanwhile is kept."""
    try:
        if write(path) is False:
            print(f"Note: {path} appeared meanwhile (another run?); kept it, not overwritten")
    except OSError as err:
        print(f"Warning: could not save {what} to {path} ({err}); continuing without the cache")


def _subdirs(path):
    return sorted(d for d in listdir_nohidden(path) if os.path.isdir(os.path.join(path, d)))


# ----------------------------------------------------------------------------- base class
class CoOpDataset(DatasetBase):
    """A CoOp dataset: train/val/test from a split file, few-shot sampling, base/new classes.

    Class attributes for subclasses:
        dataset_dir: folder under DATASET.ROOT.
        image_subdir: folder under dataset_dir that split paths are relative to ("" = dataset_dir).
        split_name: split file name; default ``split_zhou_<ClassName>.json``.
        new_cnames: {raw class name: class name} fixes, applied when building a split and
            (idempotently) when reading one.
        generated: True when the dataset creates its own folder (no "missing folder" error).
        val_is_test: no val split; few-shot samples train only and val is the test set.
        folder_per_class: the raw layout is image_subdir/<class folder>/*: build_split splits
            it (read_and_split_data), leaving out the folders in ignored_folders.
    """

    dataset_dir = ""
    image_subdir = "images"
    split_name = None
    new_cnames = None
    generated = False
    val_is_test = False
    folder_per_class = False
    ignored_folders = ()

    def __init__(self, cfg):
        self.cfg = cfg
        self.subsample = check_subsample(cfg)
        self.root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        if not self.generated:
            check_dataset_dir(self.dataset_dir, cfg, type(self).__name__, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, self.split_name or f"split_zhou_{type(self).__name__}.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = self.load_splits()
        # Every class of the dataset in label order, before SUBSAMPLE_CLASSES keeps base or new
        # (EMPL's strict open vocabulary removes them all).
        self.all_classnames = [name for _, name in sorted({(x.label, x.classname) for x in train + test})]
        if self.val_is_test:  # ImageNet: no val split; the test set doubles as val
            train, _ = self.fewshot(train)
            train, test = self.subsample_classes(train, test, subsample=self.subsample)
            val = test
        else:
            train, val = self.fewshot(train, val)
            train, val, test = self.subsample_classes(train, val, test, subsample=self.subsample)
        super().__init__(train_x=train, val=val, test=test)

    # -- hooks ---------------------------------------------------------------------------
    def load_splits(self):
        """(train, val, test) from the split file, building and saving it when missing."""
        if os.path.exists(self.split_path):
            splits = self.rename_classes(*self.read_split(self.split_path, self.image_dir))
            check_split(splits, self.split_path, self.refetch_hint())
            return splits
        print(
            f"Note: {self.split_path} not found; building a new random split from the raw files. "
            "Results will not match CoOp's published splits; fetch those with "
            f"`python -m datasets.fetch_splits --root {self.root} --datasets {type(self).__name__}`."
        )
        try:
            train, val, test = self.build_split()
        except FileNotFoundError as err:  # an annotation names an image that is not there
            if not str(err).startswith("image not found"):
                raise
            found = sum(len(files) for _, _, files in os.walk(self.image_dir)) if os.path.isdir(self.image_dir) else 0
            raise FileNotFoundError(
                f"{type(self).__name__}: the annotations name images that are not in {self.image_dir} "
                f"({found} images found there), e.g. {str(err).split(': ', 1)[-1]}. Complete the images "
                f"(layout: {DOCS}); no split file was written"
            ) from None
        check_split((train, val, test), self.image_dir,
                    f"Complete the images (layout: {DOCS}); no split file was written")
        try_cache_write(lambda p: self.save_split(train, val, test, p, self.image_dir, overwrite=False),
                        self.split_path, "split")
        return train, val, test

    def refetch_hint(self):
        """The fix for a split file that does not match the dataset folder."""
        return (f"Fetch CoOp's split again (`python -m datasets.fetch_splits --root {self.root} --datasets "
                f"{type(self).__name__}`), or delete the file to rebuild it from the images")

    def build_split(self):
        """(train, val, test) from the raw files: the class folders' split for folder_per_class
        datasets; datasets with annotation files override it."""
        if self.folder_per_class:
            return self.read_and_split_data(self.image_dir, ignored=self.ignored_folders, new_cnames=self.new_cnames)
        raise FileNotFoundError(
            f"split file not found: {self.split_path}. Run `python -m datasets.fetch_splits "
            f"--root {self.root} --datasets {type(self).__name__}` (see {DOCS})."
        )

    def require(self, *paths):
        """Raise a clear error when a raw file needed to build the split is missing."""
        for path in paths:
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"{self.split_path} is missing and building it needs {path}, which is missing "
                    f"too. Fetch CoOp's split with `python -m datasets.fetch_splits --root {self.root} "
                    f"--datasets {type(self).__name__}`, or complete the layout in {DOCS}."
                )

    def read_list(self, relative_path, datum_of_line):
        """One Datum per non-empty line of a raw list file under dataset_dir:
        [datum_of_line(line), ...]; a missing file is require()'s error."""
        path = os.path.join(self.dataset_dir, relative_path)
        self.require(path)
        return [datum_of_line(line) for line in read_lines(path)]

    def rename_classes(self, *data_sources):
        """Apply ``new_cnames`` to the class names of each data source (no-op without it)."""
        if not self.new_cnames:
            return data_sources
        return tuple(
            [Datum(x.impath, x.label, x.domain, self.new_cnames.get(x.classname, x.classname)) for x in data]
            if any(x.classname in self.new_cnames for x in data) else data
            for data in data_sources
        )

    # -- few-shot --------------------------------------------------------------------------
    def fewshot(self, train, val=None):
        """Few-shot train (NUM_SHOTS per class) and val (min(NUM_SHOTS, 4) per class; None
        stays None), cached per (NUM_SHOTS, SEED). Sampling uses the global ``random`` state
        (seeded by train.py with SEED), exactly as CoOp."""
        num_shots = self.cfg.DATASET.NUM_SHOTS
        if num_shots < 1:
            return train, val
        path = os.path.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{self.cfg.SEED}.pkl")
        sources = {"train": (train, num_shots)}
        if val is not None:
            sources["val"] = (val, min(num_shots, 4))
        if os.path.exists(path):
            print(f"Loading preprocessed few-shot data from {path}")
            data = load_fewshot_cache(path, tuple(sources))
            check_fewshot_cache(data, sources, path)
            return data["train"], data.get("val")
        check_enough_shots(train, num_shots, f"the {type(self).__name__} train split")
        data = {key: self.generate_fewshot_dataset(source, num_shots=shots) for key, (source, shots) in sources.items()}
        check_fewshot_cache(data, sources, path)  # never write a cache that would not load back
        print(f"Saving preprocessed few-shot data to {path}")
        try_cache_write(lambda p: write_pickle_atomic(data, p, overwrite=False), path, "preprocessed few-shot data")
        return data["train"], data.get("val")

    # -- CoOp's static helpers (OxfordPets.* / DescribableTextures.* in CoOp) --------------
    @staticmethod
    def read_split(filepath, path_prefix):
        """(train, val, test) lists of Datum from a CoOp split json whose entries are
        [path relative to path_prefix, label, classname]."""
        print(f"Reading split from {filepath}")
        split = read_json_file(filepath, "split file")
        if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "val", "test")):
            raise UserValueError(
                f"malformed split file {filepath}: expected a JSON object with lists 'train', 'val' and 'test'"
            )
        if not os.path.isdir(path_prefix):
            raise FileNotFoundError(
                f"image folder not found: {path_prefix} (needed by {filepath}); extract the images "
                f"as described in {DOCS}"
            )

        def parse(items, key):
            out = []
            for entry in items:
                try:
                    impath, label, classname = entry
                    out.append((os.path.join(path_prefix, impath), int(label), str(classname)))
                except (TypeError, ValueError) as err:
                    raise UserValueError(
                        f"malformed split file {filepath}: bad '{key}' entry {entry!r} (expected "
                        f"[relative path, label, classname]): {err}"
                    ) from None
            return out

        entries = {k: parse(split[k], k) for k in ("train", "val", "test")}
        try:  # Datum checks that each image exists
            return tuple([Datum(impath=p, label=y, classname=c) for p, y, c in entries[k]] for k in entries)
        except FileNotFoundError:  # count what is missing only when something is
            listed = [e for k in entries for e in entries[k]]
            exists = {path: os.path.isfile(path) for path, _, _ in listed}
            missing = [path for path, ok in exists.items() if not ok]
            found = Counter(name for path, _, name in listed if exists[path])
            per_class = images_per_class({name: found[name] for _, _, name in listed})
            raise FileNotFoundError(
                f"{filepath} lists {len(missing)} of {len(listed)} images that do not exist, e.g. "
                f"{missing[0]}; found {per_class}. Is DATASET.ROOT right and the dataset complete? (layout: {DOCS})"
            ) from None

    @staticmethod
    def save_split(train, val, test, filepath, path_prefix, overwrite=True):
        """Write a CoOp split json (paths relative to path_prefix), atomically; with
        overwrite=False an existing file is kept (returns False)."""

        def extract(items):
            return [(os.path.relpath(x.impath, path_prefix), x.label, x.classname) for x in items]

        written = write_json({"train": extract(train), "val": extract(val), "test": extract(test)}, filepath,
                             overwrite=overwrite)
        if written:
            print(f"Saved split to {filepath}")
        return written

    @staticmethod
    def split_trainval(trainval, p_val=0.2):
        """Split per class: round(n * p_val) random items (at least 1) to val, the rest to train."""
        print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
        tracker = defaultdict(list)
        for idx, item in enumerate(trainval):
            tracker[item.label].append(idx)
        train, val = [], []
        for label, idxs in tracker.items():
            n_val = round(len(idxs) * p_val)
            if n_val < 1:
                raise UserValueError(f"class {label} has {len(idxs)} trainval images: too few to split off a val set")
            random.shuffle(idxs)
            for n, idx in enumerate(idxs):
                (val if n < n_val else train).append(trainval[idx])
        return train, val

    @staticmethod
    def subsample_classes(*args, subsample="all"):
        """Keep the base (first ceil(n/2) labels of args[0]) or new (the rest, relabelled from
        0) classes of each data source; "all" returns them unchanged. base_fit / base_heldout:
        the first ceil(m/2) of the m base classes / the other base classes (tuning only)."""
        if subsample not in SUBSAMPLE_CHOICES:
            raise UserValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
        if subsample == "all":
            return args
        labels = sorted({item.label for item in args[0]})
        m = math.ceil(len(labels) / 2)
        print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
        selected = labels[:m] if subsample.startswith("base") else labels[m:]
        if subsample in ("base_fit", "base_heldout"):
            k = math.ceil(len(selected) / 2)
            selected = selected[:k] if subsample == "base_fit" else selected[k:]
        relabeler = {y: y_new for y_new, y in enumerate(selected)}
        return [
            [Datum(impath=x.impath, label=relabeler[x.label], classname=x.classname)
             for x in data if x.label in relabeler]
            for data in args
        ]

    @staticmethod
    def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
        """Split a folder-per-class image tree (sorted class folders = labels) into p_trn train,
        p_val val and the rest test per class, after a random shuffle (CoOp's DTD helper)."""
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"image folder not found: {image_dir} (layout: {DOCS})")
        categories = [c for c in _subdirs(image_dir) if c not in ignored]
        files = {c: listdir_nohidden(os.path.join(image_dir, c)) for c in categories}

        def sizes(n):
            n_train, n_val = round(n * p_trn), round(n * p_val)
            return n_train, n_val, n - n_train - n_val

        short = [c for c in categories if min(sizes(len(files[c]))) < 1]
        if not categories or short:
            need = next(n for n in range(1, 100) if min(sizes(n)) >= 1)
            found = images_per_class({c: len(files[c]) for c in categories})
            raise FileNotFoundError(
                f"{image_dir} is empty or incomplete: {found}, and each class needs at least {need} images "
                f"(train/val/test). Expected {image_dir}/<class folder>/<images> (layout: {DOCS})"
            )
        print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
        train, val, test = [], [], []
        for label, category in enumerate(categories):
            category_dir = os.path.join(image_dir, category)
            images = [os.path.join(category_dir, im) for im in files[category]]
            random.shuffle(images)
            n_train, n_val, _ = sizes(len(images))
            name = (new_cnames or {}).get(category, category)
            for part, ims in ((train, images[:n_train]), (val, images[n_train:n_train + n_val]),
                              (test, images[n_train + n_val:])):
                part.extend(Datum(impath=im, label=label, classname=name) for im in ims)
        return train, val, test


# ----------------------------------------------------------------------------- ImageNet variants
class ImageNetVariant(DatasetBase):
    """A test-only ImageNet variant: class folders named by WordNet id, class names from
    ``classnames.txt`` in its own folder (as CoOp) or, failing that, ImageNet's. The data
    serve as both train_x (for the class list) and test."""

    dataset_dir = ""
    image_subdir = ""

    def __init__(self, cfg):
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(root, type(self).dataset_dir)
        check_dataset_dir(self.dataset_dir, cfg, type(self).__name__, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        if not os.path.isdir(self.image_dir):
            raise FileNotFoundError(f"image folder not found: {self.image_dir} (layout: {DOCS})")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        fallback = os.path.join(root, "imagenet", "classnames.txt")
        if not os.path.isfile(text_file) and os.path.isfile(fallback):
            text_file = fallback
        data = self.read_data(read_classnames(text_file))
        super().__init__(train_x=data, test=data)

    def class_folders(self, classnames):
        """[(folder, class name)] in label order."""
        folders = _subdirs(self.image_dir)  # skips README.txt and other files
        missing = [f for f in folders if f not in classnames]
        if missing:
            raise UserKeyError(f"{self.image_dir}: folders {missing[:5]} are not in classnames.txt (ImageNet's is needed)")
        return [(f, classnames[f]) for f in folders]

    def read_data(self, classnames):
        items = []
        for label, (folder, classname) in enumerate(self.class_folders(classnames)):
            folder_dir = os.path.join(self.image_dir, folder)
            for imname in listdir_nohidden(folder_dir):
                items.append(Datum(impath=os.path.join(folder_dir, imname), label=label, classname=classname))
        return items


