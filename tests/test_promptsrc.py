"""PromptSRC on the tiny CLIP (4 text blocks, 2 vision blocks; tiny.yaml: text prompts at blocks
0-2, vision prompts at blocks 0-1): its features and each loss term against computations through
CLIP's own modules, the GPA schedule and aggregation (also across a resume), gradients, reference
checkpoints, and the half-precision path."""
import contextlib
import io
import math

import pytest
import torch

from conftest import fixed_batch
from deep_prompt_reference import perturb_learned, prompted_features
from trainers import class_prompts
from trainers import clip_backbone as cb
from trainers import promptsrc
from trainers.imagenet_templates import IMAGENET_TEMPLATES

TINY = "configs/trainers/PromptSRC/tiny.yaml"
# Few images and no final test: 2 batches per epoch.
FAST = ["DATASET.NUM_SHOTS", 2, "TEST.NO_TEST", True]


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def learned(trainer):
    return {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def src(build_tiny_trainer):
    trainer = quiet(build_tiny_trainer, "PromptSRC", TINY)
    perturb_learned(trainer.model.prompt_learner)
    return trainer


def independent_features(clip_model, cfg, learner, images):
    """Normalised prompted (text [C, D], image [B, D]) through CLIP's own blocks
    (deep_prompt_reference): the text context in the prompt, deep text prompts written over the
    context positions at blocks 1 .. PROMPT_DEPTH_TEXT - 1; the vision prompts appended after the
    patch tokens and written over at blocks 1 .. PROMPT_DEPTH_VISION - 1."""
    text_depth, vision_depth = cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT, cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION
    assert set(learner.deep_text_prompts) == {str(i) for i in range(1, text_depth)}
    assert set(learner.deep_vision_prompts) == {str(i) for i in range(1, vision_depth)}
    text_deep = {i: learner.deep_text_prompts[str(i)] for i in range(1, text_depth)}
    vision_deep = {i: learner.deep_vision_prompts[str(i)] for i in range(1, vision_depth)}
    with torch.no_grad():
        return prompted_features(clip_model, learner(), learner.tokenized_prompts, text_deep, images,
                                 learner.vision_ctx, vision_deep)


@pytest.fixture(scope="module")
def frozen_text(src, tiny_clip):
    """clip_model.encode_text of every class in each of the reference's 60 templates, averaged over
    the templates, then normalised: [C, D] (one call: CLIP's 77-token text path is the slow part)."""
    names = [c.replace("_", " ") for c in src.dm.dataset.classnames]
    templates = promptsrc.PROMPTSRC_TEMPLATES
    with torch.no_grad():
        features = tiny_clip.encode_text(cb.tokenize([t.replace("{}", n) for t in templates for n in names]))
    return cb.l2_normalize(features.view(len(templates), len(names), -1).mean(dim=0))


# --------------------------------------------------------------------------- features and losses
def test_templates_are_the_references_60():
    templates = promptsrc.PROMPTSRC_TEMPLATES
    assert len(templates) == len(set(templates)) == 60 and templates[0] == "a photo of a {}."
    assert set(templates) <= set(IMAGENET_TEMPLATES) and all("{}" in t for t in templates)


def test_learner_shapes_and_context_from_words(src, tiny_clip):
    learner = src.model.prompt_learner
    assert learner.prompt_prefix == "a photo of a" and learner.n_ctx == 4
    shapes = {n: tuple(p.shape) for n, p in learner.named_parameters()}
    assert shapes == {"ctx": (4, 64), "vision_ctx": (4, 64), "deep_text_prompts.1": (4, 64),
                      "deep_text_prompts.2": (4, 64), "deep_vision_prompts.1": (4, 64)}
    fresh = quiet(promptsrc.CustomCLIP, src.cfg, ["circle"], tiny_clip).prompt_learner
    assert torch.allclose(fresh.ctx, class_prompts.word_embeddings(tiny_clip, "a photo of a"))  # all 4 tokens learned
    assert all(p.dtype == cb.LEARNED_DTYPE for p in learner.parameters())


def test_frozen_features_are_the_frozen_clips(src, tiny_clip, frozen_text):
    """Template-averaged text features and unprompted image features of the same CLIP, whatever
    the prompts are."""
    images, _ = fixed_batch(src)
    model = src.model
    assert torch.allclose(model.frozen_text_features, frozen_text, atol=1e-5)
    with torch.no_grad():
        expected_image = cb.l2_normalize(tiny_clip.encode_image(images))
        assert torch.allclose(model.frozen_image_features(images), expected_image, atol=1e-5)
        prompted = model.encode_image(images)
    assert (prompted - expected_image).abs().max() > 1e-3  # the prompts do change the image side


def test_logits_and_each_loss_match_an_independent_computation(src, tiny_clip, frozen_text):
    images, labels = fixed_batch(src)
    model, cfg = src.model, src.cfg
    logits, losses = model.training_losses(images, labels)
    assert set(losses) == {"loss_ce", "loss_scl_text", "loss_scl_image", "loss_scl_logits"}

    text, image = independent_features(tiny_clip, cfg, model.prompt_learner, images)
    with torch.no_grad():
        frozen_image = cb.l2_normalize(tiny_clip.encode_image(images))
    scale = tiny_clip.logit_scale.exp()
    expected_logits = scale * image @ text.t()
    frozen_logits = scale * frozen_image @ frozen_text.t()
    assert torch.allclose(logits, expected_logits, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(src.model_inference(images), expected_logits, atol=1e-4)  # evaluation path

    def log_softmax(z):
        top = z.max(1, keepdim=True).values
        return z - top - torch.log(torch.exp(z - top).sum(1, keepdim=True))

    n_batch, n_cls = logits.shape
    log_p, log_q = log_softmax(expected_logits), log_softmax(frozen_logits)
    expected = {
        "loss_ce": -log_p[torch.arange(n_batch), labels].mean(),
        "loss_scl_text": 25 * (text - frozen_text).abs().sum() / text.numel(),
        "loss_scl_image": 10 * (image - frozen_image).abs().sum() / image.numel(),
        # KL(frozen || prompted) summed over batch and classes, divided by B * C (not by B)
        "loss_scl_logits": (log_q.exp() * (log_q - log_p)).sum() / (n_batch * n_cls),
    }
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
    assert losses["loss_scl_logits"] > 0 and losses["loss_scl_text"] > 0 and losses["loss_scl_image"] > 0

    loss, out, extras = src.compute_loss(images, labels)
    assert loss.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-4)
    assert torch.equal(out, logits) and extras == {k: v.item() for k, v in losses.items()}


def test_only_the_prompt_learner_gets_gradients(src):
    images, labels = fixed_batch(src)
    model = src.model
    model.zero_grad(set_to_none=True)
    loss, _, _ = src.compute_loss(images, labels)
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable == {f"prompt_learner.{n}" for n, _ in model.prompt_learner.named_parameters()}
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in with_grad)
    assert not model.frozen_text_features.requires_grad
    assert not model.frozen_image_features(images).requires_grad
    assert set(src.optim.param_groups[0]["params"]) == set(model.prompt_learner.parameters())
    model.zero_grad(set_to_none=True)


def test_each_regularizer_pulls_its_own_prompts(src):
    """The text L1 term reaches only text prompts, the image L1 term only vision prompts."""
    images, labels = fixed_batch(src)
    learner = src.model.prompt_learner
    for term, branch, other in (("loss_scl_text", "text", "vision"), ("loss_scl_image", "vision", "text")):
        learner.zero_grad(set_to_none=True)
        _, losses = src.model.training_losses(images, labels)
        losses[term].backward()
        grads = {n: p.grad for n, p in learner.named_parameters()}
        mine = [n for n in grads if (branch == "text") == (n == "ctx" or "text" in n)]
        assert mine and all(grads[n] is not None and grads[n].abs().sum() > 0 for n in mine), term
        assert all(grads[n] is None for n in grads if n not in mine), (term, other)
    learner.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- GPA
@pytest.mark.parametrize("n_epochs, mean, std", [(20, 15, 1), (20, 6, 10), (50, 45, 5), (5, 4, 1), (3, 2, 1)])
def test_gpa_weights_follow_the_gaussian_and_sum_to_one(n_epochs, mean, std):
    weights = promptsrc.gpa_weights(n_epochs, mean, std)
    gauss = [math.exp(-((e - mean) ** 2) / (2 * std**2)) for e in range(1, n_epochs + 1)]
    assert len(weights) == n_epochs and sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert weights == pytest.approx([g / sum(gauss) for g in gauss], rel=1e-9, abs=1e-300)
    if mean <= n_epochs:
        assert max(range(n_epochs), key=weights.__getitem__) == mean - 1  # peak at epoch GPA_MEAN (1-based)


def test_gpa_weights_stay_defined_far_from_the_mean():
    weights = promptsrc.gpa_weights(5, 100, 1)  # every pdf value underflows to 0 in float64
    assert sum(weights) == pytest.approx(1.0) and weights[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="GPA_STD"):
        promptsrc.gpa_weights(5, 4, 0)


def test_aggregation_is_the_weighted_average_of_snapshots():
    weights = promptsrc.gpa_weights(3, 2, 1)
    snapshots = [{"a": torch.randn(4, 3), "b": torch.randn(2)} for _ in range(3)]
    gpa = promptsrc.GaussianPromptAggregation(weights)
    for epoch, snapshot in enumerate(snapshots):
        gpa.add(epoch, snapshot)
    for key in ("a", "b"):
        expected = sum(w * s[key] for w, s in zip(weights, snapshots))
        assert torch.allclose(gpa.aggregate()[key], expected, atol=1e-6)
    # Epochs missing (a resume from a checkpoint without GPA state): the rest renormalised.
    partial = promptsrc.GaussianPromptAggregation(weights)
    partial.add(1, snapshots[1])
    partial.add(2, snapshots[2])
    expected = (weights[1] * snapshots[1]["a"] + weights[2] * snapshots[2]["a"]) / (weights[1] + weights[2])
    assert torch.allclose(quiet(partial.aggregate)["a"], expected, atol=1e-6)


def run_three_epochs(build_tiny_trainer, output_dir, interrupt_at=None):
    """Train tiny PromptSRC for 3 epochs (GPA_MEAN 2, GPA_STD 1), recording the prompts GPA adds
    after each epoch; interrupt_at: raise in that epoch (0-based) instead of finishing."""
    trainer = quiet(build_tiny_trainer, "PromptSRC", TINY, "OPTIM.MAX_EPOCH", 3, "TRAINER.PROMPTSRC.GPA_MEAN", 2,
                    "TRAINER.PROMPTSRC.GPA_STD", 1, *FAST, output_dir=output_dir)
    snapshots, add = [], trainer.gpa.add

    def recording_add(epoch, params):
        snapshots.append({n: p.detach().clone() for n, p in params.items()})
        add(epoch, params)

    trainer.gpa.add = recording_add
    if interrupt_at is not None:
        forward_backward = trainer.forward_backward

        def interrupted(batch):
            if trainer.epoch == interrupt_at:
                raise RuntimeError("interrupted")
            return forward_backward(batch)

        trainer.forward_backward = interrupted
    quiet(trainer.train)
    return trainer, snapshots


def test_three_epoch_run_ends_with_the_aggregate_and_resumes_it(build_tiny_trainer, tmp_path):
    trainer, snapshots = run_three_epochs(build_tiny_trainer, tmp_path / "full")
    assert len(snapshots) == 3 and trainer.gpa.epochs == [0, 1, 2]
    weights = [math.exp(-((e - 2) ** 2) / 2) for e in (1, 2, 3)]
    weights = [w / sum(weights) for w in weights]
    final = dict(trainer.model.prompt_learner.named_parameters())
    for name, param in final.items():
        expected = sum(w * s[name] for w, s in zip(weights, snapshots))
        assert torch.allclose(param, expected, atol=1e-6), name
        assert not torch.allclose(param, snapshots[-1][name])  # not the last epoch's prompts
    saved = torch.load(tmp_path / "full" / "prompt_learner" / "model.pth.tar-3", weights_only=False)
    assert all(torch.equal(saved["state_dict"][n], p) for n, p in final.items())  # the checkpoint is the aggregate
    assert saved["trainer_state"]["gpa"]["epochs"] == [0, 1, 2]

    # Killed in epoch 3: the epoch-2 checkpoint holds the running sum, and the resumed run ends
    # with the same aggregate as the uninterrupted one.
    with pytest.raises(RuntimeError, match="interrupted"):
        run_three_epochs(build_tiny_trainer, tmp_path / "resumed", interrupt_at=2)
    resumed, later = run_three_epochs(build_tiny_trainer, tmp_path / "resumed")
    assert resumed.start_epoch == 2 and len(later) == 1 and resumed.gpa.epochs == [0, 1, 2]
    for name, param in resumed.model.prompt_learner.named_parameters():
        assert torch.allclose(param, final[name], atol=1e-6), name


def test_a_reference_checkpoint_loads(build_tiny_trainer, tmp_path):
    """A reference run's folder: VLPromptLearner/model.pth.tar-N holding its whole CustomCLIP."""
    trainer = quiet(build_tiny_trainer, "PromptSRC", TINY)
    learner = trainer.model.prompt_learner
    wanted = {n: torch.randn(p.shape, generator=torch.Generator().manual_seed(i)).half()  # its fp16 ctx
              for i, (n, p) in enumerate(learner.named_parameters())}
    state = {promptsrc.reference_name(n): t for n, t in wanted.items()}
    state.update({"prompt_learner.token_prefix": torch.zeros(3, 1, 64), "logit_scale": torch.tensor(4.6),
                  "prompt_learner.ZS_image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8)})
    (tmp_path / "VLPromptLearner").mkdir()
    torch.save({"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None},
               tmp_path / "VLPromptLearner" / "model.pth.tar-20")
    quiet(trainer.load_model, str(tmp_path), epoch=20)
    for name, param in learner.named_parameters():
        assert torch.equal(param, wanted[name].float()), name
    assert promptsrc.reference_name("deep_vision_prompts.1") == "image_encoder.transformer.resblocks.1.VPT_shallow"
    assert promptsrc.reference_name("deep_text_prompts.2") == "text_encoder.transformer.resblocks.2.VPT_shallow"


def test_depths_are_checked(build_tiny_trainer):
    with pytest.raises(ValueError, match="PROMPT_DEPTH_VISION must be in 0..2"):
        quiet(build_tiny_trainer, "PromptSRC", TINY, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 3)
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT must be >= 1"):
        quiet(build_tiny_trainer, "PromptSRC", TINY, "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 0)


# --------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_half_precision_step_is_finite_and_moves_every_prompt(build_tiny_trainer, prec):
    """PREC fp16 (half CLIP weights) and amp (autocast) run for real on the CPU (HALF_ON_CPU), as
    tests/test_half_precision.py does for the other trainers."""
    trainer = quiet(build_tiny_trainer, "PromptSRC", TINY, "MODEL.BACKBONE.HALF_ON_CPU", True,
                    "TRAINER.PROMPTSRC.PREC", prec)
    assert trainer.prec == prec
    assert trainer.model.image_encoder.conv1.weight.dtype == (torch.float16 if prec == "fp16" else torch.float32)
    images, labels = fixed_batch(trainer)
    before = {n: p.detach().clone() for n, p in learned(trainer).items()}
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 3
    for _ in range(5):  # amp: until the GradScaler takes a step
        summary = trainer.forward_backward({"img": images, "label": labels})
        if all(not torch.equal(before[n], p) for n, p in learned(trainer).items()):
            break
    assert all(math.isfinite(v) for v in summary.values()) and "loss_scl_logits" in summary
    assert all(not torch.equal(before[n], p) for n, p in learned(trainer).items())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in learned(trainer).values())
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(images)
    assert logits.shape == (len(images), trainer.dm.num_classes) and torch.isfinite(logits).all()
