"""Samplers (Dassl's ``dassl.data.samplers``): torch's Random/Sequential samplers plus
domain- and class-balanced samplers for lists of Datum."""
import random
from collections import defaultdict

import numpy as np
from torch.utils.data.distributed import DistributedSampler
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

from dassl.utils import UserValueError

__all__ = [
    "RandomSampler", "SequentialSampler", "RandomDomainSampler", "SeqDomainSampler",
    "RandomClassSampler", "ShardSampler", "SkipSampler", "DistributedSampler", "build_sampler",
]


def _indices_by(data_source, key):
    groups = defaultdict(list)
    for i, item in enumerate(data_source):
        groups[getattr(item, key)].append(i)
    return groups


class RandomDomainSampler(Sampler):
    """Minibatches of ``n_domain`` random domains with ``batch_size // n_domain`` images each.

    ``n_domain <= 0`` (or None) means all domains. An epoch ends as soon as a sampled domain
    has fewer images left than one share of a batch.
    """

    def __init__(self, data_source, batch_size, n_domain):
        self.data_source = data_source
        self.domain_dict = _indices_by(data_source, "domain")
        self.domains = list(self.domain_dict)
        if n_domain is None or n_domain <= 0:
            n_domain = len(self.domains)
        if batch_size % n_domain != 0:
            raise UserValueError(f"batch_size={batch_size} must be divisible by n_domain={n_domain}")
        self.n_img_per_domain = batch_size // n_domain
        self.batch_size = batch_size
        self.n_domain = n_domain
        self.length = len(list(iter(self)))

    def _domain_order(self):
        return random.sample(self.domains, self.n_domain)

    def __iter__(self):
        remaining = {d: list(idxs) for d, idxs in self.domain_dict.items()}
        final_idxs = []
        stop = False
        while not stop:
            for domain in self._domain_order():
                selected = random.sample(remaining[domain], self.n_img_per_domain)
                final_idxs.extend(selected)
                for idx in selected:
                    remaining[domain].remove(idx)
                if len(remaining[domain]) < self.n_img_per_domain:
                    stop = True
        return iter(final_idxs)

    def __len__(self):
        return self.length


class SeqDomainSampler(RandomDomainSampler):
    """Minibatches with ``batch_size // n_domains`` random images from every domain, domains
    in sorted order."""

    def __init__(self, data_source, batch_size):
        super().__init__(data_source, batch_size, n_domain=0)

    def _domain_order(self):
        return sorted(self.domains)


class RandomClassSampler(Sampler):
    """Minibatches of ``batch_size // n_ins`` random classes with ``n_ins`` images each.

    A class with fewer than ``n_ins`` images is oversampled with replacement.
    """

    def __init__(self, data_source, batch_size, n_ins):
        if batch_size < n_ins:
            raise UserValueError(f"batch_size={batch_size} must be no less than n_ins={n_ins}")
        self.data_source = data_source
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.index_dic = _indices_by(data_source, "label")
        self.labels = list(self.index_dic)
        if len(self.labels) < self.ncls_per_batch:
            raise UserValueError(
                f"RandomClassSampler needs at least batch_size // n_ins = {self.ncls_per_batch} "
                f"classes, the data has {len(self.labels)}"
            )
        self.length = len(list(iter(self)))

    def __iter__(self):
        chunks = defaultdict(list)  # label -> list of n_ins-sized index lists
        for label in self.labels:
            idxs = list(self.index_dic[label])
            if len(idxs) < self.n_ins:
                idxs = [int(i) for i in np.random.choice(idxs, size=self.n_ins, replace=True)]
            random.shuffle(idxs)
            chunks[label] = [idxs[i:i + self.n_ins] for i in range(0, len(idxs) - self.n_ins + 1, self.n_ins)]

        avai_labels = list(self.labels)
        final_idxs = []
        while len(avai_labels) >= self.ncls_per_batch:
            for label in random.sample(avai_labels, self.ncls_per_batch):
                final_idxs.extend(chunks[label].pop(0))
                if not chunks[label]:
                    avai_labels.remove(label)
        return iter(final_idxs)

    def __len__(self):
        return self.length


class ShardSampler(Sampler):
    """Rank ``rank``'s share of the data for distributed evaluation: indices rank, rank + W,
    ... in order, with no padding (DistributedSampler repeats items to even the shards out,
    which would count them twice in the metrics)."""

    def __init__(self, data_source, num_replicas, rank):
        self.indices = list(range(rank, len(data_source), num_replicas))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


class SkipSampler(Sampler):
    """The rest of an epoch of ``sampler``: its order without the first ``skip`` indices.

    Resumes an epoch in the middle (TRAIN.CHECKPOINT_ITERS) without loading the skipped items.
    The whole order is drawn when iteration starts, exactly as ``sampler`` draws it (torch's
    RandomSampler takes its seed from the global torch RNG then, and its permutation is drawn
    in full anyway). ``on_start()`` is called after the draw and before the first index is
    handed out, i.e. before any remaining item is loaded: the engine restores the interrupted
    run's RNG states there. A DistributedSampler is skipped per rank (its epoch set as usual).
    """

    def __init__(self, sampler, skip, on_start=None):
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.sampler = sampler
        self.skip = skip
        self.on_start = on_start

    def __iter__(self):
        indices = list(self.sampler)[self.skip:]
        if self.on_start is not None:
            self.on_start()
        return iter(indices)

    def __len__(self):
        return max(len(self.sampler) - self.skip, 0)


SAMPLERS = ("RandomSampler", "SequentialSampler", "RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler")


def build_sampler(sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=16):
    """Build the sampler named ``sampler_type`` (one of SAMPLERS) over ``data_source``."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise UserValueError(f"Unknown sampler type: {sampler_type!r}; valid: {', '.join(SAMPLERS)}")
