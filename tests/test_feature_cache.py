"""The frozen image-feature cache (MODEL.BACKBONE.CACHE_IMAGE_FEATURES) and the in-process
runner: both must leave every number as it was."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, fixed_batch
from trainers import feature_cache
from trainers.clip_backbone import l2_normalize

COOP_TINY = "configs/trainers/CoOp/tiny.yaml"
CACHE_OPTS = ("INPUT.TRANSFORMS", "['normalize']", "MODEL.BACKBONE.CACHE_IMAGE_FEATURES", "True")


def test_features_do_not_depend_on_the_batching(tiny_clip):
    """The premise of the cache: an image's features are the same whichever images share its
    batch (a lone image is padded to a batch of two by the cache)."""
    images = torch.randn(13, 3, 32, 32)
    with torch.no_grad():
        whole = tiny_clip.encode_image(images)
        pieces = torch.cat([tiny_clip.encode_image(images[i:i + 3]) for i in range(0, 12, 3)]
                           + [tiny_clip.encode_image(images[12:].repeat(2, 1, 1, 1))[:1]])
    assert torch.equal(whole, pieces)


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
        direct = l2_normalize(tiny_clip.encode_image(images))
    assert torch.equal(first, direct[:4]) and torch.equal(again[:2], direct[2:4])
    assert torch.equal(again[2], direct[2]) and torch.equal(again[3:], direct[4:])
    assert calls == [4, 2] and len(cache) == 6
    cache(images[5:], encode)
    assert calls == [4, 2]  # a hit computes nothing
    other = feature_cache.ImageFeatureCache(("test", 2))  # another backbone has its own store
    assert len(other) == 0


def test_trainers_use_the_cache_only_with_deterministic_transforms(build_tiny_trainer):
    feature_cache.clear()
    trainer = build_tiny_trainer("CoOp", COOP_TINY, *CACHE_OPTS)
    images, _ = fixed_batch(trainer, 4)
    with torch.no_grad():
        cached = trainer.model.encode_image(images)
        plain = trainer.model._encode_image(images)
    assert torch.equal(cached, plain) and len(trainer.model.image_feature_cache) == 4
    with pytest.raises(ValueError, match="needs deterministic INPUT.TRANSFORMS"):
        build_tiny_trainer("CoOp", COOP_TINY, "MODEL.BACKBONE.CACHE_IMAGE_FEATURES", "True")


def test_dataset_wrapper_keeps_deterministic_reads_and_refuses_random_transforms(build_tiny_trainer):
    """DATALOADER.CACHE_IMAGES: the second read of an item is the first one, from memory."""
    from dassl.data.data_manager import DatasetWrapper
    from dassl.data.transforms import build_transform

    trainer = build_tiny_trainer("CoOp", COOP_TINY, "INPUT.TRANSFORMS", "['normalize']")
    cfg = trainer.cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.CACHE_IMAGES = True
    data = trainer.dm.dataset.train_x
    transform = build_transform(cfg, is_train=True)
    cached = DatasetWrapper(cfg, data, transform, is_train=True)
    plain = DatasetWrapper(trainer.cfg, data, transform, is_train=True)
    first = cached[1]
    first["img"] = None  # a caller changing its item must not change the cache
    assert torch.equal(cached[1]["img"], plain[1]["img"]) and cached[1]["label"] == plain[1]["label"]
    assert list(cached.memo) == [1]
    cfg.INPUT.TRANSFORMS = ["random_flip", "normalize"]
    with pytest.raises(ValueError, match="random_flip"):
        DatasetWrapper(cfg, data, build_transform(cfg, is_train=True), is_train=True)


def _accuracy(log_text):
    lines = [line for line in log_text.splitlines() if line.startswith("* accuracy")]
    assert lines, log_text[-2000:]
    return lines[-1]


def test_in_process_runs_equal_separate_processes(synthetic_root, tmp_path):
    """The main job's runner (tools/run_protocol.run_in_process, with the cache) gives the
    numbers of separate train.py processes without it, to the last printed digit."""
    from tools import run_protocol

    common = ["--root", str(synthetic_root), "--seed", "1", "--trainer", "CoOp",
              "--dataset-config-file", os.path.join(ROOT, "configs/datasets/synthetic_shapes.yaml"),
              "--config-file", os.path.join(ROOT, COOP_TINY)]
    opts = ["DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "2", "INPUT.TRANSFORMS", "['normalize']"]
    separate = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *common, "--output-dir",
                               str(tmp_path / "separate"), *opts], capture_output=True, text=True, cwd=ROOT)
    assert separate.returncode == 0, separate.stderr[-2000:]
    feature_cache.clear()
    outputs = []
    for i in range(2):  # the second run finds every image feature in the cache
        run = run_protocol.Run("CoOp", "tiny", "synthetic_shapes", 1, str(tmp_path / f"in{i}"),
                               ["python", "train.py", *common, "--output-dir", str(tmp_path / f"in{i}"), *opts,
                                "MODEL.BACKBONE.CACHE_IMAGE_FEATURES", "True", "DATALOADER.CACHE_IMAGES", "True"], False)
        status, output = run_protocol.run_in_process(run)
        assert status == 0, output[-2000:]
        outputs.append(output)
    expected = _accuracy(separate.stdout)
    assert _accuracy(outputs[0]) == expected and _accuracy(outputs[1]) == expected
    assert (tmp_path / "in1" / "log.txt").read_text().count("* accuracy") >= 1
