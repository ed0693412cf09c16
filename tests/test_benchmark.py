"""The bundled benchmark (synthetic): the world, its rendering, the tasks, the world CLIP's
weights and pretraining, and EMPL's open vocabulary on it."""
import hashlib
import os
from collections import Counter

import numpy as np
import pytest
import torch

from benchmark import render, tasks, world, world_clip
from conftest import ROOT, make_cfg
from trainers import clip_backbone
from trainers.clip_backbone import _tokenizer, load_clip, tokenize
from trainers.clip_encoders import eot_positions
from trainers.open_vocab import OpenVocabulary, name_words

SMALL_RECIPE = dict(steps=24, batch_size=16, lr=2e-3, warmup_fraction=0.25)


# ----------------------------------------------------------------------------- the world
def test_vocabulary_has_300_distinct_words_of_known_kinds():
    assert len(world.VOCABULARY) >= 300 and len(set(world.VOCABULARY)) == len(world.VOCABULARY)
    kinds = {world.attribute_of(w) for w in world.VOCABULARY}
    assert kinds == {"family", "member", "color", "texture", "scene", "size", "position", "look"}
    assert world.attribute_of("photo") is None
    assert all(len(members) == len(world.MARKINGS) for members in world.FAMILIES.values())


def test_rendering_is_deterministic_and_shaped():
    images, captions, scenes = render.render_caption_batch(np.random.default_rng([0, 5]), 8)
    again, captions_again, _ = render.render_caption_batch(np.random.default_rng([0, 5]), 8)
    other, _, _ = render.render_caption_batch(np.random.default_rng([0, 6]), 8)
    assert len(scenes) == 8 and {s["kind"] for s in scenes} <= set(world.KINDS)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and captions == captions_again
    assert not np.array_equal(images, other)
    for style in render.STYLES:
        for kind in world.KINDS:
            rng = np.random.default_rng(1)
            img = render.render_scene(world.sample_scene(rng, kind=kind), rng, style)
            assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 5, (style, kind)
    with pytest.raises(ValueError, match="unknown style"):
        render.render_scene(world.sample_scene(np.random.default_rng(0)), np.random.default_rng(0), "oil")
    with pytest.raises(ValueError, match="unknown scene attributes"):
        world.sample_scene(np.random.default_rng(0), shape="star")
    with pytest.raises(ValueError, match="unknown color"):
        world.sample_scene(np.random.default_rng(0), color="octarine")


def test_members_differ_only_in_their_marking():
    """Two members of one family drawn at the same place share the silhouette; their markings
    differ; members of two families differ in silhouette."""
    robin, sparrow = world.FAMILIES["bird"][:2]
    salmon = world.FAMILIES["fish"][0]
    body_a, mark_a = render.object_masks(robin, (0.5, 0.5), 0.4, 0.0)
    body_b, mark_b = render.object_masks(sparrow, (0.5, 0.5), 0.4, 0.0)
    body_c, _ = render.object_masks(salmon, (0.5, 0.5), 0.4, 0.0)
    assert np.array_equal(body_a, body_b) and mark_a.sum() == 0 and mark_b.sum() > 5
    assert np.all(mark_b <= body_b + 1e-6)  # the marking lies inside the silhouette
    assert np.abs(body_a - body_c).sum() > 20


def test_scene_sampling_fixes_what_a_class_fixes_and_correlates_only_in_pretraining():
    rng = np.random.default_rng(3)
    scenes = [world.sample_scene(rng, family="fish", color="red") for _ in range(50)]
    assert all(world.MEMBER_FAMILY[s["member"]] == "fish" and s["color"] == "red" for s in scenes)
    assert len({s["scene"] for s in scenes}) > 5 and {s["kind"] for s in scenes} == {"object"}
    assert {s["look"] for s in scenes} == {"plain"}  # a task's domain is its render style
    # Pretraining shows a family in its habitats far more often than chance (3 of 24 scenes).
    fish = [world.sample_scene(rng, correlated=True, family="fish") for _ in range(400)]
    in_habitat = np.mean([s["scene"] in world.HABITATS["fish"] for s in fish])
    assert in_habitat > 0.5 and {s["look"] for s in fish} == set(world.LOOKS)
    uniform = [world.sample_scene(rng, family="fish") for _ in range(400)]
    assert np.mean([s["scene"] in world.HABITATS["fish"] for s in uniform]) < 0.25


def test_captions_name_their_scene_and_fit_the_text_encoder():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = world.sample_scene(rng, correlated=True)
        text = world.caption(scene, rng)
        words = set(text.rstrip(".").split())
        if scene["kind"] == "object":
            assert scene["member"] in words or world.MEMBER_FAMILY[scene["member"]] in words
        else:
            assert scene["texture" if scene["kind"] == "texture" else "scene"] in words
        assert words <= set(world.VOCABULARY) | {"a", "photo", "of", "on", "at", "the", "scene", "pattern"}
        for look, phrase in world.LOOKS.items():  # a look a caption names is the image's look
            if look != "plain" and text.startswith(phrase + " "):
                assert scene["look"] == look, text
    longest = tokenize([world.longest_caption()])
    assert int(eot_positions(longest)[0]) + 1 <= 24
    ids = set(world_clip.trained_token_ids())
    assert all(set(_tokenizer.encode(w)) <= ids for w in world.VOCABULARY)


def test_noun_noise_misnames_the_object_within_its_level_and_nothing_else():
    """world.caption's noun_noise (a pretraining option for task design): at 1 every object
    caption names a sibling member or another family in the noun's place, the rest of the
    caption as without noise; texture and scene captions are never changed."""
    misnamed = 0
    for t in range(300):
        scene = world.sample_scene(np.random.default_rng([t, 0]), correlated=True)
        clean = world.caption(scene, np.random.default_rng([t, 1]))
        noisy = world.caption(scene, np.random.default_rng([t, 1]), noun_noise=1.0)
        if scene["kind"] != "object":
            assert noisy == clean
            continue
        said, instead = _one_word_changed(clean, noisy)
        if said in world.MEMBER_FAMILY:
            assert world.MEMBER_FAMILY[instead] == world.MEMBER_FAMILY[said]
        else:
            assert said in world.FAMILIES and instead in world.FAMILIES
        misnamed += 1
    assert misnamed > 100
    assert "noun_noise" in world_clip.pretrain_config("world-vit", noun_noise=0.3)["recipe"]


def test_texture_noise_misnames_the_texture_and_nothing_else():
    """texture_noise: at 1 every texture caption names another texture in its place; object and
    scene captions are unchanged; at 0 no caption changes and nothing more is drawn (the
    shipped recipe's captions and random stream)."""
    misnamed = 0
    for t in range(300):
        scene = world.sample_scene(np.random.default_rng([t, 0]), correlated=True)
        clean_rng, zero_rng = np.random.default_rng([t, 1]), np.random.default_rng([t, 1])
        clean = world.caption(scene, clean_rng)
        assert world.caption(scene, zero_rng, texture_noise=0.0) == clean
        assert zero_rng.random() == clean_rng.random()
        noisy = world.caption(scene, np.random.default_rng([t, 1]), texture_noise=1.0)
        if scene["kind"] != "texture":
            assert noisy == clean
            continue
        said, instead = _one_word_changed(clean, noisy)
        assert said == scene["texture"] and instead in world.TEXTURES and instead != said
        misnamed += 1
    assert misnamed > 30
    assert world_clip.pretrain_config("world-vit", texture_noise=0.5)["recipe"]["texture_noise"] == 0.5


def _one_word_changed(clean: str, noisy: str):
    """(the word of ``clean``, the word of ``noisy``) where two captions of the same length differ
    in exactly one word."""
    changed = [(a, b) for a, b in zip(clean.rstrip(".").split(), noisy.rstrip(".").split()) if a != b]
    assert len(clean.split()) == len(noisy.split()) and len(changed) == 1, (clean, noisy)
    return changed[0]


# ----------------------------------------------------------------------------- tasks
def build_world_dataset(root, name, subsample="all", num_shots=0):
    cfg = make_cfg(root, "CoOp", "configs/trainers/CoOp/bundled.yaml", os.path.join(root, "out"),
                   ["DATASET.NAME", name, "DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.NUM_SHOTS", num_shots])
    from dassl.data.datasets import build_dataset

    return build_dataset(cfg)


def test_tasks_are_distinct_world_concepts_with_enough_classes():
    for task in tasks.BASE2NEW_TASKS:
        names = list(task.classes)
        assert len(names) >= 16 and len(set(names)) == len(names), task.__name__
        assert all(world.attribute_of(n) is not None for n in names), task.__name__
        # Held-out classes: other words, at least as many as the new classes (the second half).
        assert not set(task.heldout) & set(names) and len(task.heldout) >= len(names) - len(names) // 2, task.__name__
        assert len({world.attribute_of(n) for n in names}) == 1  # one kind of concept per task
    # WorldNet, the transfer source: objects, textures and scenes; its textures and scenes are no
    # target's classes (its objects: three WorldBreeds classes, as some Pets breeds are ImageNet
    # classes); its restyled renderings (domain generalization) hold its objects.
    net = tasks.WorldNet.classes
    word_kinds = {n: world.attribute_of(n) for n in net}
    assert Counter(word_kinds.values()) == {"member": 25, "texture": 8, "scene": 8}
    scene_kind_of_word = {"member": "object", "texture": "texture", "scene": "scene"}
    assert all(net[n].get("kind", "object") == scene_kind_of_word[k] for n, k in word_kinds.items())
    for task in tasks.BASE2NEW_TASKS:
        assert not {n for n in net if "member" not in net[n]} & set(task.classes), task.__name__
    objects = {n: c for n, c in net.items() if "member" in c}
    for task in tasks.DOMAIN_SHIFTS:
        assert task.classes == objects and task.style != tasks.WorldNet.style


@pytest.fixture(scope="module")
def world_root(tmp_path_factory):
    return tmp_path_factory.mktemp("world_data")


def _hash_tree(folder):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if name.endswith(".png"):
                with open(os.path.join(dirpath, name), "rb") as f:
                    digest.update(name.encode() + f.read())
    return digest.hexdigest()


def test_task_generation_is_deterministic_and_splits_base_new(world_root, tmp_path):
    full = build_world_dataset(str(world_root), "WorldTextures")
    counts = tasks.WorldTask.counts
    assert full.classnames == list(tasks.WorldTextures.classes)
    n_classes = len(tasks.WorldTextures.classes)
    assert (len(full.train_x), len(full.val), len(full.test)) == tuple(n_classes * counts[s] for s in ("train", "val", "test"))
    base = build_world_dataset(str(world_root), "WorldTextures", "base", num_shots=16)
    new = build_world_dataset(str(world_root), "WorldTextures", "new")
    half = n_classes // 2
    assert base.classnames == full.classnames[:half] and new.classnames == full.classnames[half:]
    assert len(base.train_x) == 16 * half and {x.label for x in new.test} == set(range(n_classes - half))
    again = build_world_dataset(str(tmp_path), "WorldTextures")
    assert len(again.test) == len(full.test)
    assert _hash_tree(tmp_path / "world_textures") == _hash_tree(world_root / "world_textures")


def test_test_split_is_the_fresh_draw_and_train_val_are_unchanged(world_root):
    """Benchmark v6 reads draw TEST_DRAW of each class's test renders (images d*n .. d*n+n-1 of
    its stream) and draw 0 of train and val: a test set no choice has seen, with every training
    image as before. Checked pixel for pixel against renders from the documented generators."""
    from PIL import Image

    task = build_world_dataset(str(world_root), "WorldTextures")
    n_test = tasks.WorldTextures.counts["test"]
    assert tasks.TEST_DRAW == 1 and task.first_image == {"test": n_test}
    assert task.generator_params()["first_image"] == {"test": n_test}
    label, classname = 3, task.classnames[3]
    for s_idx, split, index, stream in ((0, "train", 5, 5), (1, "val", 2, 2), (2, "test", 7, n_test + 7)):
        path = world_root / "world_textures" / "images" / classname / f"{split}_{index:03d}.png"
        expected = task.render(label, classname, np.random.default_rng([task.seed, label, s_idx, stream]))
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(expected)), split
    v5_test = task.render(label, classname, np.random.default_rng([task.seed, label, 2, 7]))
    assert not np.array_equal(np.asarray(Image.open(path)), np.asarray(v5_test))


# ----------------------------------------------------------------------------- the world CLIP
def test_shipped_world_clip_loads_through_load_clip_and_is_checked(tmp_path, monkeypatch):
    import benchmark

    benchmark.register()
    cfg = make_cfg(tmp_path, "CoOp", "configs/trainers/CoOp/bundled.yaml", tmp_path / "out")
    model = load_clip(cfg)
    assert cfg.MODEL.BACKBONE.NAME in world_clip.WORLD_CLIP_CONFIGS
    assert model.visual.input_resolution == 32 and torch.isfinite(model.logit_scale)

    name = cfg.MODEL.BACKBONE.NAME
    original = world_clip.shipped_path(name)
    assert os.path.getsize(original) < 10 * 2 ** 20  # ships in the repository
    # A weight file of the pretraining tool also loads as MODEL.BACKBONE.CHECKPOINT (reproduced weights).
    from_file = load_clip(make_cfg(tmp_path, "CoOp", "configs/trainers/CoOp/bundled.yaml", tmp_path / "out2",
                                   ["MODEL.BACKBONE.CHECKPOINT", original]))
    for key, value in model.state_dict().items():
        assert torch.equal(from_file.state_dict()[key], value), key
    monkeypatch.setattr(world_clip, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"the weights of {name} are missing"):
        load_clip(cfg)
    with open(original, "rb") as f:
        data = bytearray(f.read())
    data[-100] ^= 1
    with open(tmp_path / f"{name}.pt", "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ValueError, match="is not the shipped"):
        load_clip(cfg)


def test_unregistered_world_clip_is_an_error_not_a_random_init(tmp_path):
    cfg = make_cfg(tmp_path, "CoOp", "configs/trainers/CoOp/bundled.yaml", tmp_path / "out",
                   ["MODEL.BACKBONE.NAME", "world-huge"])
    with pytest.raises(ValueError, match="no world CLIP of that name is registered"):
        load_clip(cfg)


def test_pretraining_lowers_the_loss_is_deterministic_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setitem(world_clip.WORLD_CLIP_CONFIGS, "world-test", dict(clip_backbone.LOCAL_CLIP_CONFIGS["tiny-vit"]))
    monkeypatch.setitem(world_clip.PRETRAIN_RECIPES, "world-test", dict(world_clip.PRETRAIN_RECIPES["world-vit"], **SMALL_RECIPE))
    monkeypatch.setitem(clip_backbone.LOCAL_CLIP_CONFIGS, "world-test", dict(clip_backbone.LOCAL_CLIP_CONFIGS["tiny-vit"]))
    config = world_clip.pretrain_config("world-test")
    model, history = world_clip.pretrain(config, log_every=0)
    losses = history["loss"]
    assert len(losses) == SMALL_RECIPE["steps"] and np.isfinite(losses).all()
    assert np.mean(losses[-6:]) < np.mean(losses[:6])  # single steps are noisy at batch 16
    again, _ = world_clip.pretrain(config, log_every=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    # Untrained token rows keep their seeded init: the weight file stores only the trained ones.
    init = clip_backbone.build_local_clip("world-test").token_embedding.weight
    untouched = torch.ones(init.shape[0], dtype=torch.bool)
    untouched[world_clip.trained_token_ids()] = False
    assert torch.equal(model.token_embedding.weight[untouched], init[untouched])
    path = str(tmp_path / "w.pt")
    world_clip.save_weights(model, config, history, path)
    restored = world_clip.read_weights(path, "world-test")
    for key, value in model.state_dict().items():
        assert torch.equal(restored[key], value), key
    with pytest.raises(ValueError, match="unknown pretraining keys"):
        world_clip.pretrain_config("world-vit", epochs=3)


# ----------------------------------------------------------------------------- EMPL's open vocabulary
def test_world_open_vocabulary_is_the_world_minus_the_training_classes():
    base = list(tasks.WorldObjects.classes)[:10]
    vocab = OpenVocabulary(base, default_words=world.VOCABULARY, seed=1)
    assert set(vocab.words) == set(world.VOCABULARY) - set(base)
    drawn = {w for _ in range(300) for w in vocab.draw(4)}
    assert not drawn & name_words(base) and len(drawn) > 200


# ----------------------------------------------------------------------------- tuning on validation data
def test_probe_on_validation_reads_no_test_image(world_root, monkeypatch):
    """tools/probe_bundled.py --validation: every image it encodes is a train shot or a val
    image, and zero-shot and the probe are measured on the same half of val."""
    import io

    from tools import probe_bundled

    encoded = []
    encode = probe_bundled.encode
    monkeypatch.setattr(probe_bundled, "encode", lambda model, cfg, items: encoded.extend(items) or encode(model, cfg, items))
    out = io.StringIO()
    assert probe_bundled.main(["--validation", "--tasks", "world_textures", "--seeds", "1", "--root", str(world_root)], out=out) == 0
    dataset = build_world_dataset(world_root, "WorldTextures", "base")
    test_paths = {x.impath for x in dataset.test}
    assert encoded and not test_paths & {x.impath for x in encoded}
    row = [line for line in out.getvalue().splitlines() if line.startswith("| world_textures")][0]
    zs, probe, room = (cell.strip() for cell in row.strip("|").split("|")[1:])
    assert 0 <= float(zs) <= 100 and 0 <= float(probe) <= 100 and float(room) == pytest.approx(float(probe) - float(zs), abs=0.011)


def test_tuning_tool_reads_only_validation_data(world_root, tmp_path):
    """tools/tune_bundled.py end to end on one task, two grid points, the shipped world CLIP: a
    table with both points and the chosen one; every evaluation is on the base classes' val
    split or on the held-out classes, never on a reported task's test split."""
    import io

    from tools import tune_bundled

    out = io.StringIO()
    output = tmp_path / "tune"
    rc = tune_bundled.main(["--trainers", "CoOp", "--tasks", "world_textures", "--seeds", "1", "--root", str(world_root),
                            "--output-dir", str(output), "--points", "OPTIM.MAX_EPOCH 1 OPTIM.LR 0.002",
                            "OPTIM.MAX_EPOCH 1 OPTIM.LR 0.01"], out=out)
    text = out.getvalue()
    assert rc == 0, text
    rows = [line for line in text.splitlines() if line.startswith("| CoOp")]
    assert len(rows) == 2 and sum("**chosen**" in row for row in rows) == 1
    assert "Anchor - host" not in text  # the anchor check is the EMPL trainers' alone
    for row in rows:
        base, heldout = (float(cell.split(" ± ")[0]) for cell in row.split(" | ")[2:4])
        assert 0 <= base <= 100 and 0 <= heldout <= 100
    logs = list(output.rglob("log.txt"))
    assert len(logs) == 2 * 3  # per point: train, val base, held-out
    for log in logs:
        text = log.read_text()
        if "/heldout/" in str(log):
            assert "WorldTexturesHeldout" in text
        else:
            assert "Evaluate on the *val* set" in text and "Evaluate on the *test* set" not in text


def test_tuning_tool_passes_common_opts_to_every_run(tmp_path):
    """Opts after '--' (a candidate world CLIP) reach every run of a point: a two-stage EMPL
    point's host run, its own training and both evaluations; the point's own opts come after
    them, so a point overrides them. An odd number of opts is refused."""
    import io

    from tools import tune_bundled

    common = ["MODEL.BACKBONE.CHECKPOINT", str(tmp_path / "candidate.pt"), "OPTIM.LR", "0.5"]
    runs, evals = tune_bundled.point_runs("EMPL_CoOp", "TRAINER.EMPL.HOST_RUN auto OPTIM.LR 0.005", ["world_textures"], [1], str(tmp_path),
                                          str(tmp_path / "out"), 16, "bundled", "python", common_opts=common)
    assert len(runs) == 4 and len(evals[("world_textures", 1)]) == 2  # host, EMPL, val base, held-out
    assert [r.trainer for r in runs] == ["CoOp", "EMPL_CoOp", "EMPL_CoOp", "EMPL_CoOp"]
    for run in runs:
        text = " ".join(run.argv)
        assert f"MODEL.BACKBONE.CHECKPOINT {tmp_path / 'candidate.pt'}" in text, run.argv
        if run.trainer == "EMPL_CoOp":  # the point's LR comes after the common one, so it wins
            assert text.rindex("OPTIM.LR 0.005") > text.index("OPTIM.LR 0.5 ")
    err = io.StringIO()
    assert tune_bundled.main(["--trainers", "CoOp", "--dry-run", "--", "OPTIM.LR"], out=err) == 2


def test_selection_prefers_steady_points_and_the_cheaper_of_equals():
    from tools import tune_bundled

    def result(base, base_sd, minutes):
        return {"score_base": base - base_sd, "minutes": minutes, "heldout": 70.0, "test_new": None}

    # Better on average but unsteady over seeds loses to a steadier point (mean - std).
    unsteady, steady = "OPTIM.LR 0.2", "OPTIM.LR 0.05"
    assert tune_bundled.choose({unsteady: result(82.0, 4.0, 1.0), steady: result(80.0, 0.5, 1.0)}, "base") == steady
    # Within TIE of the best score, the point whose training took least time.
    long_, short, worse = "OPTIM.MAX_EPOCH 200", "OPTIM.MAX_EPOCH 50", "OPTIM.MAX_EPOCH 5"
    results = {long_: result(80.3, 0.0, 9.0), short: result(80.0, 0.0, 2.0), worse: result(78.0, 0.0, 0.5)}
    assert tune_bundled.choose(results, "base") == short
    # Times within COST_TIE of the least are the same cost (timing noise): the better score wins.
    noisy = {"OPTIM.LR 0.01": result(80.0, 0.0, 2.0), "OPTIM.LR 0.02": result(80.4, 0.0, 2.0 * (1 + tune_bundled.COST_TIE) - 1e-6)}
    assert tune_bundled.choose(noisy, "base") == "OPTIM.LR 0.02"
    noisy["OPTIM.LR 0.02"] = result(80.4, 0.0, 2.0 * (1 + tune_bundled.COST_TIE) + 1e-3)  # beyond: costlier
    assert tune_bundled.choose(noisy, "base") == "OPTIM.LR 0.01"
    assert tune_bundled.choose({"OPTIM.LR 1.0": {}}, "base") is None  # failed runs
    # A transductive evaluation (conditioned on other test images) is never chosen.
    both = {"TRAINER.EMPL.INFERENCE sample_batch": result(90.0, 0.0, 1.0), "TRAINER.EMPL.INFERENCE sample": result(80.0, 0.0, 1.0)}
    assert tune_bundled.choose(both, "base") == "TRAINER.EMPL.INFERENCE sample"
    # A point named ineligible (its anchor failed the check) is never chosen, however it scores.
    assert tune_bundled.choose(results, "base", ineligible={short}) == long_
    assert tune_bundled.choose_checked(results, "base", {short}) == (long_, False)
    # When no point passes the check, the rule chooses among all and says the check was missed.
    assert tune_bundled.choose_checked(results, "base", set(results)) == (short, True)


def test_tuning_tool_checks_each_empl_points_anchor_against_its_host(world_root, tmp_path):
    """An EMPL trainer's points are judged by their anchor too: the host's bundled point is
    evaluated on the same validation data, each point's worst anchor - host cell is printed (read
    here from the runs' logs), and a point more than ANCHOR_MARGIN below is not chosen. Opts after
    '--' reach the evaluations' checkpoint epoch (one epoch everywhere)."""
    import io

    import parse_test_res
    from tools import tune_bundled

    output = tmp_path / "tune"
    points = ["TRAINER.EMPL.INFERENCE anchor", "TRAINER.EMPL.INFERENCE amortized"]
    out = io.StringIO()
    rc = tune_bundled.main(["--trainers", "EMPL_CoOp", "--tasks", "world_textures", "--seeds", "1", "--root",
                            str(world_root), "--output-dir", str(output), "--points", *points,
                            "--", "OPTIM.MAX_EPOCH", "1"], out=out)
    text = out.getvalue()
    assert rc == 0, text

    def accuracy(folder):
        return parse_test_res.read_metric(str(folder / "log.txt"), "accuracy", parse_test_res.TEST_END_SIGNAL)

    host = output / "CoOp" / "default" / "world_textures" / "seed1"
    anchor = output / "EMPL_CoOp" / "EMPL.INFERENCE-anchor" / "world_textures" / "seed1"
    worst = min(accuracy(anchor / split) - accuracy(host / split) for split in ("val_base", "heldout"))
    rows = [line for line in text.splitlines() if line.startswith("| EMPL_CoOp")]
    assert len(rows) == 2
    for row in rows:  # both points share the training runs, so the same anchor and the same gap
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[7]) == pytest.approx(worst, abs=0.051)
        assert ("not eligible" in cells[8]) == (worst < -tune_bundled.ANCHOR_MARGIN)


def test_anchor_point_evaluates_the_same_training_with_the_anchor():
    from tools import tune_bundled

    point = ("TRAINER.EMPL.HOST_RUN '' OPTIM.LR 0.2 TRAINER.EMPL.INFERENCE sample TRAINER.EMPL.TEST_SGLD_STEPS 1 "
             "TRAINER.EMPL.TEST_TOP_K 3")
    anchor = tune_bundled.anchor_point(point)
    assert anchor == "TRAINER.EMPL.HOST_RUN '' OPTIM.LR 0.2 TRAINER.EMPL.INFERENCE anchor"
    assert tune_bundled.anchor_point(anchor) == anchor  # an anchor point is its own


def test_empl_layer_grid_is_relative_to_the_text_encoders_depth():
    """SGLD_LAYERS in the grid is a fraction of the backbone's text blocks: the same grid means 2
    and 4 of the world CLIP's 4 blocks and 6 and 12 of ViT-B/16's 12."""
    from tools import tune_bundled

    point = "TRAINER.EMPL.SGLD_LAYERS {layers:0.5} OPTIM.MAX_EPOCH 10"
    depths = {cfg: tune_bundled.text_depth("EMPL_CoOp", cfg) for cfg in ("bundled", "vit_b16_ep50_ctxv1")}
    assert depths == {"bundled": 4, "vit_b16_ep50_ctxv1": 12}
    assert tune_bundled.expand_layers(point, 4) == "TRAINER.EMPL.SGLD_LAYERS 2 OPTIM.MAX_EPOCH 10"
    assert tune_bundled.expand_layers(point, 12) == "TRAINER.EMPL.SGLD_LAYERS 6 OPTIM.MAX_EPOCH 10"
    assert tune_bundled.expand_layers("TRAINER.EMPL.SGLD_LAYERS {layers:0.1}", 4).endswith(" 1")  # at least one block
    assert all("{layers:" in p for p in tune_bundled.GRID["EMPL_CoOp"])


def test_empl_grid_gives_the_costly_evaluations_to_the_points_it_names():
    """Every EMPL training point gets the regular evaluations; with costly, the scratch points and
    the first two-stage point with half-depth chains (host LR, 10 epochs) get the costly ones."""
    from tools import tune_bundled

    points, costly_points = tune_bundled._empl_trainings("0.05", 100, ("mixture", "per_prompt"),
                                                         two_stage_depths=("0.25", "0.5"))
    scratch = [p for p in points if "HOST_RUN ''" in p]
    assert len(scratch) == 2 and len(points) == 2 + 2 * 2 * 2  # 2 losses; 2 epochs x 2 losses x 2 depths
    half_depth = [p for p in costly_points if "HOST_RUN auto" in p]
    assert costly_points[:2] == scratch and half_depth == [points[3]]  # after the first loss's 0.25 point
    assert "OPTIM.MAX_EPOCH 10 " in half_depth[0] and "{layers:0.5} " in half_depth[0]
    assert "IN_LOSS mixture" in half_depth[0] and "OPTIM.LR 0.05 " in half_depth[0]
    for costly, extra in ((True, len(costly_points) * len(tune_bundled._COSTLY_EVALUATIONS)), (False, 0)):
        grid = tune_bundled._empl_grid((points, costly_points), costly)
        assert len(grid) == len(points) * len(tune_bundled._EMPL_EVALUATIONS) + extra
    assert sum(tune_bundled.transductive(p) for p in grid) == len(points)  # one sample_batch each


def test_every_empl_grid_point_states_the_prior_distance_it_runs_at():
    """A grid point means the same run whatever a shipped config chose after it ran: every EMPL
    training point states PRIOR_STD and INIT_STD (equal: the chains start from the prior), at
    the sampler's 1.0 unless the point varies it; the near-host points sit at the LRs asked for,
    each at PRIOR_STD 1.0 and at the extra distances."""
    import re

    from tools import tune_bundled

    points, _ = tune_bundled._empl_trainings("0.05", 100, ("mixture",), two_stage_depths=(),
                                             fine_tune_lrs=("0.005",), fine_tune_depths=("0.25",),
                                             fine_tune_prior_stds=("0.25",), near_host_lrs=("0.002", "0.001"),
                                             near_host_prior_stds=("0.5",))
    stds = [re.search(r"PRIOR_STD (\S+) TRAINER.EMPL.INIT_STD (\S+)$", p).groups() for p in points]
    assert all(prior == init for prior, init in stds)
    assert [prior for prior, _ in stds] == ["1.0", "1.0", "0.25", "1.0", "0.5", "1.0", "0.5"]
    near = points[3:]
    assert [re.search(r"OPTIM.LR (\S+) ", p).group(1) for p in near] == ["0.002", "0.002", "0.001", "0.001"]
    assert all("OPTIM.MAX_EPOCH 10 " in p and "IN_LOSS mixture" in p and "{layers:0.25}" in p for p in near)
    for trainer in ("EMPL_CoOp", "EMPL_ProDA"):
        assert all("PRIOR_STD" in p and "INIT_STD" in p for p in tune_bundled.GRID[trainer])


def test_tuning_cost_is_the_cpu_time_a_log_reports_else_its_wall_time(tmp_path):
    """The rule's cost: a run's CPU time where its log reports it (wall time grows with whatever
    else runs on the machine), its wall time in logs from before the CPU line."""
    from tools import protocols, tune_bundled

    def run(name, text):
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.txt").write_text(text)
        return protocols.Run("CoOp", "bundled", "world_textures", 1, str(tmp_path / name), [], False)

    new_train = run("a", "epoch ...\nElapsed: 0:01:05\nCPU time: 61.5 s\n")
    old_train = run("b", "epoch ...\nElapsed: 0:01:05\n")
    new_eval = run("c", "Evaluation time: 0.90 s for 160 images (CPU 0.75 s)\n* accuracy: 80.0%\n")
    old_eval = run("d", "Evaluation time: 0.90 s for 160 images\n* accuracy: 80.0%\n")
    assert tune_bundled._training_seconds(new_train) == 61.5
    assert tune_bundled._training_seconds(old_train) == 65
    assert tune_bundled._training_seconds(None) == 0.0
    assert tune_bundled._evaluation_seconds(new_eval) == 0.75
    assert tune_bundled._evaluation_seconds(old_eval) == 0.9
    assert tune_bundled._evaluation_seconds(run("e", "no timing\n")) == 0.0


def test_tuning_tool_reports_held_out_against_test_new_only_after_the_choice(world_root, tmp_path):
    """--test-new-after-choice: the selection table first (its numbers do not change), then every
    point's held-out accuracy beside its test new accuracy, read from runs on the test split's
    new classes, and their correlation."""
    import io

    from tools import tune_bundled

    points = ["OPTIM.MAX_EPOCH 1 OPTIM.LR 0.002", "OPTIM.MAX_EPOCH 2 OPTIM.LR 0.2", "OPTIM.MAX_EPOCH 3 OPTIM.LR 1.0"]
    common = ["--trainers", "CoOp", "--tasks", "world_textures", "--seeds", "1", "--root", str(world_root),
              "--output-dir", str(tmp_path / "tune"), "--points", *points]
    plain, after = io.StringIO(), io.StringIO()
    assert tune_bundled.main(common, out=plain) == 0
    assert tune_bundled.main(common + ["--test-new-after-choice"], out=after) == 0

    def selection(text):
        table = text[text.index("## Tuning"):]
        return [line for line in table.splitlines() if line.startswith("| CoOp")][:3]

    assert selection(after.getvalue()) == selection(plain.getvalue())
    report = after.getvalue()[after.getvalue().index("## Held-out against test new"):]
    assert len([line for line in report.splitlines() if line.startswith("| CoOp")]) == 3
    assert "CoOp: Pearson r" in report
    new_logs = list((tmp_path / "tune").rglob("test_new/log.txt"))
    assert len(new_logs) == 3 and all("SUBSAMPLE_CLASSES: new" in p.read_text() for p in new_logs)


def test_zero_shot_uses_the_task_template(world_root, tmp_path):
    import benchmark
    from dassl.engine import build_trainer

    import trainers  # noqa: F401  (registers the trainers)

    benchmark.register()
    cfg = make_cfg(world_root, "ZeroshotCLIP", "configs/trainers/CoOp/bundled.yaml", tmp_path / "zs",
                   ["DATASET.NAME", "WorldTextures", "DATASET.SUBSAMPLE_CLASSES", "base"])
    trainer = build_trainer(cfg)
    assert trainer.templates() == ["a photo of a {} pattern."]
    assert trainer.text_features.shape == (len(tasks.WorldTextures.classes) // 2, world_clip.WORLD_CLIP_CONFIGS["world-vit"]["embed_dim"])


def test_tuning_tool_tunes_empl_on_a_dataset_without_heldout_classes(synthetic_root, tmp_path):
    """The same tool on a dataset with no <task>_heldout config (as a real dataset): EMPL_CoOp on
    the tiny CLIP trains on the first half of the base classes and is judged on its val split and
    on the other base classes' val split (base_fit / base_heldout); EMPL is selected by H."""
    import io

    from tools import tune_bundled

    out = io.StringIO()
    output = tmp_path / "tune"
    rc = tune_bundled.main(["--trainers", "EMPL_CoOp", "--tasks", "synthetic_shapes", "--seeds", "1", "--cfg", "tiny",
                            "--shots", "2", "--root", str(synthetic_root), "--output-dir", str(output), "--points",
                            "OPTIM.MAX_EPOCH 1 TRAINER.EMPL.ENERGY_TEMP 1.0",
                            "OPTIM.MAX_EPOCH 1 TRAINER.EMPL.ENERGY_TEMP 0.1",
                            # differs only in how it evaluates: the first point's training run serves it
                            "OPTIM.MAX_EPOCH 1 TRAINER.EMPL.ENERGY_TEMP 1.0 TRAINER.EMPL.INFERENCE anchor"], out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "selection: EMPL_CoOp: H" in text
    rows = [line for line in text.splitlines() if line.startswith("| EMPL_CoOp")]
    assert len(rows) == 3 and sum("**chosen**" in row for row in rows) == 1
    logs = list(output.rglob("log.txt"))
    # Each EMPL point's runs, the second point's anchor evaluation (the anchor check) and the
    # host's bundled point (CoOp's training and evaluations: what the anchor is checked against).
    assert sorted(p.parent.name for p in logs) == ["heldout"] * 5 + ["train"] * 3 + ["val_base"] * 5
    assert sorted(p.parent.name for p in logs if "/CoOp/default/" in str(p)) == ["heldout", "train", "val_base"]
    anchor_eval = next(p for p in logs if "INFERENCE-anchor" in str(p) and p.parent.name == "val_base")
    assert "INFERENCE: anchor" in anchor_eval.read_text()
    for path in logs:
        log = path.read_text()
        assert "Evaluate on the *val* set" in log and "Evaluate on the *test* set" not in log
        expected = "base_heldout" if path.parent.name == "heldout" else "base_fit"
        assert f"SUBSAMPLE_CLASSES: {expected}" in log


def test_bundled_xd_configs_are_the_base_to_new_budgets_in_as_many_steps():
    """Each trainer's bundled_xd.yaml (cross-dataset and domain-generalization source training on
    WorldNet's classes) is its bundled.yaml with the epochs scaled to the same number of
    optimisation steps: 16 shots of 8 base classes against WorldNet's 41, so 8/41 of the epochs
    (PromptSRC's aggregation epochs scaled too)."""
    import yaml

    for trainer in sorted(os.listdir(os.path.join(ROOT, "configs", "trainers"))):
        folder = os.path.join(ROOT, "configs", "trainers", trainer)
        if not os.path.isfile(os.path.join(folder, "bundled_xd.yaml")):
            continue
        b2n, xd = (yaml.safe_load(open(os.path.join(folder, f"{name}.yaml"))) for name in ("bundled", "bundled_xd"))
        epochs = b2n["OPTIM"].pop("MAX_EPOCH"), xd["OPTIM"].pop("MAX_EPOCH")
        assert epochs[1] == max(1, round(epochs[0] * 8 / len(tasks.WorldNet.classes))), (trainer, epochs)
        for config in (b2n, xd):  # PromptSRC's aggregation (its epochs) follows MAX_EPOCH
            for key in ("GPA_MEAN", "GPA_STD"):
                config.get("TRAINER", {}).get("PROMPTSRC", {}).pop(key, None)
        assert b2n == xd, trainer
