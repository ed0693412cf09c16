"""The frozen image-feature cache (MODEL.BACKBONE.CACHE_IMAGE_FEATURES) and the in-process
runner: both must leave every number as it was."""
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, fixed_batch
from dassl.utils import read_image
from trainers import feature_cache
from trainers.clip_backbone import l2_normalize

COOP_TINY = "configs/trainers/CoOp/tiny.yaml"
CACHE_OPTS = ("INPUT.TRANSFORMS", "['normalize']", "MODEL.BACKBONE.CACHE_IMAGE_FEATURES", "True")


# Features from calls of different shapes are compared with this tolerance. CPU matrix kernels
# are chosen by shape, and some CPUs round batches of different sizes differently (AMD EPYC,
# measured: up to 5e-7 between a batch of 3 and one of 13 on the tiny CLIP). The features are
# unit vectors built from float32 sums of a few hundred products, whose reordering moves them by
# a few ulps (1e-7); 1e-5 leaves a 20x margin and is far below what flips a prediction.
FEATURE_ATOL = 1e-5


def test_encode_in_chunks_gives_each_image_the_same_bits_whatever_its_neighbours(tiny_clip):
    """The premise of the cache: every call has ENCODE_CHUNK rows, so an image's features do not
    depend on which images are encoded with it or where it sits among them. Bit equality holds
    on any CPU: both sides run the same kernels on the same shape, and a row's arithmetic does
    not depend on the other rows."""
    chunk = feature_cache.ENCODE_CHUNK
    images = torch.randn(chunk + 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    calls = []

    def encode(x):
        calls.append(len(x))
        return tiny_clip.encode_image(x)

    with torch.no_grad():
        whole = feature_cache.encode_in_chunks(encode, images)
        shuffled = feature_cache.encode_in_chunks(encode, images[order])
        alone = torch.cat([feature_cache.encode_in_chunks(encode, images[i:i + 1]) for i in (0, chunk + 4)])
        direct = tiny_clip.encode_image(images)
    assert set(calls) == {chunk} and len(calls) == 2 + 2 + 2
    assert whole.shape == direct.shape
    assert torch.equal(shuffled, whole[order])
    assert torch.equal(alone, whole[[0, chunk + 4]])
    # Against one call over all the images (another shape): equal up to float32 rounding.
    torch.testing.assert_close(whole, direct, atol=FEATURE_ATOL, rtol=0)


def test_cache_returns_what_the_encoder_computes_and_computes_each_image_once(tiny_clip):
    feature_cache.clear()
    calls = []

    def encode(x):
        calls.append(len(x))
        return l2_normalize(tiny_clip.encode_image(x))

    cache = feature_cache.ImageFeatureCache(("test", 1))
    images = torch.randn(6, 3, 32, 32)
    first = cache(images[:4], encode)
    again = cache(torch.cat([images[2:4], images[2:3], images[4:]]), encode)  # 2 hits, a repeat, 2 misses
    with torch.no_grad():
        chunked = feature_cache.encode_in_chunks(encode, images)  # the same shapes: the same bits
        direct = l2_normalize(tiny_clip.encode_image(images))  # another shape: FEATURE_ATOL
    chunk = feature_cache.ENCODE_CHUNK
    assert calls == [chunk, chunk, chunk] and len(cache) == 6
    assert torch.equal(first, chunked[:4]) and torch.equal(again[:2], chunked[2:4])
    assert torch.equal(again[2], chunked[2]) and torch.equal(again[3:], chunked[4:])
    torch.testing.assert_close(first, direct[:4], atol=FEATURE_ATOL, rtol=0)
    cache(images[5:], encode)
    assert calls == [chunk] * 3  # a hit computes nothing
    other = feature_cache.ImageFeatureCache(("test", 2))  # another backbone has its own store
    assert len(other) == 0


def test_trainers_use_the_cache_only_with_deterministic_transforms(build_tiny_trainer):
    feature_cache.clear()
    trainer = build_tiny_trainer("CoOp", COOP_TINY, *CACHE_OPTS)
    images, _ = fixed_batch(trainer, 4)
    with torch.no_grad():
        cached = trainer.model.encode_image(images)
        plain = trainer.model._encode_image(images)
    assert len(trainer.model.image_feature_cache) == 4
    torch.testing.assert_close(cached, plain, atol=FEATURE_ATOL, rtol=0)  # chunked vs a batch of 4
    with pytest.raises(ValueError, match="needs deterministic INPUT.TRANSFORMS"):
        build_tiny_trainer("CoOp", COOP_TINY, "MODEL.BACKBONE.CACHE_IMAGE_FEATURES", "True")


def test_dataset_wrapper_keeps_deterministic_reads_and_refuses_random_transforms(build_tiny_trainer, monkeypatch):
    """DATALOADER.CACHE_IMAGES: the second read of an image is the first one, from memory, in
    every loader of the process (the runs of an in-process sweep), until the file changes."""
    from dassl.data import data_manager
    from dassl.data.data_manager import DatasetWrapper
    from dassl.data.transforms import build_transform

    trainer = build_tiny_trainer("CoOp", COOP_TINY, "INPUT.TRANSFORMS", "['normalize']")
    cfg = trainer.cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.CACHE_IMAGES = True
    data = trainer.dm.dataset.train_x
    transform = build_transform(cfg, is_train=True)
    data_manager.clear_image_memo()
    reads = []
    monkeypatch.setattr(data_manager, "read_image", lambda path: reads.append(path) or read_image(path))
    cached = DatasetWrapper(cfg, data, transform, is_train=True)
    plain = DatasetWrapper(trainer.cfg, data, transform, is_train=True)
    first = cached[1]
    first_read = first["img"]
    first["img"] = None  # a caller changing its item must not change the memo
    assert torch.equal(cached[1]["img"], plain[1]["img"]) and cached[1]["label"] == plain[1]["label"]
    assert reads == [data[1].impath] * 3  # the cached wrapper's first read, and plain's two
    another_run = DatasetWrapper(cfg, data, transform, is_train=True)
    assert torch.equal(another_run[1]["img"], first_read) and len(reads) == 3
    resized = cfg.clone()
    resized.INPUT.SIZE = (16, 16)  # another transform is another entry
    assert DatasetWrapper(resized, data, build_transform(resized, is_train=True), is_train=True)[1]["img"].shape[-1] == 16
    assert len(reads) == 4
    stat = os.stat(data[1].impath)
    os.utime(data[1].impath, ns=(0, 0))  # the file changed (a re-rendered dataset): read again
    try:
        DatasetWrapper(cfg, data, transform, is_train=True)[1]
    finally:
        os.utime(data[1].impath, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert len(reads) == 5
    cfg.INPUT.TRANSFORMS = ["random_flip", "normalize"]
    with pytest.raises(ValueError, match="random_flip"):
        DatasetWrapper(cfg, data, build_transform(cfg, is_train=True), is_train=True)


def _loss_lines(log_text):
    """The training lines without their wall-clock fields."""
    return [re.sub(r" (time|data) \S+ \(\S+\)| eta \S+", "", line)
            for line in log_text.splitlines() if line.startswith("epoch [")]


def _accuracy(log_text):
    lines = [line for line in log_text.splitlines() if line.startswith("* accuracy")]
    assert lines, log_text[-2000:]
    return lines[-1]


def test_in_process_runs_equal_separate_processes(synthetic_root, tmp_path):
    """The main job's runner (tools/execution.run_in_process) gives the numbers of a separate
    train.py process with the same config, to the last printed digit, although in the process
    another run (seed 2) met the images first, in other batches. Exact on any CPU: the cache
    encodes every image in a call of ENCODE_CHUNK rows in both."""
    from tools import execution, protocols

    def command(seed, out):
        return ["train.py", "--root", str(synthetic_root), "--seed", str(seed), "--trainer", "CoOp",
                "--dataset-config-file", os.path.join(ROOT, "configs/datasets/synthetic_shapes.yaml"),
                "--config-file", os.path.join(ROOT, COOP_TINY), "--output-dir", str(out),
                "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "2", "TRAIN.PRINT_FREQ", "1", *CACHE_OPTS,
                "DATALOADER.CACHE_IMAGES", "True"]

    separate = subprocess.run([sys.executable, *command(1, tmp_path / "separate")], capture_output=True,
                              text=True, cwd=ROOT)
    assert separate.returncode == 0, separate.stderr[-2000:]
    feature_cache.clear()
    outputs = {}
    for seed in (2, 1):
        out = tmp_path / f"in_process_seed{seed}"
        run = protocols.Run("CoOp", "tiny", "synthetic_shapes", seed, str(out), ["python", *command(seed, out)], False)
        status, outputs[seed] = execution.run_in_process(run)
        assert status == 0, outputs[seed][-2000:]
    assert _accuracy(outputs[1]) == _accuracy(separate.stdout)
    assert _loss_lines(outputs[1]) == _loss_lines(separate.stdout) and len(_loss_lines(outputs[1])) > 2
    assert (tmp_path / "in_process_seed1" / "log.txt").read_text().count("* accuracy") >= 1
