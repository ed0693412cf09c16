"""KgCoOp on the tiny CLIP: its loss against an independent computation, the frozen template
features, which tensors learn, W = 0 as CoOp, training, half precision and config checks.

The logits, loss and ctx gradient against the reference code: tools/check_reference_parity.py
--kgcoop-repo (docs).
"""
import types

import pytest
import torch

from conftest import assert_gradients_reach_only, fixed_batch
from test_clip_backbone import reference_text_features
from trainers import kgcoop
from trainers.class_prompts import clean_classname
from trainers.clip_backbone import autocast_dtype, l2_normalize, tokenize

KGCOOP = "configs/trainers/KgCoOp/tiny.yaml"  # CTX_INIT "a photo of a", W 8.0
COOP = "configs/trainers/CoOp/tiny.yaml"
# SyntheticShapes names no template of its own and is not in the reference's table.
TEMPLATE = "a photo of a {}."


def move_context(trainer, scale=0.1):
    """Move ctx away from its init, so the learned prompts differ from the hand-written ones
    (with CTX_INIT "a photo of a" and this template they start equal: the kg term is 0)."""
    ctx = trainer.model.prompt_learner.ctx
    with torch.no_grad():
        ctx.add_(scale * torch.randn(ctx.shape, generator=torch.Generator().manual_seed(0)))


def clip_template_features(clip_model, classnames, template=TEMPLATE):
    """CLIP's own encode_text of the filled template, normalised: [C, D]."""
    with torch.no_grad():
        return l2_normalize(clip_model.encode_text(tokenize([template.format(clean_classname(c)) for c in classnames])))


def test_loss_is_cross_entropy_plus_w_times_the_knowledge_guided_distance(build_tiny_trainer, tiny_clip):
    trainer = build_tiny_trainer("KgCoOp", KGCOOP, "TRAINER.COOP.W", 2.5)
    move_context(trainer)
    images, labels = fixed_batch(trainer)
    loss, logits, extras = trainer.compute_loss(images, labels)

    learner = trainer.model.prompt_learner
    with torch.no_grad():  # by hand, through CLIP's own modules
        text = l2_normalize(reference_text_features(tiny_clip, learner(), learner.tokenized_prompts))
        frozen = clip_template_features(tiny_clip, trainer.dm.dataset.classnames)
        image = l2_normalize(tiny_clip.encode_image(images))
        expected_logits = tiny_clip.logit_scale.exp() * image @ text.t()
        ce = -expected_logits.log_softmax(dim=-1)[torch.arange(len(labels)), labels].mean()
        # The reference's 1 - mean cos is, for unit vectors, half the mean squared distance.
        kg = ((text - frozen) ** 2).sum(dim=-1).mean() / 2
    assert kg > 1e-3  # the moved context really is away from the template
    assert torch.allclose(logits, expected_logits, atol=1e-4)
    assert extras["loss_ce"] == pytest.approx(ce.item(), abs=1e-5)
    assert extras["loss_kg"] == pytest.approx(kg.item(), abs=1e-5)
    assert loss.item() == pytest.approx(ce.item() + 2.5 * kg.item(), abs=1e-4)


def test_frozen_features_are_clip_template_features_and_stay_frozen(build_tiny_trainer, tiny_clip):
    trainer = build_tiny_trainer("KgCoOp", KGCOOP, "OPTIM.LR", 0.5, "OPTIM.WARMUP_EPOCH", -1)
    model = trainer.model
    assert model.template == TEMPLATE
    expected = clip_template_features(tiny_clip, trainer.dm.dataset.classnames)
    frozen = model.frozen_text_features().clone()
    assert torch.allclose(frozen, expected, atol=1e-5)
    assert not frozen.requires_grad
    # With the words of the template as the context, the learned prompts start as the frozen ones.
    assert torch.allclose(model.class_text_features(), frozen, atol=1e-5)

    images, labels = fixed_batch(trainer)
    trainer.set_model_mode("train")
    trainer.model_zero_grad()
    trainer.compute_loss(images, labels)[0].backward()
    trainer.model_update()
    assert torch.equal(model.frozen_text_features(), frozen)
    assert not torch.allclose(model.class_text_features(), frozen, atol=1e-5)  # the prompts moved
    # Computed from the class names at build time, never checkpointed.
    assert not any("clip_text_features" in key for key in model.state_dict())


def test_templates_follow_the_reference_and_a_dataset_may_name_its_own():
    assert kgcoop.kgcoop_template("OxfordPets") == "a photo of a {}, a type of pet."
    assert kgcoop.kgcoop_template("DescribableTextures") == "a photo of a {}, a type of texture."  # not CoOp's
    assert kgcoop.kgcoop_template("WorldObjects") == "a photo of a {}."
    stub = types.SimpleNamespace(cfg=types.SimpleNamespace(DATASET=types.SimpleNamespace(NAME="EuroSAT")),
                                 dm=types.SimpleNamespace(dataset=types.SimpleNamespace()))
    assert kgcoop.KgCoOp.template(stub) == "a centered satellite photo of {}."
    stub.dm.dataset.zero_shot_template = "a photo of a {} pattern."
    assert kgcoop.KgCoOp.template(stub) == "a photo of a {} pattern."


def test_gradients_reach_only_the_context(build_tiny_trainer):
    trainer = build_tiny_trainer("KgCoOp", KGCOOP)
    move_context(trainer)
    learned = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert learned == {"prompt_learner.ctx"}
    assert_gradients_reach_only(trainer, learned, *fixed_batch(trainer))


def test_w_zero_is_coop(build_tiny_trainer):
    words = ("TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CTX_INIT", "a photo of a")
    kg = build_tiny_trainer("KgCoOp", KGCOOP, "TRAINER.COOP.W", 0.0)
    coop = build_tiny_trainer("CoOp", COOP, *words)
    move_context(kg), move_context(coop)
    assert torch.equal(kg.model.prompt_learner.ctx, coop.model.prompt_learner.ctx)
    images, labels = fixed_batch(kg)
    kg_loss, kg_logits, extras = kg.compute_loss(images, labels)
    coop_loss, coop_logits = coop.compute_loss(images, labels)
    assert extras["loss_kg"] > 1e-3  # the term is there, weighted 0
    assert torch.allclose(kg_logits, coop_logits, atol=1e-6)
    assert kg_loss.item() == pytest.approx(coop_loss.item(), abs=1e-6)
    kg_loss.backward(), coop_loss.backward()
    assert torch.allclose(kg.model.prompt_learner.ctx.grad, coop.model.prompt_learner.ctx.grad, atol=1e-6)


def test_the_knowledge_guided_term_keeps_the_prompts_near_clip(build_tiny_trainer):
    """Ten steps from a random context: with W 4 the learned features end closer to the frozen
    ones than with W = 0 (there they drift away), and the loss goes down."""
    distances = {}
    for weight in (0.0, 4.0):
        trainer = build_tiny_trainer("KgCoOp", KGCOOP, "TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.W", weight,
                                     "OPTIM.LR", 0.005, "OPTIM.WARMUP_EPOCH", -1)
        images, labels = fixed_batch(trainer)
        trainer.set_model_mode("train")
        losses = []
        for _ in range(10):
            loss, _, extras = trainer.compute_loss(images, labels)
            losses.append(loss.item())
            trainer.model_zero_grad()
            loss.backward()
            trainer.model_update()
        assert losses[-1] < losses[0]
        with torch.no_grad():
            distances[weight] = kgcoop.knowledge_guided_distance(
                trainer.model.class_text_features(), trainer.model.frozen_text_features()).item()
    assert distances[4.0] < distances[0.0] / 2


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_half_precision_step(build_tiny_trainer, prec):
    """PREC fp16: the frozen features are half, as the frozen CLIP (and the reference's); amp:
    computed under autocast at build time, as the learned features. The loss is finite and the
    context moves."""
    trainer = build_tiny_trainer("KgCoOp", KGCOOP, "TRAINER.COOP.PREC", prec, "MODEL.BACKBONE.HALF_ON_CPU", True,
                                 "OPTIM.LR", 0.5, "OPTIM.WARMUP_EPOCH", -1)
    move_context(trainer)
    before = trainer.model.prompt_learner.ctx.detach().clone()
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches = 0, 2
    for _ in range(5):  # amp: the GradScaler may skip its first steps
        summary = trainer.forward_backward(batch)
        if not torch.equal(trainer.model.prompt_learner.ctx, before):
            break
    frozen_dtype = torch.float16 if prec == "fp16" else autocast_dtype("cpu")
    assert trainer.model.frozen_text_features().dtype == frozen_dtype
    assert trainer.model.prompt_learner.ctx.dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(summary[k])) for k in ("loss", "loss_ce", "loss_kg"))
    assert not torch.equal(trainer.model.prompt_learner.ctx, before)


def test_negative_weight_is_a_clear_error(build_tiny_trainer):
    with pytest.raises(ValueError, match="TRAINER.COOP.W"):
        build_tiny_trainer("KgCoOp", KGCOOP, "TRAINER.COOP.W", -1.0)


def test_a_checkpoint_in_the_reference_layout_loads(build_tiny_trainer, tmp_path):
    """The reference saves ctx, token_prefix, token_suffix and its unused bias_vectors and
    meta_net (Linear 512 -> 512) in the prompt learner; its ctx is what loads."""
    trainer = build_tiny_trainer("KgCoOp", KGCOOP, output_dir=tmp_path / "ours")
    move_context(trainer)
    trainer.save_model(0, str(tmp_path / "reference"))
    path = tmp_path / "reference" / "prompt_learner" / "model.pth.tar-1"
    checkpoint = torch.load(path, weights_only=False)
    learner = trainer.model.prompt_learner
    checkpoint["state_dict"] = {
        "ctx": learner.ctx.detach().clone(),
        "bias_vectors": torch.randn(1, 512),
        "token_prefix": learner.classes.token_prefix.clone(),
        "token_suffix": learner.classes.token_suffix.clone(),
        "meta_net.linear1.weight": torch.randn(512, 512),
        "meta_net.linear1.bias": torch.randn(512),
    }
    torch.save(checkpoint, path)
    fresh = build_tiny_trainer("KgCoOp", KGCOOP, output_dir=tmp_path / "fresh")
    assert not torch.equal(fresh.model.prompt_learner.ctx, learner.ctx)
    fresh.load_model(str(tmp_path / "reference"), epoch=1)
    assert torch.equal(fresh.model.prompt_learner.ctx, learner.ctx)
