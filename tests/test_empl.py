"""EMPL_CoOp, ProDA and EMPL_ProDA (and EMPL_MaPLe's sampling) on the tiny CLIP: equivalences, gradients, sampling, inference."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import fixed_batch
from trainers.empl import feature_spread
from trainers.open_vocab import name_words

EMPL_COOP = "configs/trainers/EMPL_CoOp/tiny.yaml"
EMPL_PRODA = "configs/trainers/EMPL_ProDA/tiny.yaml"
EMPL_MAPLE = "configs/trainers/EMPL_MaPLe/tiny.yaml"
PRODA = "configs/trainers/ProDA/tiny.yaml"
COOP = "configs/trainers/CoOp/tiny_ctxv1.yaml"


def shipped_empl_configs():
    from conftest import ROOT
    import glob

    return sorted(glob.glob(os.path.join(ROOT, "configs", "trainers", "EMPL_*", "*.yaml")))


def test_no_shipped_empl_config_restates_a_default():
    """A shipped EMPL config sets only the TRAINER.EMPL keys whose value differs from the code's
    default (trainers/empl.py, add_config)."""
    from dassl.config import get_cfg_default
    from dassl.config.cfg_node import load_with_bases
    from launch import extend_cfg

    defaults = get_cfg_default()
    extend_cfg(defaults)
    for path in shipped_empl_configs():
        node = load_with_bases(path).get("TRAINER", {}).get("EMPL", {})
        restated = [key for key, value in node.items() if value == defaults.TRAINER.EMPL[key]]
        assert not restated, (path, restated)


def test_a_default_changed_in_code_reaches_the_shipped_configs(monkeypatch):
    """SGLD_STEP_SIZE changed in trainers/empl_config.py is the value of every shipped EMPL config's
    run (no config pins the sampler's step; the bundled EMPL_CoOp configs choose PRIOR_STD)."""
    import launch
    from trainers import empl_config

    declare = empl_config.add_config

    def add_config_with_another_step(cfg):
        declare(cfg)
        cfg.TRAINER.EMPL.SGLD_STEP_SIZE = 2.5

    monkeypatch.setattr(empl_config, "add_config", add_config_with_another_step)
    for path in shipped_empl_configs():
        trainer = os.path.basename(os.path.dirname(path))
        cfg = launch.config_from_argv(["--trainer", trainer, "--config-file", path])
        assert cfg.TRAINER.EMPL.SGLD_STEP_SIZE == 2.5, path


def test_renamed_keys_still_load_with_a_one_line_note(tmp_path, capsys):
    """TRAINER.EMPL.N_PROMPTS and LAMBDA, the names of N_CHAINS and OPEN_LOSS_WEIGHT before their
    renames, still load from a YAML file, from command-line opts and from a saved run's config."""
    import launch
    from tools.run_loading import load_run_config

    old = tmp_path / "old.yaml"
    old.write_text("TRAINER:\n  EMPL:\n    N_PROMPTS: 3\n    LAMBDA: 0.5\n")
    capsys.readouterr()
    cfg = launch.config_from_argv(["--trainer", "EMPL_CoOp", "--config-file", str(old), "TRAINER.EMPL.LAMBDA", "0.25"])
    assert (cfg.TRAINER.EMPL.N_CHAINS, cfg.TRAINER.EMPL.OPEN_LOSS_WEIGHT) == (3, 0.25)
    note = "note: TRAINER.EMPL.{} is now TRAINER.EMPL.{} (in {}); the old name still works"
    assert capsys.readouterr().err.splitlines() == [
        note.format("N_PROMPTS", "N_CHAINS", old), note.format("LAMBDA", "OPEN_LOSS_WEIGHT", old),
        note.format("LAMBDA", "OPEN_LOSS_WEIGHT", "command-line opts")]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.dump().replace("N_CHAINS", "N_PROMPTS").replace("OPEN_LOSS_WEIGHT", "LAMBDA"))
    loaded = load_run_config(str(run))
    assert (loaded.TRAINER.EMPL.N_CHAINS, loaded.TRAINER.EMPL.OPEN_LOSS_WEIGHT) == (3, 0.25)
    old.write_text("TRAINER:\n  EMPL:\n    N_PROMPTS: 3\n    N_CHAINS: 2\n")
    with pytest.raises(ValueError, match="sets both TRAINER.EMPL.N_CHAINS and its old name TRAINER.EMPL.N_PROMPTS"):
        launch.config_from_argv(["--trainer", "EMPL_CoOp", "--config-file", str(old)])


@pytest.fixture(scope="module")
def empl_coop(build_tiny_trainer):
    return build_tiny_trainer("EMPL_CoOp", EMPL_COOP)


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_split_encoder_with_anchor_states_equals_plain_text_encoder(build_tiny_trainer, layers):
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_LAYERS", layers)
    with torch.no_grad():
        hidden, eot = trainer.prefix_states([trainer.model.prompt_learner.classes])
        feats, _, _ = trainer.sampled_features(hidden, eot, None, sample=False)
        assert feats.shape[:2] == (1, 1)
        assert torch.allclose(feats[0, 0], trainer.model.class_text_features(), atol=1e-5)


def test_sampling_off_and_lambda_zero_gives_coops_loss(build_tiny_trainer):
    empl = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.N_CHAINS", 0, "TRAINER.EMPL.OPEN_LOSS_WEIGHT", 0.0)
    coop = build_tiny_trainer("CoOp", COOP)
    with torch.no_grad():
        coop.model.prompt_learner.ctx.copy_(empl.model.prompt_learner.ctx + 0.05)
        empl.model.prompt_learner.ctx.copy_(coop.model.prompt_learner.ctx)
    images, labels = fixed_batch(empl)
    loss_empl, _, _ = empl.compute_loss(images, labels)
    loss_coop, _ = coop.compute_loss(images, labels)
    assert loss_empl.item() == pytest.approx(loss_coop.item(), abs=1e-5)


def test_empl_proda_without_sampling_is_proda(build_tiny_trainer):
    empl = build_tiny_trainer("EMPL_ProDA", EMPL_PRODA, "TRAINER.EMPL.N_CHAINS", 0, "TRAINER.EMPL.OPEN_LOSS_WEIGHT", 0.0)
    proda = build_tiny_trainer("ProDA", PRODA)
    with torch.no_grad():
        proda.model.prompt_learner.ctx.copy_(empl.model.prompt_learner.ctx)
    images, labels = fixed_batch(empl)
    assert empl.compute_loss(images, labels)[0].item() == pytest.approx(proda.compute_loss(images, labels)[0].item(), abs=1e-5)


def test_empl_proda_per_prompt_bound_is_prodas_loss_at_each_chain_position(build_tiny_trainer):
    from trainers.multi_prompt_losses import proda_gaussian_bound_loss

    trainer = build_tiny_trainer("EMPL_ProDA", EMPL_PRODA, "TRAINER.EMPL.IN_LOSS", "per_prompt",
                                 "TRAINER.PRODA.ORTHO_WEIGHT", 0.0)
    gen = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    logits = 5 * torch.randn(4, 3, 5, 3, generator=gen)  # [K sets, S positions (anchors first), B, C]
    expected = sum(proda_gaussian_bound_loss(logits[:, s], labels) for s in range(3)) / 3
    loss, _ = trainer.multi_prompt_loss(logits, labels, None)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Anchors that do not classify (uniform logits) before samples that do: the anchors' position
    # costs its cross-entropy, log 3, in one third of the loss, whatever the samples do.
    good = 10.0 * F.one_hot(labels, 3).float().expand(4, 3, 5, 3)
    blind_anchors = torch.cat([torch.zeros(4, 1, 5, 3), good[:, 1:]], dim=1)
    extra = trainer.multi_prompt_loss(blind_anchors, labels, None)[0] - trainer.multi_prompt_loss(good, labels, None)[0]
    assert extra.item() == pytest.approx(math.log(3) / 3, abs=1e-3)


@pytest.mark.parametrize("name, config", [("EMPL_CoOp", EMPL_COOP), ("EMPL_ProDA", EMPL_PRODA), ("ProDA", PRODA)])
def test_gradient_reaches_the_context_and_nothing_frozen(build_tiny_trainer, name, config):
    trainer = build_tiny_trainer(name, config)
    trainer.set_model_mode("train")
    images, labels = fixed_batch(trainer)
    trainer.model_zero_grad()
    loss, output = trainer.compute_loss(images, labels)[:2]  # EMPL adds its logged values
    loss.backward()
    assert output.shape == (len(labels), trainer.dm.num_classes)
    ctx = trainer.model.prompt_learner.ctx
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    frozen_with_grad = [n for n, p in trainer.model.named_parameters() if p.grad is not None and n != "prompt_learner.ctx"]
    assert frozen_with_grad == []


@pytest.mark.parametrize("name, config", [("EMPL_CoOp", EMPL_COOP), ("EMPL_MaPLe", EMPL_MAPLE)])
def test_samples_differ_from_each_other_and_from_the_anchor(build_tiny_trainer, name, config):
    trainer = build_tiny_trainer(name, config)
    images, labels = fixed_batch(trainer)
    with torch.no_grad():
        image_features = trainer.model.encode_image(images)
    hidden, eot = trainer.prefix_states([trainer.model.prompt_learner.classes])
    feats, per_image, result = trainer.sampled_features(hidden, eot, image_features)
    n = trainer.cfg.TRAINER.EMPL.N_CHAINS
    assert feats.shape[:2] == (1, n + 1) and not per_image
    samples = result.samples[0].detach().flatten(1)  # [N, M*d]
    anchor = trainer.split_text.context_states(hidden[0, 0]).detach().flatten()
    assert torch.cdist(samples, samples)[~torch.eye(n, dtype=torch.bool)].min() > 0
    assert (samples - anchor).norm(dim=1).min() > 0
    assert result.rejected_steps == 0 and result.diversity > 0
    # Different prompts give different class features.
    assert (feats[0, 1:] - feats[0, :1]).abs().max() > 1e-4
    loss, output, _ = trainer.compute_loss(images, labels)
    assert torch.isfinite(loss) and output.shape == (len(labels), trainer.dm.num_classes)


def test_unseen_words_never_hold_a_training_class_name(empl_coop):
    forbidden = name_words(empl_coop.dm.dataset.classnames)
    assert forbidden >= {"circle", "square"}
    drawn = [w for _ in range(200) for w in empl_coop.open_vocab.draw(8)]
    assert len(set(drawn)) > 100 and not forbidden & set(drawn)


def test_strict_vocabulary_leaves_out_every_class_of_the_dataset(build_tiny_trainer):
    """VOCAB_EXCLUDE training (the default) removes the run's own classes, so a base-class run can
    draw the new classes' names; VOCAB_EXCLUDE dataset removes base and new alike."""
    base = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "DATASET.SUBSAMPLE_CLASSES", "base")
    strict = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "DATASET.SUBSAMPLE_CLASSES", "base",
                                "TRAINER.EMPL.VOCAB_EXCLUDE", "dataset")
    every = strict.dm.dataset.all_classnames
    new_names = name_words(every) - name_words(base.dm.dataset.classnames)
    assert len(every) > len(base.dm.dataset.classnames) and new_names
    assert new_names & set(base.open_vocab.words)  # the default can draw a new class's name
    assert not name_words(every) & set(strict.open_vocab.words)
    assert set(strict.open_vocab.words) == set(base.open_vocab.words) - new_names


def test_condition_image_gives_each_image_its_chains(build_tiny_trainer):
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.CONDITION", "image", "TRAINER.EMPL.N_CHAINS", 2,
                                 "TRAINER.EMPL.PERSISTENT", False)
    images, labels = fixed_batch(trainer, 3)
    with torch.no_grad():
        image_features = trainer.model.encode_image(images)
    hidden, eot = trainer.prefix_states([trainer.model.prompt_learner.classes])
    feats, per_image, result = trainer.sampled_features(hidden, eot, image_features)
    assert per_image and feats.shape[:3] == (1, 3, 3) and result.samples.shape[:2] == (3, 2)
    loss, output, _ = trainer.compute_loss(images, labels)
    assert torch.isfinite(loss) and output.shape == (3, trainer.dm.num_classes)


def test_inference_modes(build_tiny_trainer):
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.INFERENCE", "anchor")
    with torch.no_grad():
        trainer.model.prompt_learner.ctx.add_(0.1 * torch.randn_like(trainer.model.prompt_learner.ctx))
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer)
    coop_logits = trainer.model(images)  # CoOp's forward on the anchor
    trainer.refresh_calibration()  # a training run does this in before_train and save_model
    predictions = {}
    for mode in ("anchor", "amortized", "sample", "sample_batch"):
        trainer.cfg.defrost()
        trainer.cfg.TRAINER.EMPL.INFERENCE = mode
        trainer.clear_eval_cache()
        with torch.no_grad():
            first, second = trainer.model_inference(images), trainer.model_inference(images)
        assert first.shape == coop_logits.shape and torch.isfinite(first).all()
        # anchor and amortized reuse one cached feature set per evaluation; sample draws each
        # image's chains from that image's own seed (the same again); sample_batch draws anew.
        assert torch.equal(first, second) == (mode != "sample_batch")
        predictions[mode] = first
    # anchor mode is CoOp's prediction: one softmax.
    assert torch.allclose(predictions["anchor"], F.log_softmax(coop_logits, -1), atol=1e-5)
    assert not torch.allclose(predictions["amortized"], predictions["anchor"])
    # Each mode's output is the log of a mixture of softmaxes: a distribution.
    assert torch.allclose(predictions["sample"].exp().sum(-1), torch.ones(len(images)), atol=1e-5)


def shipped_inference_modes():
    """INFERENCE of trainers/config.py and of every shipped EMPL config."""
    import glob

    import yaml

    modes = {get_cfg_default_inference()}
    for path in glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                       "configs", "trainers", "EMPL_*", "*.yaml")):
        with open(path, encoding="utf-8") as f:
            modes.add(yaml.safe_load(f)["TRAINER"]["EMPL"].get("INFERENCE", get_cfg_default_inference()))
    return modes


def test_default_prediction_depends_on_its_image_alone(build_tiny_trainer):
    """Inductive by default: in the default mode of config.py and of every shipped config (and in
    per-image sampling), an image's prediction is the same whatever the other images of its batch
    are and wherever it sits (same batch size, so the same kernels: bit equality holds on any
    CPU). The transductive mode's prediction moves with the batch."""
    inductive = sorted(shipped_inference_modes() | {"sample"})
    assert "sample_batch" not in inductive
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP)
    trainer.refresh_calibration()
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer, 8)
    others = torch.randn(3, *images.shape[1:], generator=torch.Generator().manual_seed(5))
    batches = [images[:4], torch.cat([images[:1], others]), torch.cat([others[:2], images[:1], others[2:]])]
    positions = [0, 0, 2]
    # EMPL_CoOp's bundled configs sample on each image's 3 best classes (TEST_TOP_K 3).
    settings = [(mode, 0) for mode in (*inductive, "sample_batch")] + [("sample", 3)]
    assert trainer.dm.num_classes > 3
    predictions = {}
    for mode, top_k in settings:
        trainer.cfg.defrost()
        trainer.cfg.TRAINER.EMPL.INFERENCE = mode
        trainer.cfg.TRAINER.EMPL.TEST_TOP_K = top_k
        outputs = []
        for batch, position in zip(batches, positions):
            trainer.clear_eval_cache()
            with torch.no_grad():
                outputs.append(trainer.model_inference(batch)[position])
        predictions[mode, top_k] = outputs
    for setting in predictions:
        if setting[0] != "sample_batch":
            assert all(torch.equal(p, predictions[setting][0]) for p in predictions[setting]), setting
    assert not torch.allclose(predictions["sample_batch", 0][0], predictions["sample_batch", 0][1])
    top3 = predictions["sample", 3][0]  # the top-k path ran: every other class is at the floor
    assert int((top3 == torch.finfo(top3.dtype).min).sum()) == trainer.dm.num_classes - 3


def get_cfg_default_inference():
    from dassl.config import get_cfg_default
    from launch import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    return cfg.TRAINER.EMPL.INFERENCE


def test_sgld_noise_leaves_the_global_rng_and_data_order_alone(build_tiny_trainer):
    """SGLD draws from private generators: training steps and evaluations in every mode leave
    torch's global RNG (batch order, augmentation) as they found it."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.INFERENCE", "amortized")
    images, labels = fixed_batch(trainer)
    state = torch.get_rng_state()
    trainer.refresh_calibration()  # draws amortized mode's training batch under a forked RNG
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    assert trainer.forward_backward({"img": images, "label": labels})["sgld_diversity"] > 0  # it did sample
    trainer.set_model_mode("eval")
    for mode in ("amortized", "sample"):
        trainer.cfg.defrost()
        trainer.cfg.TRAINER.EMPL.INFERENCE = mode
        trainer.clear_eval_cache()
        with torch.no_grad():
            trainer.model_inference(images)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("mode", ["sample", "amortized"])
def test_every_evaluation_draws_the_same_prompts(build_tiny_trainer, mode):
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.INFERENCE", mode)
    trainer.refresh_calibration()
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer)
    outputs = []
    for _ in range(2):
        trainer.clear_eval_cache()  # as test() does at its start
        with torch.no_grad():
            outputs.append(trainer.model_inference(images))
        torch.randn(3)  # whatever else happens between two evaluations
    assert torch.equal(outputs[0], outputs[1])


def test_anchor_gradient_is_close_to_exact_sgld_on_the_real_energy(build_tiny_trainer):
    """SGLD_GRADIENT anchor linearises the data energy at the anchor. On the tiny CLIP, with a
    weak data term and a narrow prior that keep the chains near the anchor, the drift it produces
    (no noise) is within 5% of exact SGLD's, while it evaluates the energy's gradient once instead
    of SGLD_STEPS x N_CHAINS times."""
    opts = ("TRAINER.EMPL.NOISE_STD", 0.0, "TRAINER.EMPL.INIT_STD", 0.0, "TRAINER.EMPL.SGLD_STEP_SIZE", 0.05,
            "TRAINER.EMPL.ENERGY_TEMP", 1.0, "TRAINER.EMPL.PRIOR_STD", 0.1)
    drifts = {}
    for gradient in ("exact", "anchor"):
        trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_GRADIENT", gradient, *opts)
        images, _ = fixed_batch(trainer)
        with torch.no_grad():
            image_features = trainer.model.encode_image(images)
        hidden, eot = trainer.prefix_states([trainer.model.prompt_learner.classes])
        anchor = trainer.split_text.context_states(hidden[:, 0]).detach()
        _, _, result = trainer.sampled_features(hidden, eot, image_features)
        drifts[gradient] = result.samples.detach() - anchor.unsqueeze(1)
    exact, linear = drifts["exact"], drifts["anchor"]
    assert exact.abs().max() > 0
    assert (linear - exact).norm() < 0.05 * exact.norm()


def test_linearised_sgld_warns_once_when_chains_go_far(build_tiny_trainer, recwarn):
    trainer = build_tiny_trainer(
        "EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_GRADIENT", "anchor",
        "TRAINER.EMPL.SGLD_STEP_SIZE", 1.0, "TRAINER.EMPL.PRIOR_STD", 1.0,
    )
    images, labels = fixed_batch(trainer)
    for _ in range(2):
        _, _, extras = trainer.compute_loss(images, labels)
    assert extras["sgld_distance_to_anchor"] > 0.75
    far = [w for w in recwarn if "linearises the energy" in str(w.message)]
    assert len(far) == 1 and "SGLD_GRADIENT exact" in str(far[0].message)
    near = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_GRADIENT", "anchor",
                              "TRAINER.EMPL.PRIOR_STD", 0.1, "TRAINER.EMPL.INIT_STD", 0.1, "TRAINER.EMPL.ENERGY_TEMP", 1.0)
    assert near.compute_loss(images, labels)[2]["sgld_distance_to_anchor"] < 0.75
    assert len([w for w in recwarn if "linearises the energy" in str(w.message)]) == 1


def test_save_then_load_reproduces_anchor_mode_logits(build_tiny_trainer, tmp_path):
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.INFERENCE", "anchor", output_dir=tmp_path / "a")
    with torch.no_grad():
        trainer.model.prompt_learner.ctx.add_(torch.randn_like(trainer.model.prompt_learner.ctx))
    trainer.save_model(0, str(tmp_path / "a"))
    images, _ = fixed_batch(trainer)
    trainer.set_model_mode("eval")
    expected = trainer.model_inference(images)
    fresh = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.INFERENCE", "anchor", output_dir=tmp_path / "b")
    fresh.load_model(str(tmp_path / "a"), epoch=1)
    fresh.set_model_mode("eval")
    assert torch.allclose(fresh.model_inference(images), expected)


@pytest.mark.parametrize(
    "opts, message",
    [
        (("TRAINER.COOP.CSC", True), "CSC False"),
        (("TRAINER.EMPL.INFERENCE", "mcmc"), "INFERENCE"),
        (("TRAINER.EMPL.SGLD_LAYERS", 9), "SGLD_LAYERS"),
        (("TRAINER.EMPL.CONDITION", "class"), "CONDITION"),
        (("TRAINER.EMPL.SGLD_GRADIENT", "linear"), "SGLD_GRADIENT"),
        (("TRAINER.EMPL.CONDITION", "image", "TRAINER.EMPL.PERSISTENT", True), "PERSISTENT False"),
        (("TRAINER.EMPL.VOCAB_EXCLUDE", "base"), "VOCAB_EXCLUDE"),
    ],
)
def test_bad_empl_config_is_a_clear_error(build_tiny_trainer, opts, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_trainer("EMPL_CoOp", EMPL_COOP, *opts)


def test_default_open_vocabulary_is_dictionary_words_without_fragments():
    """The shipped default W: CLIP BPE whole words that are dictionary words; suffix fragments
    are not in it; only the training classes' words are removed (a name the run never sees stays)."""
    from trainers.open_vocab import OpenVocabulary, clip_bpe_words

    vocab = OpenVocabulary(["golden retriever", "cat"])
    words = set(vocab.words)
    assert 5000 < len(words) < len(clip_bpe_words())
    assert words <= set(clip_bpe_words())
    assert not words & {"tion", "ing", "ness", "ment", "ers", "ity"}
    assert not words & {"golden", "retriever", "cat"}
    assert {"dog", "bamboo", "canoe"} <= words


def test_amortized_mode_conditions_on_the_training_runs_images(build_tiny_trainer, tmp_path):
    """The calibration features travel with the checkpoint: an evaluation run on other classes
    uses the training run's, not its own training images; a model without them is a clear error."""
    opts = ("TRAINER.EMPL.INFERENCE", "amortized")
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, *opts, output_dir=tmp_path / "a")
    trainer.save_model(0, str(tmp_path / "a"))
    saved = trainer.model.prompt_learner.calibration_features.clone()
    assert saved.shape[0] == trainer.cfg.DATALOADER.TRAIN_X.BATCH_SIZE or saved.shape[0] == len(trainer.dm.dataset.train_x)
    fresh = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, *opts, "DATASET.SUBSAMPLE_CLASSES", "new",
                               output_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="amortized"):
        fresh.calibration_features()
    fresh.load_model(str(tmp_path / "a"), epoch=1)
    assert torch.equal(fresh.calibration_features(), saved)
    own = fresh.model.encode_image(next(iter(fresh.train_loader_x))["img"])
    assert not torch.allclose(own[: len(saved)], saved[: len(own)])


@pytest.mark.parametrize("layers", [2, 4])
def test_data_term_shapes_the_chains_at_the_defaults(build_tiny_trainer, layers):
    """At the default sampler settings (trainers/config.py), on a fixed batch: the chains end at
    a lower data energy than prior-only chains run on the same noise, and the samples' text
    features move (shift and spread ratios > 0, what the training log reports as sgld_*)."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_LAYERS", layers)
    images, labels = fixed_batch(trainer)
    with torch.no_grad():
        image_features = trainer.model.encode_image(images)
        hidden, eot = trainer.prefix_states([trainer.model.prompt_learner.classes])
        feats, _, result = trainer.sampled_features(hidden, eot, image_features, diagnose=True,
                                                    generator=torch.Generator().manual_seed(0))
    assert result.data_energy_after < result.data_energy_prior_only
    assert result.as_dict()["sgld/data_energy_z"] < 0
    spread = feature_spread(feats)
    assert spread["sgld_shift_ratio"] > 0 and spread["sgld_spread_ratio"] > 0
    # The training step logs the same diagnostics on its PRINT_FREQ batches.
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    summary = trainer.forward_backward({"img": images, "label": labels})
    assert {"sgld_data_energy_gain", "sgld_data_energy_z", "sgld_shift_ratio", "sgld_spread_ratio"} <= set(summary)
    trainer.batch_idx = 1  # not a PRINT_FREQ batch: no diagnostic cost
    assert "sgld_data_energy_gain" not in trainer.forward_backward({"img": images, "label": labels})


def test_feature_spread_against_a_direct_computation():
    feats = F.normalize(torch.randn(2, 3, 4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    spread = feature_spread(feats)
    anchors, samples = feats[:, 0], feats[:, 1:]
    to_anchor = torch.stack([1 - (samples[k, s, c] @ anchors[k, c]) for k in range(2) for s in range(2) for c in range(4)]).mean()
    between = torch.stack([1 - anchors[k, c] @ anchors[k, e] for k in range(2) for c in range(4) for e in range(4) if c != e]).mean()
    pairs = torch.stack([1 - samples[k, 0, c] @ samples[k, 1, c] for k in range(2) for c in range(4)]).mean()
    assert spread["sgld_class_distance"] == pytest.approx(between.item(), rel=1e-5)
    assert spread["sgld_shift_ratio"] == pytest.approx((to_anchor / between).item(), rel=1e-5)
    assert spread["sgld_spread_ratio"] == pytest.approx((pairs / between).item(), rel=1e-5)


def test_persistent_chains_continue_from_the_previous_training_step(build_tiny_trainer):
    """PERSISTENT: a training step's chains start where the previous step's ended (offsets in
    units of r), which resume state carries; without it every step starts from the prior."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.PERSISTENT", True,
                                 "TRAINER.EMPL.SGLD_STEPS", 1)
    images, labels = fixed_batch(trainer)
    trainer.batch_idx = 1
    trainer.compute_loss(images, labels)
    first = trainer.persistent_offsets[0].clone()
    assert not torch.equal(first, trainer.persistent_offsets[1])  # the prior-only chains beside them
    assert first.shape == (1, trainer.cfg.TRAINER.EMPL.N_CHAINS, trainer.model.prompt_learner.n_ctx, first.shape[-1])
    seen = {}
    original = trainer.sample_prompts

    def spy(anchor, energy_fn, **kwargs):
        seen["init"] = kwargs.get("init_offset")
        return original(anchor, energy_fn, **kwargs)

    trainer.sample_prompts = spy
    trainer.compute_loss(images, labels)
    assert torch.equal(seen["init"], first) and not torch.equal(trainer.persistent_offsets[0], first)
    assert trainer.resume_state()["persistent_offsets"] is trainer.persistent_offsets
    fresh = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_STEPS", 1, "TRAINER.EMPL.PERSISTENT", False)
    fresh.batch_idx = 1
    fresh.compute_loss(images, labels)
    assert fresh.persistent_offsets is None


def test_sgld_diagnostics_tool_measures_each_setting(synthetic_root, tmp_path):
    """tools/sgld_diagnostics.py on the tiny CLIP: one row per setting; a colder energy pulls the
    chains further below the prior-only chains (more negative z) on the same batches and noise."""
    import io

    from tools import sgld_diagnostics

    out = io.StringIO()
    rc = sgld_diagnostics.main(["--trainer", "EMPL_CoOp", "--cfg", "tiny", "--dataset", "synthetic_shapes",
                                "--root", str(synthetic_root), "--shots", "2", "--batches", "1", "--repeats", "1",
                                "--output-dir", str(tmp_path / "diag"), "--points",
                                "TRAINER.EMPL.ENERGY_TEMP 1.0", "TRAINER.EMPL.ENERGY_TEMP 0.01"], out=out)
    assert rc == 0
    rows = [line.split(" | ") for line in out.getvalue().splitlines() if line.startswith("| TRAINER")]
    assert len(rows) == 2
    z_warm, z_cold = (float(row[1]) for row in rows)
    assert z_cold < z_warm and z_cold < 0


def test_two_stage_training_starts_from_the_host_runs_last_epoch(build_tiny_trainer, tmp_path):
    """TRAINER.EMPL.HOST_RUN <folder>: EMPL_CoOp's context starts as the CoOp run's last epoch
    left it (then EMPL trains); a folder without a model, or "auto" outside the driver, is one
    clear error."""
    coop = build_tiny_trainer("CoOp", "configs/trainers/CoOp/tiny.yaml", "TRAINER.COOP.N_CTX", 4,
                              "TRAINER.COOP.CTX_INIT", "a photo of a", output_dir=tmp_path / "coop")
    with torch.no_grad():
        coop.model.prompt_learner.ctx.add_(torch.randn_like(coop.model.prompt_learner.ctx))
    coop.save_model(2, str(tmp_path / "coop"))  # model.pth.tar-3: the last epoch
    empl = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.HOST_RUN", str(tmp_path / "coop"),
                              output_dir=tmp_path / "empl")
    assert not torch.equal(empl.model.prompt_learner.ctx, coop.model.prompt_learner.ctx)
    empl.start_from_host_run(empl.cfg.TRAINER.EMPL.HOST_RUN)
    assert torch.equal(empl.model.prompt_learner.ctx, coop.model.prompt_learner.ctx)
    with pytest.raises(FileNotFoundError, match="holds no model.pth.tar-N"):
        empl.start_from_host_run(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="protocol driver"):
        empl.start_from_host_run("auto")
    sixteen = build_tiny_trainer("CoOp", "configs/trainers/CoOp/tiny.yaml", output_dir=tmp_path / "coop16")
    sixteen.save_model(0, str(tmp_path / "coop16"))
    with pytest.raises(ValueError, match="HOST_RUN must be a training run of the host"):
        empl.start_from_host_run(str(tmp_path / "coop16"))  # 16 context vectors: another prompt
    # A host run of another CLIP with prompts of the same shape is named by its config.yaml.
    (tmp_path / "coop" / "config.yaml").write_text("MODEL:\n  BACKBONE:\n    NAME: RN50\n")
    with pytest.raises(ValueError, match="trained with MODEL.BACKBONE.NAME RN50, this run uses"):
        empl.start_from_host_run(str(tmp_path / "coop"))
    (tmp_path / "coop" / "config.yaml").write_text(f"MODEL:\n  BACKBONE:\n    NAME: {empl.cfg.MODEL.BACKBONE.NAME}\n")
    empl.start_from_host_run(str(tmp_path / "coop"))  # the same CLIP loads


def test_evaluation_runs_test_sgld_steps(build_tiny_trainer):
    """TEST_SGLD_STEPS sets the chains' steps at evaluation (negative: SGLD_STEPS, as training)."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.SGLD_STEPS", 3)
    steps, sample_prompts = [], trainer.sample_prompts

    def spy(anchor, energy_fn, **options):
        steps.append(options.get("n_steps"))
        return sample_prompts(anchor, energy_fn, **options)

    trainer.sample_prompts = spy
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer, 2)
    for value, expected in ((2, 2), (-1, 3)):
        trainer.cfg.defrost()
        trainer.cfg.TRAINER.EMPL.TEST_SGLD_STEPS = value
        trainer.cfg.TRAINER.EMPL.INFERENCE = "sample"
        trainer.cfg.freeze()
        steps.clear()
        trainer.clear_eval_cache()
        with torch.no_grad():
            trainer.model_inference(images)
        assert steps and set(steps) == {expected}, (value, steps)


def test_top_k_samples_each_image_on_its_anchors_best_classes(build_tiny_trainer):
    """TEST_TOP_K k: each image's prediction ranks only the anchors' k best classes for it (the
    samples re-rank them); the other classes stay below, and the prediction still depends on its
    image alone."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.TEST_TOP_K", 2)
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer, 6)
    with torch.no_grad():
        trainer.clear_eval_cache()
        out = trainer.model_inference(images)
        anchor_logits = trainer.model(images)  # CoOp's forward on the anchor
        trainer.clear_eval_cache()
        alone = trainer.model_inference(images[:1].repeat(2, 1, 1, 1))  # image 0 in a batch of 2
    floor = torch.finfo(out.dtype).min
    kept = out > floor
    assert out.shape == anchor_logits.shape and bool((kept.sum(1) == 2).all())
    assert torch.equal(kept.nonzero()[:, 1].view(-1, 2).sort(1).values, anchor_logits.topk(2, 1).indices.sort(1).values)
    assert torch.isfinite(out[kept]).all() and (out[kept] <= 0).all()  # log-probabilities of the mixture
    # Another batch size is another shape (other kernels on some CPUs): equal up to float32 rounding.
    torch.testing.assert_close(alone[0], out[0], atol=1e-5, rtol=0)


def test_top_k_is_read_by_per_image_sampling_only(build_tiny_trainer):
    """TEST_TOP_K applies to INFERENCE sample (trainers/empl_config.py): batch-conditioned
    sampling predicts on every class and builds no top-k features (a config may set the key for
    its sample mode)."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.TEST_TOP_K", 2,
                                 "TRAINER.EMPL.INFERENCE", "sample_batch")
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer, 6)
    with torch.no_grad():
        trainer.clear_eval_cache()
        out = trainer.model_inference(images)
    assert trainer._eval_cache.anchor_features is None
    assert bool((out > torch.finfo(out.dtype).min).all()) and torch.isfinite(out).all()


def test_top_k_without_chains_ranks_the_anchors_best_classes_by_the_anchor(build_tiny_trainer):
    """TEST_TOP_K with N_CHAINS 0: no samples, so each image's k best classes keep the anchor's
    own log-probabilities among them (before the fix, the first k classes' values were written
    into the top-k places: 26% base accuracy on benchmark v5 where the anchor scores 79%)."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_COOP, "TRAINER.EMPL.TEST_TOP_K", 2, "TRAINER.EMPL.N_CHAINS", 0)
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer, 6)
    with torch.no_grad():
        trainer.clear_eval_cache()
        out = trainer.model_inference(images)
        anchor_logits = trainer.model(images)
    top = anchor_logits.topk(2, 1).indices
    torch.testing.assert_close(out.gather(1, top), F.log_softmax(anchor_logits.gather(1, top), 1))
    assert torch.equal(out.argmax(1), anchor_logits.argmax(1))
    assert bool((out.scatter(1, top, torch.finfo(out.dtype).min) == torch.finfo(out.dtype).min).all())


def prompt_shape(host: str, cfg) -> tuple:
    """What decides the shape of a host's learned prompts, which EMPL loads from the host's run:
    CoOp's and ProDA's context is CTX_INIT's tokens when set (N_CTX and CSC then unused), else
    N_CTX tokens (per class with CSC); MaPLe's is N_CTX tokens at PROMPT_DEPTH."""
    if host == "MaPLe":
        node = cfg.TRAINER.MAPLE
        return node.N_CTX, node.PROMPT_DEPTH
    node = cfg.TRAINER.COOP if host == "CoOp" else cfg.TRAINER.PRODA
    context = ("words", node.CTX_INIT) if node.CTX_INIT else ("tokens", node.N_CTX, host == "CoOp" and node.CSC)
    return (*context, node.CLASS_TOKEN_POSITION) if host == "CoOp" else (*context, node.N_PROMPTS)


def test_every_shipped_two_stage_config_plans_a_host_with_its_prompts(tmp_path):
    """A shipped config with HOST_RUN auto: the protocol driver's host run (from HOST_CONFIG or
    the host's own config) has EMPL's backbone and prompt shape (EMPL_ProDA's real configs name
    ProDA(x4), not the paper's 32-prompt ProDA that the config name alone would give)."""
    import launch
    from tools import protocols

    def resolved(trainer, path):
        return launch.config_from_argv(["--trainer", trainer, "--config-file", path])

    checked = []
    for path in shipped_empl_configs():
        trainer, name = os.path.basename(os.path.dirname(path)), os.path.splitext(os.path.basename(path))[0]
        if str(protocols.config_value(path, [], "TRAINER.EMPL.HOST_RUN")) != protocols.HOST_RUN_AUTO:
            continue
        bundled = name.startswith("bundled")
        transfer = name.endswith("_xd") or "cross_datasets" in name
        protocol = "cross_dataset" if transfer else "base2new"
        datasets = [] if transfer else ["world_aerial" if bundled else "eurosat"]
        source = "world_net" if bundled else protocols.DEFAULT_SOURCE
        runs = protocols.plan_protocol(protocol, trainer, datasets, [1], "/d", str(tmp_path), cfg=name, source=source)
        training = next(r for r in runs if r.trainer == trainer and not r.eval_only)
        host = training.depends_on
        assert host is not None and host.trainer == protocols.host_trainer(trainer), path
        empl_cfg = resolved(trainer, path)
        host_cfg = resolved(host.trainer, protocols.config_path(host.trainer, host.cfg))
        assert host_cfg.MODEL.BACKBONE.NAME == empl_cfg.MODEL.BACKBONE.NAME, (path, host.cfg)
        assert prompt_shape(host.trainer, host_cfg) == prompt_shape(host.trainer, empl_cfg), (path, host.cfg)
        checked.append(f"{trainer}/{name}")
    # the bundled configs of both EMPL trainers and the real-data ones of EMPL_CoOp and EMPL_ProDA
    assert {"EMPL_CoOp/bundled", "EMPL_ProDA/bundled", "EMPL_CoOp/vit_b16_ep50_ctxv1",
            "EMPL_ProDA/vit_b16_ep50", "EMPL_ProDA/rn50_ep10_cross_datasets"} <= set(checked), checked
