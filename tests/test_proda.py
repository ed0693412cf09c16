"""ProDA as its paper describes it (32 prompts, a prompt mini-batch, mixed class-name positions,
per-dimension covariance, decorrelated context-only prompts) and ProDA(x4), the key defaults, on
the tiny CLIP: prompt layouts, the draw, the loss against hand computations, inference, and
EMPL_ProDA on the paper's host."""
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import ROOT, fixed_batch
from trainers import proda
from trainers.class_prompts import ClassPrompts, word_embeddings
from trainers.clip_backbone import l2_normalize, tokenize
from trainers.multi_prompt_losses import proda_gaussian_bound_loss, prompt_orthogonality

PRODA_TINY = "configs/trainers/ProDA/tiny.yaml"
EMPL_PRODA_TINY = "configs/trainers/EMPL_ProDA/tiny.yaml"
# The paper's method keys at the tiny CLIP's scale: 8 prompts (2 front, 2 middle, 4 end), 4 per step.
PAPER = ["TRAINER.PRODA.N_PROMPTS", 8, "TRAINER.PRODA.PROMPT_BATCH", 4, "TRAINER.PRODA.CLASS_TOKEN_POSITION", "mix",
         "TRAINER.PRODA.COVARIANCE", "diagonal", "TRAINER.PRODA.ORTHO_LOSS", "context"]
EMPL_FAST = ["TRAINER.EMPL.SGLD_STEPS", 2, "TRAINER.EMPL.N_CHAINS", 2]


@pytest.fixture(scope="module")
def paper_proda(build_tiny_trainer):
    return build_tiny_trainer("ProDA", PRODA_TINY, *PAPER)


def independent_prompts(pieces: ClassPrompts, ctx: torch.Tensor, position: str) -> torch.Tensor:
    """CoOp's per-class construction (ClassPrompts.assemble), not proda's gather."""
    return pieces.assemble(ctx, position)


def text_features_by_hand(model, ctx_sets, positions):
    """Normalised [K, C, D] of the given prompts, each built by CoOp's construction."""
    classes = model.prompt_learner.classes
    feats = [l2_normalize(model.text_encoder(independent_prompts(classes, ctx, pos), classes.tokenized_prompts))
             for ctx, pos in zip(ctx_sets, positions)]
    return torch.stack(feats)


def test_mix_gives_a_quarter_front_a_quarter_middle_and_half_end():
    positions = proda.prompt_positions(32, "mix")
    assert positions == ("front",) * 8 + ("middle",) * 8 + ("end",) * 16
    assert proda.prompt_positions(6, "mix") == ("front", "middle", "end", "end", "end", "end")
    assert proda.prompt_positions(1, "mix") == ("end",)
    assert proda.prompt_positions(4, "end") == ("end",) * 4


@pytest.mark.parametrize("position, template", [
    ("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")])
def test_class_name_lands_where_the_text_puts_it(tiny_clip, position, template):
    """With the context set to the words "a photo of a", a prompt with the class name at a
    position is the token embedding of the text with the name there (an independent
    construction: the tokenizer and the embedding table), and CoOp's assembly agrees."""
    names = ["circle", "red square", "big_yellow triangle"]
    pieces = ClassPrompts(tiny_clip, names, "a photo of a", 4)
    ctx = word_embeddings(tiny_clip, "a photo of a").float()  # [4, d]
    got = proda.assemble_at(pieces, ctx, position)
    with torch.no_grad():
        expected = tiny_clip.token_embedding(tokenize([template.format(n.replace("_", " ")) for n in names]))
    assert torch.equal(got, expected.type(got.dtype))
    assert torch.equal(got, pieces.assemble(ctx, position))


def test_learner_puts_each_prompt_at_its_position(paper_proda, tiny_clip):
    learner = paper_proda.model.prompt_learner
    assert learner.positions == ("front",) * 2 + ("middle",) * 2 + ("end",) * 4
    classes = learner.classes
    prompts = learner().view(8, classes.n_cls, 77, -1)  # all 8 prompts outside a training step
    for k, position in enumerate(learner.positions):
        assert torch.equal(prompts[k], classes.assemble(learner.ctx[k], position))
    # The first class-name token sits right after SOS (front), after M/2 context tokens
    # (middle) or after the M context tokens (end), M = 4 here.
    first_name_token = tiny_clip.token_embedding(classes.tokenized_prompts[:, 1 + learner.n_ctx]).detach()
    for k, offset in zip((0, 2, 4), (1, 1 + learner.n_ctx // 2, 1 + learner.n_ctx)):
        assert torch.equal(prompts[k][:, offset], first_name_token)


def test_prompt_batch_draws_distinct_prompts_and_inference_uses_all(paper_proda):
    trainer = paper_proda
    learner = trainer.model.prompt_learner
    rng_before = torch.random.get_rng_state()
    rounds = []
    for _ in range(4):  # two rounds of 8 prompts in batches of 4
        with trainer.prompt_batch() as drawn:
            assert drawn.shape == (4,) and len(set(drawn.tolist())) == 4
            assert torch.equal(learner.context_sets(), learner.ctx[drawn])
            assert learner.set_positions() == tuple(learner.positions[i] for i in drawn.tolist())
            assert trainer.model.class_text_features().shape[0] == 4
            rounds.append(drawn.tolist())
    # Every prompt once per round; the global RNG (the data order) is untouched by the draws.
    assert sorted(rounds[0] + rounds[1]) == list(range(8)) and sorted(rounds[2] + rounds[3]) == list(range(8))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    # Outside a step (inference) every prompt is used: the prediction is tau z . mean over all 8
    # prompts' features (the mean of the normalised features, as CLIP_Calibration's set_classifier).
    assert learner.drawn is None and learner.context_sets().shape[0] == 8
    trainer.set_model_mode("eval")
    trainer.clear_eval_cache()
    images, _ = fixed_batch(trainer)
    with torch.no_grad():
        logits = trainer.model_inference(images)
        feats = text_features_by_hand(trainer.model, learner.ctx, learner.positions)
        expected = trainer.model.logit_scale.exp() * trainer.model.encode_image(images) @ feats.mean(0).t()
    assert torch.allclose(logits, expected, atol=1e-4)
    assert trainer.inference_text_features().shape[0] == 8


def test_inference_in_groups_of_prompts_gives_the_same_features(paper_proda, monkeypatch):
    with torch.no_grad():
        whole = paper_proda.model.class_text_features()
        monkeypatch.setattr(proda, "INFERENCE_TEXT_BATCH", 3 * paper_proda.dm.num_classes)  # groups of 3, 3, 2 prompts
        grouped = paper_proda.model.class_text_features()
    assert torch.allclose(grouped, whole, atol=1e-6)


def test_sampler_state_round_trip():
    sampler = proda.PromptBatchSampler(8, 2, seed=5)
    sampler.next()
    state = sampler.state_dict()
    expected = [sampler.next().tolist() for _ in range(6)]
    restored = proda.PromptBatchSampler(8, 2, seed=0)
    restored.load_state_dict(state)
    assert [restored.next().tolist() for _ in range(6)] == expected


def test_paper_loss_equals_the_hand_computation(paper_proda):
    """Gaussian bound with the per-dimension covariance over the drawn prompts (the explicit
    [D, C, C] covariances of CLIP_Calibration's form) + 0.1 * mean |cos| between all 8 prompts
    without a class name (built from the tokenized text "X X X X.")."""
    trainer = paper_proda
    model, learner = trainer.model, trainer.model.prompt_learner
    with torch.no_grad():
        learner.ctx.add_(0.05 * torch.randn(learner.ctx.shape, generator=torch.Generator().manual_seed(3)))
    images, labels = fixed_batch(trainer)
    with torch.no_grad(), trainer.prompt_batch() as drawn:
        loss, output = trainer.compute_loss(images, labels)
        positions = [learner.positions[i] for i in drawn.tolist()]
        feats = text_features_by_hand(model, learner.ctx[drawn], positions).double()  # [K, C, D]
    z = model.encode_image(images).detach().double()
    tau = model.logit_scale.exp().detach().double()
    k = feats.shape[0]
    mean = feats.mean(0)
    centered = (feats - mean).permute(2, 1, 0)  # [D, C, K]
    cov = centered @ centered.transpose(1, 2) / (k + 1)  # [D, C, C]: per dimension, across classes
    quad = torch.einsum("bd,dij->bij", z * z, cov)  # [B, C, C]
    rows = torch.arange(len(labels))
    spread = quad[rows, labels, labels].unsqueeze(1) + torch.diagonal(quad, dim1=1, dim2=2) - 2 * quad[rows, labels]
    bound = F.cross_entropy(tau * z @ mean.t() + 0.5 * tau**2 * spread, labels)
    # Context-only prompts: the embedding of "X X X X." with the context in place of the X's.
    with torch.no_grad():
        ids = tokenize(["X X X X."])
        base = model.token_embedding(ids)[0]
        context_feats = []
        for ctx in learner.ctx:
            prompt = torch.cat([base[:1], ctx, base[1 + learner.n_ctx :]]).unsqueeze(0)
            context_feats.append(l2_normalize(model.text_encoder(prompt, ids))[0])
    cos = torch.stack(context_feats).double() @ torch.stack(context_feats).double().t()
    decorrelation = sum(cos[i, j].abs() for i in range(8) for j in range(8) if i != j) / (8 * 7)
    assert loss.item() == pytest.approx((bound + 0.1 * decorrelation).item(), rel=1e-5)
    assert output.shape == (len(labels), trainer.dm.num_classes)


def test_defaults_are_proda_x4(build_tiny_trainer):
    """The key defaults: 4 prompts, all at the end, all every step, and the loss of the
    existing functions (full-covariance bound + 0.1 * mean cos^2 of the class features)."""
    trainer = build_tiny_trainer("ProDA", PRODA_TINY)
    learner = trainer.model.prompt_learner
    assert trainer.prompt_sampler is None and learner.positions == ("end",) * 4
    assert not hasattr(learner, "context_only")
    images, labels = fixed_batch(trainer)
    with torch.no_grad(), trainer.prompt_batch() as drawn:
        assert drawn is None
        loss, _ = trainer.compute_loss(images, labels)
        feats = trainer.model.class_text_features()
    logits = trainer.model.prompt_logits(images, feats)
    expected = proda_gaussian_bound_loss(logits, labels) + 0.1 * prompt_orthogonality(feats)
    assert torch.equal(loss, expected)
    by_hand = text_features_by_hand(trainer.model, learner.ctx, learner.positions)
    assert torch.allclose(feats, by_hand, atol=1e-6)


@pytest.mark.parametrize("key, value", [("PROMPT_BATCH", 3), ("PROMPT_BATCH", 16), ("CLASS_TOKEN_POSITION", "start"),
                                        ("COVARIANCE", "low_rank"), ("ORTHO_LOSS", "cos")])
def test_bad_keys_are_one_clear_error(build_tiny_trainer, key, value):
    with pytest.raises(ValueError, match=f"TRAINER.PRODA.{key}"):
        build_tiny_trainer("ProDA", PRODA_TINY, *PAPER, f"TRAINER.PRODA.{key}", value)


def test_real_data_configs_select_the_paper_and_x4_stays_named():
    def proda_keys(name):
        with open(os.path.join(ROOT, "configs/trainers/ProDA", f"{name}.yaml")) as f:
            return yaml.safe_load(f)["TRAINER"]["PRODA"]

    paper = ("vit_b16_ep50", "vit_b16_ep10_cross_datasets", "rn50_ep50", "rn50_ep10_cross_datasets",
             "bundled_paper", "bundled_paper_xd")
    for name in paper:
        keys = proda_keys(name)
        assert (keys["N_PROMPTS"], keys["PROMPT_BATCH"], keys["CLASS_TOKEN_POSITION"]) == (32, 4, "mix"), name
        assert (keys["COVARIANCE"], keys["ORTHO_LOSS"], keys["ORTHO_WEIGHT"]) == ("diagonal", "context", 0.1), name
    for name in ("vit_b16_ep50_x4", "vit_b16_ep10_x4_cross_datasets", "rn50_ep50_x4", "rn50_ep10_x4_cross_datasets",
                 "bundled", "bundled_xd"):
        keys = proda_keys(name)
        new_keys = {"PROMPT_BATCH", "CLASS_TOKEN_POSITION", "COVARIANCE", "ORTHO_LOSS"}
        assert keys["N_PROMPTS"] == 4 and not new_keys & set(keys), name


# ---------------------------------------------------------------------------- EMPL_ProDA on the paper's host
@pytest.fixture(scope="module")
def paper_empl(build_tiny_trainer):
    return build_tiny_trainer("EMPL_ProDA", EMPL_PRODA_TINY, *PAPER, *EMPL_FAST)


def test_empl_anchor_features_respect_the_positions(paper_empl):
    """Without sampling, EMPL's split text encoder on the mixed-position prompts gives ProDA's
    own features (positions included), for all 8 prompts and for a drawn mini-batch."""
    trainer = paper_empl
    learner = trainer.model.prompt_learner
    with torch.no_grad():
        hidden, layout = trainer.prefix_states([learner.classes])
        feats, _, _ = trainer.sampled_features(hidden, layout, None, sample=False)
        assert torch.allclose(feats[:, 0], trainer.model.class_text_features(), atol=1e-5)
        by_hand = text_features_by_hand(trainer.model, learner.ctx, learner.positions)
        assert torch.allclose(feats[:, 0], by_hand, atol=1e-5)
        with trainer.prompt_batch() as drawn:
            hidden, layout = trainer.prefix_states([learner.classes])
            feats, _, _ = trainer.sampled_features(hidden, layout, None, sample=False)
            assert feats.shape[0] == 4
            assert torch.allclose(feats[:, 0], by_hand[drawn], atol=1e-5)


def test_empl_shift_is_empls_replacement_for_end_prompts(paper_empl):
    """For prompts with the class name at the end (context states equal for every class) the
    shared shift of the context states is EMPL's replacement of them."""
    trainer = paper_empl
    learner = trainer.model.prompt_learner
    with torch.no_grad():
        hidden, layout = trainer.prefix_states([learner.classes])
        end = [k for k, p in enumerate(learner.positions) if p == "end"]
        anchors = trainer.split_text.context_states(hidden[end, 0])  # [4, M, d]
        states = anchors.unsqueeze(1) + 0.3 * torch.randn((len(end), 2) + anchors.shape[1:],
                                                          generator=torch.Generator().manual_seed(0))
        layout_end = type(layout)(layout.eot, layout.order[end])
        shifted = trainer.split_text.features(hidden[end], layout_end, states)
        replaced = trainer.split_text.features(hidden[end], layout.eot, states)  # LayerSplitText's
    assert torch.allclose(shifted, replaced, atol=1e-5)
    assert (shifted[:, 0] - shifted[:, 1]).abs().max() > 1e-4  # the samples differ


def test_empl_proda_trains_a_step_on_the_papers_host(paper_empl):
    trainer = paper_empl
    learner = trainer.model.prompt_learner
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 1, 10
    images, labels = fixed_batch(trainer)
    with trainer.prompt_batch() as drawn:
        trainer.model_zero_grad()
        loss, output, extras = trainer.compute_loss(images, labels)
        loss.backward()
    assert torch.isfinite(loss) and output.shape == (len(labels), trainer.dm.num_classes)
    assert torch.isfinite(torch.tensor(extras["loss_in"])) and torch.isfinite(torch.tensor(extras["loss_out"]))
    # The bound reaches the drawn prompts; the context-only decorrelation reaches all 8.
    grad = learner.ctx.grad.abs().flatten(1).sum(1)
    assert (grad > 0).all()
    # The drawn prompts' chains are kept per prompt for the next time they are drawn.
    assert trainer.prompt_chain_filled[drawn.cpu()].all() and trainer.prompt_chain_filled.sum() == 4
    # A full training step (draw, loss, update) through forward_backward.
    batch = next(iter(trainer.train_loader_x))
    summary = trainer.forward_backward(batch)
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert learner.drawn is None


def test_empl_proda_without_decorrelation_trains_only_the_drawn_prompts(paper_empl):
    trainer = paper_empl
    learner = trainer.model.prompt_learner
    images, labels = fixed_batch(trainer)
    trainer.cfg.defrost()
    weights = trainer.cfg.TRAINER.PRODA.ORTHO_WEIGHT, trainer.cfg.TRAINER.EMPL.OPEN_LOSS_WEIGHT
    trainer.cfg.TRAINER.PRODA.ORTHO_WEIGHT, trainer.cfg.TRAINER.EMPL.OPEN_LOSS_WEIGHT = 0.0, 0.0
    try:
        with trainer.prompt_batch() as drawn:
            trainer.model_zero_grad()
            trainer.compute_loss(images, labels)[0].backward()
    finally:
        trainer.cfg.TRAINER.PRODA.ORTHO_WEIGHT, trainer.cfg.TRAINER.EMPL.OPEN_LOSS_WEIGHT = weights
        trainer.cfg.freeze()
    has_grad = learner.ctx.grad.abs().flatten(1).sum(1) > 0
    assert has_grad.tolist() == [i in drawn.tolist() for i in range(8)]
