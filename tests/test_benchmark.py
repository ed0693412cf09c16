"""The bundled benchmark (synthetic): the procedural world, the world CLIP's pretraining, cache
and loading, and the World* datasets, on a smaller configuration of the same code."""
import os

import numpy as np
import pytest
import torch

from conftest import make_cfg
from datasets import world
from trainers import world_clip
from trainers.clip_backbone import _tokenizer, eot_positions, load_clip, tokenize

SMALL_RECIPE = dict(steps=10, batch_size=32, lr=3e-3, warmup_fraction=0.2)


# ----------------------------------------------------------------------------- rendering
def test_rendering_is_deterministic_and_shaped():
    images, captions = world.render_caption_batch(np.random.default_rng([0, 5]), 6)
    again, captions_again = world.render_caption_batch(np.random.default_rng([0, 5]), 6)
    other, _ = world.render_caption_batch(np.random.default_rng([0, 6]), 6)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and captions == captions_again
    assert not np.array_equal(images, other)
    for style in world.STYLES:
        rng = np.random.default_rng(1)
        img = world.render_scene(world.sample_scene(rng, shape="star"), rng, style)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 5  # not blank
    with pytest.raises(ValueError, match="unknown style"):
        world.render_scene(world.sample_scene(np.random.default_rng(0)), np.random.default_rng(0), "oil")
    with pytest.raises(ValueError, match="unknown scene attributes"):
        world.sample_scene(np.random.default_rng(0), texture="striped")


def test_scene_attributes_fix_what_a_class_fixes():
    rng = np.random.default_rng(3)
    scenes = [world.sample_scene(rng, color="red", shape="ring") for _ in range(20)]
    assert all(s["color"] == "red" and s["shape"] == "ring" for s in scenes)
    assert len({s["pattern"] for s in scenes}) > 1  # the rest varies


def test_captions_tokenize_within_the_truncated_text_length():
    """Every caption names its scene's words and fits the 16 tokens the text encoder is cut to."""
    longest = {key: max(values, key=lambda w: len(_tokenizer.encode(w)))
               for key, values in (("shape", world.SHAPES), ("color", world.COLORS), ("size", world.SIZES),
                                   ("pattern", world.PATTERNS))}
    captions = [world.caption(longest, t) for t in world.CAPTION_TEMPLATES]
    tokens = tokenize(captions)
    assert tokens.shape == (len(captions), 77)
    assert int(eot_positions(tokens).max()) + 1 <= 16
    assert _tokenizer.decode(tokens[0, 1:int(eot_positions(tokens[:1])[0])].tolist()).replace(" .", ".").strip() == captions[0]
    assert not any("photo" in t for t in world.CAPTION_TEMPLATES)  # the zero-shot template stays unseen


# ----------------------------------------------------------------------------- pretraining and cache
@pytest.fixture(scope="module")
def small_pretraining(tmp_path_factory):
    """world-tiny with a few-step recipe, cached under a temporary EMPL_CACHE_DIR: yields
    (config, model, history) of one pretraining run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMPL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setitem(world_clip.PRETRAIN_CONFIGS, "world-tiny", dict(world_clip.PRETRAIN_CONFIGS["world-tiny"], **SMALL_RECIPE))
        config = world_clip.pretrain_config("world-tiny")
        model, history = world_clip.pretrain(config, log_every=0)
        yield config, model, history


@pytest.fixture
def small_world_clip(small_pretraining):
    return small_pretraining[0]


def test_pretraining_lowers_the_loss_and_is_deterministic(small_pretraining):
    config, model, history = small_pretraining
    losses = history["loss"]
    assert len(losses) == SMALL_RECIPE["steps"] and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < losses[0] - 0.1  # starts near log(32) = 3.47
    assert model.logit_scale.item() <= world_clip.MAX_LOGIT_SCALE + 1e-6
    again, _ = world_clip.pretrain(config, log_every=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_cache_is_keyed_by_config_written_once_and_loaded_by_trainers(small_pretraining, monkeypatch, tmp_path):
    config, model, history = small_pretraining
    path = world_clip.checkpoint_path(config)
    assert path.startswith(os.environ["EMPL_CACHE_DIR"]) and "/tiny_clip/world-tiny-" in path
    assert world_clip.checkpoint_path(world_clip.pretrain_config("world-tiny", steps=13)) != path

    with pytest.raises(FileNotFoundError, match="python tools/pretrain_world_clip.py --config world-tiny"):
        load_clip(make_cfg(tmp_path, "CoOp", "configs/trainers/CoOp/bundled.yaml", tmp_path / "out"))

    trained = []
    monkeypatch.setattr(world_clip, "pretrain", lambda cfg, **kw: trained.append(cfg) or (model, history))
    assert world_clip.ensure_pretrained(config, log=lambda *a: None) == path
    assert world_clip.ensure_pretrained(config, log=lambda *a: None) == path
    assert trained == [config]  # pretrained once, then found in the cache
    saved = torch.load(path, weights_only=False)
    assert saved["config"] == config and len(saved["history"]["loss"]) == SMALL_RECIPE["steps"]
    loaded = load_clip(make_cfg(tmp_path, "CoOp", "configs/trainers/CoOp/bundled.yaml", tmp_path / "out"))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    os.remove(path)


def test_corrupt_cache_gives_a_clear_error(small_world_clip):
    path = world_clip.checkpoint_path(small_world_clip)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="delete the file and pretrain again: python tools/pretrain_world_clip.py"):
        world_clip.load_cached_state(small_world_clip)
    with pytest.raises(ValueError, match="cannot read the cached world-tiny CLIP"):
        world_clip.ensure_pretrained(small_world_clip, log=lambda *a: None)


def test_unknown_world_clip_or_recipe_key():
    with pytest.raises(ValueError, match="unknown world CLIP"):
        world_clip.pretrain_config("world-huge")
    with pytest.raises(ValueError, match="unknown pretraining keys"):
        world_clip.pretrain_config("world-tiny", epochs=3)


# ----------------------------------------------------------------------------- datasets
def build_world_dataset(root, name, subsample="all", num_shots=0):
    cfg = make_cfg(root, "CoOp", "configs/trainers/CoOp/bundled.yaml", os.path.join(root, "out"),
                   ["DATASET.NAME", name, "DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.NUM_SHOTS", num_shots])
    from dassl.data.datasets import build_dataset

    return build_dataset(cfg)


@pytest.mark.parametrize("name, folder, first_class", [
    ("WorldShapes", "world_shapes", "circle"),
    ("WorldCompositions", "world_compositions", "red circle"),
])
def test_world_tasks_generate_layout_and_disjoint_base_new(tmp_path, name, folder, first_class):
    import datasets  # noqa: F401  (registers the datasets)

    full = build_world_dataset(str(tmp_path), name)
    assert full.num_classes == 10 and full.classnames[0] == first_class
    per_class = world.WorldTask.counts
    assert (len(full.train_x), len(full.val), len(full.test)) == tuple(10 * per_class[s] for s in ("train", "val", "test"))
    split = tmp_path / folder / f"split_zhou_{name}.json"
    png = tmp_path / folder / "images" / first_class.replace(" ", "_") / "train_003.png"
    assert split.is_file() and png.is_file() and (tmp_path / folder / "generator.json").is_file()

    base = build_world_dataset(str(tmp_path), name, "base", num_shots=4)
    new = build_world_dataset(str(tmp_path), name, "new")
    assert len(base.classnames) == len(new.classnames) == 5
    assert not set(base.classnames) & set(new.classnames)
    assert set(base.classnames) | set(new.classnames) == set(full.classnames)
    assert len(base.train_x) == 20 and {x.label for x in new.test} == set(range(5))

    data = png.read_bytes()
    os.remove(split)
    build_world_dataset(str(tmp_path), name)
    assert png.read_bytes() == data  # regenerated with the same pixels


def test_domain_shifted_variants_keep_the_classes_and_change_the_pixels(tmp_path):
    import datasets  # noqa: F401
    from PIL import Image

    photo = build_world_dataset(str(tmp_path), "WorldShapes")
    sketch = build_world_dataset(str(tmp_path), "WorldShapesSketch")
    assert sketch.classnames == photo.classnames
    a = np.asarray(Image.open(photo.test[0].impath), np.float32)
    b = np.asarray(Image.open(sketch.test[0].impath), np.float32)
    assert np.abs(a - b).mean() > 20
