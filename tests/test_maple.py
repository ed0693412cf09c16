"""MaPLe and EMPL_MaPLe on the tiny CLIP (4 text blocks, 2 vision blocks; tiny.yaml: depth 2)
against computations through CLIP's own modules."""
import pytest
import torch

from conftest import assert_gradients_reach_only, fixed_batch
from deep_prompt_reference import perturb_learned, prompted_features
from trainers import class_prompts, clip_encoders
from trainers import clip_backbone as cb

MAPLE = "configs/trainers/MaPLe/tiny.yaml"
EMPL_MAPLE = "configs/trainers/EMPL_MaPLe/tiny.yaml"


def independent_maple_logits(clip_model, learner, images):
    """MaPLe's logits through CLIP's own blocks (deep_prompt_reference): deep text prompts written
    in place at blocks 1..depth-1; the vision prompts, proj(ctx) and the couplings of the deep
    text prompts, appended after the patch tokens and replaced likewise."""
    depth = learner.prompt_depth
    with torch.no_grad():
        text_deep = {i: learner.compound_prompts_text[i - 1] for i in range(1, depth)}
        vision_deep = {i: learner.compound_prompt_projections[i - 1](learner.compound_prompts_text[i - 1])
                       for i in range(1, depth)}
        text, image = prompted_features(clip_model, learner(), learner.tokenized_prompts, text_deep, images,
                                        learner.proj(learner.ctx), vision_deep)
    return clip_model.logit_scale.exp() * image @ text.t()


@pytest.fixture(scope="module")
def maple(build_tiny_trainer):
    trainer = build_tiny_trainer("MaPLe", MAPLE)
    perturb_learned(trainer.model.prompt_learner)
    return trainer


def test_vision_encoder_without_prompts_is_clip_visual(tiny_clip):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(clip_encoders.VisionEncoder(tiny_clip.visual)(images), tiny_clip.visual(images), atol=1e-5)


def test_learner_shapes_and_context_from_words(maple, tiny_clip):
    learner = maple.model.prompt_learner
    assert learner.prompt_prefix == "a photo of a" and learner.n_ctx == 2
    assert learner.ctx.shape == (2, 64) and len(learner.compound_prompts_text) == 1
    assert learner.compound_prompts_text[0].shape == (2, 64)
    assert learner.proj.out_features == 64 and len(learner.compound_prompt_projections) == 1
    # As in the reference: "a photo" is learned, "of a <class>." stays in the frozen suffix.
    fresh = class_prompts.word_embeddings(tiny_clip, "a photo of a")
    words = class_prompts.ClassPrompts(tiny_clip, ["circle"], "a photo of a", 2)
    assert torch.allclose(words.token_suffix[0, :2], fresh[2:4])
    assert learner().shape == (learner.n_cls, 77, 64)


def test_logits_match_clips_own_blocks_with_prompts(maple, tiny_clip):
    images, _ = fixed_batch(maple)
    with torch.no_grad():
        logits = maple.model(images)
    assert logits.shape == (len(images), maple.dm.num_classes)
    expected = independent_maple_logits(tiny_clip, maple.model.prompt_learner, images)
    assert torch.allclose(logits, expected, atol=1e-4)


def test_truncated_text_equals_full_length_run(maple):
    model, learner = maple.model, maple.model.prompt_learner
    with torch.no_grad():
        prompts = learner()
        eot = clip_encoders.eot_positions(learner.tokenized_prompts)
        assert int(eot.max()) + 1 < 77  # the model does cut the sequences
        encoder = model.text_encoder
        full = encoder.run_blocks(encoder.embed(prompts), deep_prompts=learner.text_deep_prompts())  # all 77 tokens
        full = cb.l2_normalize(encoder.final_features(full, eot))
        assert torch.allclose(model.class_text_features(), full, atol=1e-5)


def test_deep_prompts_and_couplings_change_their_branch(build_tiny_trainer):
    shallow = build_tiny_trainer("MaPLe", MAPLE, "TRAINER.MAPLE.PROMPT_DEPTH", 1)
    deep = build_tiny_trainer("MaPLe", MAPLE)
    assert len(shallow.model.prompt_learner.compound_prompts_text) == 0
    with torch.no_grad():  # same shallow tensors on both
        deep.model.prompt_learner.ctx.copy_(shallow.model.prompt_learner.ctx)
        deep.model.prompt_learner.proj.load_state_dict(shallow.model.prompt_learner.proj.state_dict())
    images, _ = fixed_batch(deep)
    model, learner = deep.model, deep.model.prompt_learner
    with torch.no_grad():
        assert (model(images) - shallow.model(images)).abs().max() > 1e-3
        text, image = model.class_text_features(), model.encode_image(images)
        # (Random changes: a constant shift of a token would vanish in the next LayerNorm.)
        noise = torch.Generator().manual_seed(3)
        prompt = learner.compound_prompts_text[0]
        # Block 1's text prompt: both branches move.
        prompt.add_(0.5 * torch.randn(prompt.shape, generator=noise))
        assert (model.class_text_features() - text).abs().max() > 1e-3
        assert (model.encode_image(images) - image).abs().max() > 1e-3
        text, image = model.class_text_features(), model.encode_image(images)
        coupling = learner.compound_prompt_projections[0].weight
        coupling.add_(0.5 * torch.randn(coupling.shape, generator=noise))  # a coupling: the image side only
        assert torch.equal(model.class_text_features(), text)
        assert (model.encode_image(images) - image).abs().max() > 1e-3


def test_gradients_reach_every_prompt_tensor_and_nothing_frozen(build_tiny_trainer):
    trainer = build_tiny_trainer("MaPLe", MAPLE)
    learned = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert learned == {
        "prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias",
        "prompt_learner.compound_prompts_text.0",
        "prompt_learner.compound_prompt_projections.0.weight", "prompt_learner.compound_prompt_projections.0.bias",
    }
    trainer.set_model_mode("train")
    assert_gradients_reach_only(trainer, learned, *fixed_batch(trainer))


def test_one_step_lowers_the_loss(build_tiny_trainer):
    trainer = build_tiny_trainer("MaPLe", MAPLE, "OPTIM.LR", 0.05, "OPTIM.WARMUP_EPOCH", -1)
    images, labels = fixed_batch(trainer)
    trainer.set_model_mode("train")
    loss_before, _ = trainer.compute_loss(images, labels)
    trainer.model_zero_grad()
    loss_before.backward()
    trainer.model_update()
    with torch.no_grad():
        loss_after, _ = trainer.compute_loss(images, labels)
    assert loss_after < loss_before


def test_eval_caches_text_features_per_evaluation(maple):
    images, _ = fixed_batch(maple, 4)
    maple.set_model_mode("eval")
    maple.clear_eval_cache()
    with torch.no_grad():
        logits = maple.model_inference(images)
        assert torch.allclose(logits, maple.model(images), atol=1e-6)
        assert torch.equal(maple._eval_cache.text_features, maple.model.class_text_features())
    maple.clear_eval_cache()


def test_save_then_load_reproduces_eval_logits(build_tiny_trainer, tmp_path):
    trainer = build_tiny_trainer("MaPLe", MAPLE, output_dir=tmp_path / "a")
    perturb_learned(trainer.model.prompt_learner)
    trainer.save_model(2, str(tmp_path / "a"))
    images, _ = fixed_batch(trainer)
    trainer.set_model_mode("eval")
    expected = trainer.model_inference(images)
    fresh = build_tiny_trainer("MaPLe", MAPLE, output_dir=tmp_path / "b")
    assert not torch.allclose(fresh.model_inference(images), expected)
    fresh.load_model(str(tmp_path / "a"), epoch=3)
    fresh.set_model_mode("eval")  # load_model dropped the text features cached before it
    assert torch.allclose(fresh.model_inference(images), expected)


@pytest.mark.parametrize(
    "opts, message",
    [
        (("TRAINER.MAPLE.PROMPT_DEPTH", 3), r"PROMPT_DEPTH must be in 1\.\.2"),  # tiny ViT: 2 vision blocks
        (("TRAINER.MAPLE.PROMPT_DEPTH", 0), "PROMPT_DEPTH must be >= 1"),
        (("TRAINER.MAPLE.CTX_INIT", "a photo", "TRAINER.MAPLE.N_CTX", 3), "CTX_INIT"),
        (("TRAINER.MAPLE.PREC", "bf16"), "PREC"),
    ],
)
def test_bad_config_is_a_clear_error(build_tiny_trainer, opts, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_trainer("MaPLe", MAPLE, *opts)


# ---------------------------------------------------------------------------- EMPL_MaPLe
def test_empl_maple_without_sampling_is_maple(build_tiny_trainer):
    empl = build_tiny_trainer("EMPL_MaPLe", EMPL_MAPLE, "TRAINER.EMPL.N_CHAINS", 0, "TRAINER.EMPL.OPEN_LOSS_WEIGHT", 0.0)
    maple = build_tiny_trainer("MaPLe", MAPLE)
    perturb_learned(empl.model.prompt_learner)
    weights = empl.model.prompt_learner.state_dict()
    del weights["calibration_features"]  # EMPL's amortized-mode condition, not a MaPLe weight
    maple.model.prompt_learner.load_state_dict(weights)
    images, labels = fixed_batch(empl)
    loss_empl, _, _ = empl.compute_loss(images, labels)
    loss_maple, _ = maple.compute_loss(images, labels)
    assert loss_empl.item() == pytest.approx(loss_maple.item(), abs=1e-5)
    # The vision prompts learn through EMPL's loss too.
    empl.model_zero_grad()
    loss_empl.backward()
    assert empl.model.prompt_learner.compound_prompt_projections[0].weight.grad.abs().sum() > 0
    assert empl.model.prompt_learner.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_split_text_with_anchor_states_is_maples_text_side(build_tiny_trainer, layers):
    trainer = build_tiny_trainer("EMPL_MaPLe", EMPL_MAPLE, "TRAINER.EMPL.SGLD_LAYERS", layers)
    learner = trainer.model.prompt_learner
    perturb_learned(learner)
    with torch.no_grad():
        hidden, eot = trainer.prefix_states([learner.classes])
        feats, _, _ = trainer.sampled_features(hidden, eot, None, sample=False)
        assert torch.allclose(feats[0, 0], trainer.model.class_text_features(), atol=1e-5)
        if layers == 3:  # split at block 1, which has a deep prompt: it is the anchor H itself
            anchor = trainer.split_text.context_states(hidden[0, 0])
            assert torch.allclose(anchor, learner.compound_prompts_text[0])


def test_empl_maple_rejects_deep_prompts_inside_the_sampled_blocks(build_tiny_trainer):
    # SGLD_LAYERS 4 samples token embeddings (block 0), but block 1 has a MaPLe deep prompt.
    with pytest.raises(ValueError, match="deep text prompts up to block 1"):
        build_tiny_trainer("EMPL_MaPLe", EMPL_MAPLE, "TRAINER.EMPL.SGLD_LAYERS", 4)
