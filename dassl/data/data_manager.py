"""DataManager, DatasetWrapper and build_data_loader (Dassl's ``dassl.data.data_manager``)."""
import os

import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from dassl.utils import (UnreadableImageError, UserValueError, get_rank, get_world_size, is_distributed, read_image,
                         training_seed)

from .datasets import build_dataset
from .samplers import DistributedSampler, ShardSampler, SkipSampler, build_sampler
from .transforms import INTERPOLATION_MODES, build_transform, random_choices


def build_data_loader(cfg, sampler_type="SequentialSampler", data_source=None, batch_size=64,
                      n_domain=0, n_ins=2, tfm=None, is_train=True, dataset_wrapper=None):
    """A DataLoader over ``data_source`` (a list of Datum) wrapped by ``dataset_wrapper``
    (default DatasetWrapper). Training loaders drop the last incomplete batch when the data
    holds at least one full batch."""
    if not data_source:
        raise UserValueError("build_data_loader: data_source is empty")
    if is_distributed():
        sampler, batch_size = _distributed_sampler(cfg, sampler_type, data_source, batch_size, is_train)
    else:
        sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size,
                                n_domain=n_domain, n_ins=n_ins)
    wrapper = dataset_wrapper or DatasetWrapper
    return torch.utils.data.DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        # Workers live across epochs: no re-forking (and re-reading the split) every epoch.
        persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0,
    )


def _distributed_sampler(cfg, sampler_type, data_source, batch_size, is_train):
    """(sampler, per-process batch size) under torchrun.

    Training: the configured batch size is the global batch; each of the W processes takes
    batch_size / W items of it. The order is DistributedSampler's: a permutation drawn from
    (training seed, epoch), the same whatever W, so runs with 1 and W processes see the same
    global batches. Evaluation: each process takes every W-th item (no padding).
    """
    world, rank = get_world_size(), get_rank()
    if not is_train:
        return ShardSampler(data_source, world, rank), batch_size
    if sampler_type not in ("RandomSampler", "SequentialSampler"):
        raise UserValueError(
            f"distributed training supports the RandomSampler and SequentialSampler training "
            f"samplers, not {sampler_type}: run it in one process"
        )
    if batch_size % world != 0:
        raise UserValueError(
            f"the training batch size {batch_size} is the global batch under torchrun and must be "
            f"divisible by the number of processes ({world}): change DATALOADER.TRAIN_X.BATCH_SIZE "
            "or --nproc_per_node"
        )
    sampler = DistributedSampler(data_source, num_replicas=world, rank=rank,
                                 shuffle=sampler_type == "RandomSampler", seed=max(training_seed(cfg), 0))
    return sampler, batch_size // world


def loader_like(loader, sampler=None, num_workers=None, generator=None):
    """A one-off DataLoader with ``loader``'s dataset, batch size, collate function, worker
    settings and drop_last; ``sampler`` (default: the same sampler object) and ``num_workers``
    may be replaced. It never keeps persistent workers, so iterating it leaves ``loader``'s own
    iterator (and the epoch it may be in the middle of) alone."""
    if not isinstance(loader, torch.utils.data.DataLoader) or loader.batch_size is None:
        raise ValueError(f"expected a DataLoader with a sampler and a batch size, got {type(loader).__name__}")
    workers = loader.num_workers if num_workers is None else num_workers
    extra = {"prefetch_factor": loader.prefetch_factor} if workers > 0 else {}
    return torch.utils.data.DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler if sampler is None else sampler,
        num_workers=workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        drop_last=loader.drop_last, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers > 0 else None,
        generator=generator, persistent_workers=False, **extra,
    )


def resume_epoch_loader(loader, batches_done, fresh_iterator=True, on_start=None):
    """The rest of an interrupted epoch of ``loader`` (TRAIN.CHECKPOINT_ITERS): a one-off
    DataLoader (loader_like) whose sampler draws the epoch's order as ``loader.sampler`` drew
    it and skips the first ``batches_done`` batches without loading them (SkipSampler);
    ``on_start()`` runs between the draw and the first remaining item's loading.

    Call it (and start iterating it) with the global RNG states of the epoch's start restored.
    ``fresh_iterator``: whether the interrupted epoch's ``iter(loader)`` created a new iterator.
    A new iterator draws its workers' base seed from the global torch RNG before the sampler
    draws, one that persistent workers reuse does not; the one-off loader draws the same way,
    so its sampler sees the RNG state the interrupted epoch's sampler saw."""
    sampler = SkipSampler(loader.sampler, batches_done * loader.batch_size, on_start=on_start)
    generator = None
    if loader.generator is not None or not fresh_iterator:
        generator = torch.Generator()  # the base seed then comes from it, not from the global RNG
    return loader_like(loader, sampler=sampler, generator=generator)


def drop_unreadable_images(data_source, what):
    """(readable items, unreadable paths): every image is opened and decoded once."""
    kept, bad = [], []
    for item in data_source:
        try:
            read_image(item.impath)
        except (OSError, ValueError):
            bad.append(item.impath)
        else:
            kept.append(item)
    return kept, bad


class DataManager:
    """Build the dataset named by ``cfg.DATASET.NAME``, its transforms and its loaders.

    Attributes: ``dataset``, ``train_loader_x``, ``train_loader_u`` (always None: no trainer
    here reads unlabelled data), ``val_loader`` (None without a val split), ``test_loader``, and the properties
    ``num_classes``, ``num_source_domains`` and ``lab2cname``.
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        if cfg.DATALOADER.get("SKIP_CORRUPT_IMAGES", False):
            self.skipped_images = self._skip_corrupt_images(dataset)
        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        dl = cfg.DATALOADER

        def loader(data, node, tfm, is_train):
            return build_data_loader(
                cfg, sampler_type=node.SAMPLER, data_source=data, batch_size=node.BATCH_SIZE,
                n_domain=node.get("N_DOMAIN", 0), n_ins=node.get("N_INS", 2), tfm=tfm,
                is_train=is_train, dataset_wrapper=dataset_wrapper,
            )

        self.dataset = dataset
        self.train_loader_x = loader(dataset.train_x, dl.TRAIN_X, tfm_train, True)
        # Dassl's attribute: no loader for unlabelled data (train_u), which only Dassl's semi-supervised
        # and domain-adaptation trainers (TrainerXU) read
        self.train_loader_u = None
        self.val_loader = loader(dataset.val, dl.TEST, tfm_test, False) if dataset.val else None
        self.test_loader = loader(dataset.test, dl.TEST, tfm_test, False)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @staticmethod
    def _skip_corrupt_images(dataset):
        """DATALOADER.SKIP_CORRUPT_IMAGES: drop unreadable images from every split and report
        how many were skipped. Returns the skipped paths."""
        skipped = []
        for attr in ("_train_x", "_train_u", "_val", "_test"):
            data = getattr(dataset, attr, None)
            if not data:
                continue
            kept, bad = drop_unreadable_images(data, attr.strip("_"))
            if bad:
                if not kept:
                    raise UserValueError(f"every image of the {attr.strip('_')} split is unreadable "
                                     f"(first: {bad[0]}): is DATASET.ROOT the right folder?")
                setattr(dataset, attr, kept)
                print(f"Skipped {len(bad)} unreadable image(s) in {attr.strip('_')} "
                      f"(DATALOADER.SKIP_CORRUPT_IMAGES): {', '.join(bad[:5])}"
                      f"{' ...' if len(bad) > 5 else ''}")
            skipped += bad
        print(f"DATALOADER.SKIP_CORRUPT_IMAGES: {len(skipped)} unreadable image(s) skipped in total")
        return skipped

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        """Print Dassl's dataset table (name, domains, number of classes and of items)."""
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(rows))


# DATALOADER.CACHE_IMAGES: (image file, its mtime and size, how it is transformed) -> the item's
# image entries. Shared by every loader of the process, so that the runs of an in-process sweep
# (python -m tools.run_protocol --in-process) decode each image once.
_IMAGE_MEMO = {}


def clear_image_memo() -> None:
    """Forget every image DATALOADER.CACHE_IMAGES kept (tests)."""
    _IMAGE_MEMO.clear()


class DatasetWrapper(TorchDataset):
    """Torch dataset over a list of Datum: reads each image and applies the transform(s).

    An item is a dict with ``img`` (``img2``, ``img3``, ... for a list of transforms; a list of
    ``DATALOADER.K_TRANSFORMS`` augmentations per transform when training), ``label``,
    ``domain``, ``impath``, ``index`` and, with ``DATALOADER.RETURN_IMG0``, ``img0`` (the
    image resized to INPUT.SIZE, to tensor, normalized if chosen, no augmentation).
    """

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform  # a transform or a list/tuple of them
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1  # K>1 only for training
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"Cannot augment the image {self.k_tfm} times because transform is None")
        to_tensor = [T.Resize(cfg.INPUT.SIZE, interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
                     T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)
        # DATALOADER.CACHE_IMAGES: the item's image entries are kept after their first read, in
        # the process-wide memo (_IMAGE_MEMO) under memo_keys[idx]
        self.memo = _IMAGE_MEMO if cfg.DATALOADER.get("CACHE_IMAGES", False) else None
        self.memo_keys = {}
        random_ones = random_choices(cfg)
        if self.memo is not None and random_ones:
            raise UserValueError(
                f"DATALOADER.CACHE_IMAGES True keeps the first read of each image, but INPUT.TRANSFORMS "
                f"{random_ones} are random: drop them or set DATALOADER.CACHE_IMAGES False"
            )

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        if self.memo is None:
            return {**output, **self._read_images(item.impath)}
        key = self.memo_keys.get(idx)
        if key is None:
            key = self.memo_keys[idx] = self._memo_key(item.impath)
        if key not in self.memo:
            self.memo[key] = self._read_images(item.impath)
        return {**output, **self.memo[key]}

    def _memo_key(self, impath):
        """What decides an image's entries: the file (its mtime and size catch a re-rendered
        dataset) and every setting of how it is read and transformed."""
        try:
            stat = os.stat(impath)
            version = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            version = None  # _read_images reports the missing file
        return (os.path.abspath(impath), version, repr(self.transform), self.k_tfm, self.return_img0,
                repr(self.to_tensor) if self.return_img0 else "")

    def _read_images(self, impath):
        """{'img': ..., ['img2', ...,] ['img0']} of one image file."""
        output = {}
        try:
            img0 = read_image(impath)
        except UnreadableImageError:
            raise
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for bad files
            raise UnreadableImageError(f"cannot read image {impath}: {err}") from err

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        images = [tfm(img0) for _ in range(self.k_tfm)]
        return images[0] if len(images) == 1 else images
