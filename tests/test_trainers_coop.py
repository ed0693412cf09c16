"""ZeroshotCLIP, CoOp and CoCoOp against independent computations on the tiny CLIP."""
import pytest
import torch
import torch.nn.functional as F

from trainers.class_prompts import clean_classname
from trainers.clip_backbone import l2_normalize, tokenize
from test_clip_backbone import reference_text_features

COOP = "configs/trainers/CoOp/tiny.yaml"
COCOOP = "configs/trainers/CoCoOp/tiny.yaml"


def fixed_batch(trainer, n=8):
    batch = next(iter(trainer.train_loader_x))
    return batch["img"][:n], batch["label"][:n]


def zero_shot_logits(clip_model, images, classnames, template="a photo of a {}."):
    with torch.no_grad():
        text = l2_normalize(clip_model.encode_text(tokenize([template.format(clean_classname(c)) for c in classnames])))
        image = l2_normalize(clip_model.encode_image(images))
        return clip_model.logit_scale.exp() * image @ text.t()


def test_zeroshot_clip_logits(build_tiny_trainer, tiny_clip):
    trainer = build_tiny_trainer("ZeroshotCLIP", COOP)
    images, _ = fixed_batch(trainer)
    expected = zero_shot_logits(tiny_clip, images, trainer.dm.dataset.classnames)
    assert torch.allclose(trainer.model_inference(images), expected, atol=1e-4)


def test_coop_with_words_starts_as_zero_shot_clip(build_tiny_trainer, tiny_clip):
    trainer = build_tiny_trainer("CoOp", "configs/trainers/CoOp/tiny_ctxv1.yaml")
    images, _ = fixed_batch(trainer)
    expected = zero_shot_logits(tiny_clip, images, trainer.dm.dataset.classnames)
    with torch.no_grad():
        assert torch.allclose(trainer.model(images), expected, atol=1e-4)
        trainer.set_model_mode("eval")
        assert torch.allclose(trainer.model_inference(images), expected, atol=1e-4)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_coop_logits_match_clip_transformer_on_assembled_prompts(build_tiny_trainer, tiny_clip, position, csc):
    trainer = build_tiny_trainer(
        "CoOp", COOP, "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CSC", csc, "TRAINER.COOP.CLASS_TOKEN_POSITION", position
    )
    learner = trainer.model.prompt_learner
    n_cls = len(trainer.dm.dataset.classnames)
    assert learner.ctx.shape == ((n_cls, 4, 64) if csc else (4, 64))
    images, _ = fixed_batch(trainer)
    with torch.no_grad():
        text = l2_normalize(reference_text_features(tiny_clip, learner(), learner.tokenized_prompts))
        expected = tiny_clip.logit_scale.exp() * l2_normalize(tiny_clip.encode_image(images)) @ text.t()
        assert torch.allclose(trainer.model(images), expected, atol=1e-4)


@pytest.mark.parametrize("csc", [False, True])
def test_coop_context_sets_is_the_shared_context_as_one_set(build_tiny_trainer, csc):
    """EMPL's host contract: context_sets() -> [1, M, d]; class-specific contexts have none."""
    trainer = build_tiny_trainer("CoOp", COOP, "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CSC", csc)
    learner = trainer.model.prompt_learner
    if csc:
        with pytest.raises(ValueError, match="CSC"):
            learner.context_sets()
    else:
        assert torch.equal(learner.context_sets(), learner.ctx.unsqueeze(0))


def test_cocoop_batch_equals_per_image_loop(build_tiny_trainer, tiny_clip):
    trainer = build_tiny_trainer("CoCoOp", COCOOP)
    learner = trainer.model.prompt_learner
    torch.nn.init.normal_(learner.meta_net.linear2.weight, std=0.5)  # make the bias matter
    trainer.set_model_mode("eval")
    images, _ = fixed_batch(trainer, 3)
    with torch.no_grad():
        got = trainer.model_inference(images)
        rows = []
        for image in images:
            feat = l2_normalize(tiny_clip.encode_image(image[None]))
            ctx = learner.ctx + learner.meta_net(feat)  # [M, d]
            prompts = torch.cat([learner.classes.token_prefix, ctx.expand(learner.n_cls, -1, -1),
                                 learner.classes.token_suffix], dim=1)
            text = l2_normalize(reference_text_features(tiny_clip, prompts, learner.tokenized_prompts))
            rows.append(tiny_clip.logit_scale.exp() * feat[0] @ text.t())
    assert got.shape == (3, learner.n_cls)
    assert torch.allclose(got, torch.stack(rows), atol=1e-4)


@pytest.mark.parametrize("name, config", [("CoOp", COOP), ("CoCoOp", COCOOP)])
def test_only_prompt_learner_trains_and_one_step_lowers_loss(build_tiny_trainer, name, config):
    trainer = build_tiny_trainer(name, config, "OPTIM.LR", 0.05, "OPTIM.WARMUP_EPOCH", -1)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    images, labels = fixed_batch(trainer)
    trainer.set_model_mode("train")
    loss_before, _ = trainer.compute_loss(images, labels)
    trainer.model_zero_grad()
    loss_before.backward()
    for n, p in trainer.model.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    trainer.model_update()
    with torch.no_grad():
        loss_after, _ = trainer.compute_loss(images, labels)
    assert loss_after < loss_before


def test_save_then_load_reproduces_eval_logits(build_tiny_trainer, tmp_path):
    trainer = build_tiny_trainer("CoOp", COOP, output_dir=tmp_path / "a")
    with torch.no_grad():
        trainer.model.prompt_learner.ctx.add_(torch.randn_like(trainer.model.prompt_learner.ctx))
    trainer.save_model(2, str(tmp_path / "a"))  # Dassl names it by epoch + 1
    images, _ = fixed_batch(trainer)
    trainer.set_model_mode("eval")
    expected = trainer.model_inference(images)
    fresh = build_tiny_trainer("CoOp", COOP, output_dir=tmp_path / "b")
    fresh.load_model(str(tmp_path / "a"), epoch=3)
    fresh.set_model_mode("eval")
    assert torch.allclose(fresh.model_inference(images), expected)
    with pytest.raises(FileNotFoundError, match="model.pth.tar-4"):
        fresh.load_model(str(tmp_path / "a"), epoch=4)


def test_seed_offset_reruns_training_on_the_same_few_shot_data(synthetic_root, tmp_path):
    """TRAIN.SEED_OFFSET k: the few-shot draw (and its cache file) stay SEED's; the training
    randomness (here CoOp's random context) is what a plain run seeded SEED + k draws once its
    data are built; private generators (ProDA's prompt draws, EMPL's chains) take SEED + k."""
    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from conftest import make_cfg
    from dassl.engine import build_trainer
    from dassl.utils import UserValueError, set_random_seed

    def build(name, seed, *opts, config=COOP):
        set_random_seed(seed)  # as launch.py does before building the trainer
        return build_trainer(make_cfg(synthetic_root, name, config, tmp_path / f"{name}{seed}{len(opts)}",
                                      ["SEED", str(seed), "DATASET.NUM_SHOTS", "2", *opts]))

    def shots(trainer):
        return sorted((item.impath, item.label) for item in trainer.dm.dataset.train_x)

    plain, rerun = build("CoOp", 1), build("CoOp", 1, "TRAIN.SEED_OFFSET", "5")
    assert shots(rerun) == shots(plain)
    assert not torch.equal(rerun.model.prompt_learner.ctx, plain.model.prompt_learner.ctx)
    # A plain run seeded 6 draws other shots and, from torch's RNG, the same context.
    seeded_6 = build("CoOp", 6)
    assert shots(seeded_6) != shots(plain)
    assert torch.equal(seeded_6.model.prompt_learner.ctx, rerun.model.prompt_learner.ctx)
    proda = build("ProDA", 1, "TRAIN.SEED_OFFSET", "5", config="configs/trainers/ProDA/tiny.yaml")
    assert proda.private_seed() == 6 and build("CoOp", 1).private_seed() == 1
    for bad, message in ((["TRAIN.SEED_OFFSET", "-1"], "must be >= 0"), (["SEED", "-1", "TRAIN.SEED_OFFSET", "2"], "set SEED")):
        with pytest.raises(UserValueError, match=message):
            build("CoOp", 1, *bad)
