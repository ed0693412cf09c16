"""The half-precision path (PREC fp16 and amp) run for real on the CPU (MODEL.BACKBONE.HALF_ON_CPU).

Without the key a CPU runs fp16 and amp in fp32, so nothing else in the suite touches the path
that every real-data ViT-B/16 config takes on a GPU. Here every trainer is built on the tiny
CLIP with PREC fp16 and with PREC amp, takes a training step (under amp, as many as the
GradScaler needs to take one), predicts a fixed batch and runs trainer.test():
- fp16: the frozen CLIP's weights are half (a silent fallback to fp32 fails the test), its
  activations are half, and the learned tensors and their optimizer state stay fp32;
- amp: every weight stays fp32 and the autocast region computes in half (fp16, or bfloat16 on
  a CPU without fp16 autocast);
- both: the loss and the logits are finite, the step moves every learned tensor, and EMPL's
  SGLD chains run in fp32 and keep their data drift.
Each trainer is built and stepped once per precision (module-scoped cache); the tests read
the record.
"""
import contextlib
import io

import pytest
import torch
import torch.nn as nn

from conftest import fixed_batch
from trainers.clip_backbone import autocast_dtype, resolve_precision

PREC_NODE = {  # trainer -> its TRAINER.<node> with PREC
    "CoOp": "COOP", "CoCoOp": "COCOOP", "MaPLe": "MAPLE", "ProDA": "PRODA",
    "KgCoOp": "COOP", "PromptSRC": "PROMPTSRC",
    "EMPL_CoOp": "COOP", "EMPL_ProDA": "PRODA", "EMPL_MaPLe": "MAPLE",
}
CONFIG = {name: f"configs/trainers/{name}/tiny.yaml" for name in PREC_NODE}
CONFIG["ZeroshotCLIP"] = "configs/trainers/CoOp/tiny.yaml"
TRAINED = [(name, prec) for name in PREC_NODE for prec in ("fp16", "amp")]
# ZeroshotCLIP has no PREC and trains nothing: half weights under the key, inference only.
ALL = TRAINED + [("ZeroshotCLIP", "fp16")]
EMPL = [case for case in TRAINED if case[0].startswith("EMPL_")]
# A GradScaler starts at scale 2**16 and skips the steps whose scaled gradients overflow fp16,
# halving the scale each time (CLIP's logit scale of 100 makes that happen on the first step or
# two here, as on a GPU): amp steps until the scaler takes one, at most this many times.
MAX_AMP_STEPS = 5
# EMPL's tiny configs run 4 chains of 5 SGLD steps per training step and per test image over
# every class; 2 chains of 2 steps in training, and one test-time step on each image's 2 best
# classes, exercise the same code (the chains, in half precision around them) in less time.
EMPL_FAST = ["TRAINER.EMPL.N_CHAINS", 2, "TRAINER.EMPL.SGLD_STEPS", 2, "TRAINER.EMPL.TEST_SGLD_STEPS", 1,
             "TRAINER.EMPL.TEST_TOP_K", 2]


def half_dtype(prec):
    """The dtype the half-precision path computes in under prec, on this CPU."""
    return autocast_dtype("cpu") if prec == "amp" else torch.float16


def frozen_clip(trainer):
    return trainer.clip_model if hasattr(trainer, "clip_model") else trainer.model


def learned(trainer):
    return {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}


def frozen_weights(model):
    """Weights of the frozen CLIP that clip.model.convert_weights makes half: the Linear and
    Conv weights, attention projections and the two output projections (embeddings, LayerNorms
    and the logit scale stay fp32 in CLIP's own fp16 models)."""
    out = {}
    for name, module in model.named_modules():
        if name.startswith("prompt_learner"):
            continue
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            out[f"{name}.weight"] = module.weight
        if isinstance(module, nn.MultiheadAttention):
            out[f"{name}.in_proj_weight"] = module.in_proj_weight
        for attr in ("text_projection", "proj"):
            tensor = getattr(module, attr, None)
            if isinstance(tensor, torch.Tensor):
                out[f"{name}.{attr}"] = tensor
    return out


def record_dtypes(modules):
    """Forward hooks that note each module's output dtype: (handles, {label: set of dtypes})."""
    seen, handles = {}, []
    for label, module in modules.items():
        def hook(_module, _inputs, output, label=label):
            seen.setdefault(label, set()).add(output.dtype)
        handles.append(module.register_forward_hook(hook))
    return handles, seen


def probed_modules(trainer):
    """An intermediate of each encoder: the patch embedding and the last text block's MLP."""
    clip = frozen_clip(trainer)
    if hasattr(trainer, "clip_model"):  # ZeroshotCLIP: the text side ran at build time
        return {"image conv1": clip.visual.conv1}
    return {"image conv1": clip.image_encoder.conv1, "text mlp": clip.text_encoder.blocks[-1].mlp.c_fc}


def spy_on_sgld(trainer):
    """Record the dtypes SGLD sees: [(anchor, chain states given to the energy, samples)]."""
    calls, sample_prompts = [], trainer.sample_prompts

    def spy(anchor, energy_fn, **options):
        states = set()

        def energy(h):
            states.add(h.dtype)
            return energy_fn(h)

        result = sample_prompts(anchor, energy, **options)
        calls.append((anchor.dtype, states, result.samples.dtype))
        return result

    trainer.sample_prompts = spy
    return calls


def run_case(build_tiny_trainer, name, prec):
    """Build name with PREC prec on the half path, train a step, predict a batch, test."""
    opts = ["MODEL.BACKBONE.HALF_ON_CPU", True, "TEST.PROGRESS_BAR", False]
    if name in PREC_NODE:
        opts += [f"TRAINER.{PREC_NODE[name]}.PREC", prec]
    if name.startswith("EMPL_"):
        opts += EMPL_FAST
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = build_tiny_trainer(name, CONFIG[name], *opts)
    images, labels = fixed_batch(trainer)
    record = {
        "trainer": trainer,
        "batch_size": len(images),
        "frozen": {n: t.dtype for n, t in frozen_weights(frozen_clip(trainer)).items()},
    }
    handles, record["activations"] = record_dtypes(probed_modules(trainer))
    if name.startswith("EMPL_"):
        record["sgld_calls"] = spy_on_sgld(trainer)
    try:
        if name in PREC_NODE:
            record["before"] = {n: p.detach().clone() for n, p in learned(trainer).items()}
            trainer.set_model_mode("train")
            trainer.batch_idx, trainer.num_batches = 0, 3  # a diagnostic batch (EMPL), no lr update
            record["summaries"], record["scales"] = [], []
            for _ in range(MAX_AMP_STEPS if prec == "amp" else 1):
                if trainer.scaler is not None:
                    record["scales"].append(trainer.scaler.get_scale())
                record["summaries"].append(trainer.forward_backward({"img": images, "label": labels}))
                if trainer.batch_idx == 0:
                    record["empl"] = dict(record["summaries"][-1])  # the step's summary: its SGLD diagnostics
                    trainer.batch_idx = 1  # further amp steps: no diagnostics (no cost)
                if any(not torch.equal(record["before"][n], p) for n, p in learned(trainer).items()):
                    break
        trainer.set_model_mode("eval")
        if hasattr(trainer, "clear_eval_cache"):
            trainer.clear_eval_cache()
        with torch.no_grad():
            record["logits"] = trainer.model_inference(images)
        with contextlib.redirect_stdout(io.StringIO()):
            record["accuracy"] = trainer.test()  # the engine's evaluation on the 200 test images
    finally:
        for handle in handles:
            handle.remove()
    return record


@pytest.fixture(scope="module")
def half_run(build_tiny_trainer):
    """half_run(name, prec) -> the record of run_case, computed once per module."""
    cache = {}

    def get(name, prec):
        if (name, prec) not in cache:
            cache[name, prec] = run_case(build_tiny_trainer, name, prec)
        return cache[name, prec]

    return get


# --------------------------------------------------------------------------- the switch
def test_precision_rules_with_half_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("fp16", cpu, half_on_cpu=True) == "fp16"
    assert resolve_precision("amp", cpu, half_on_cpu=True) == "amp"
    assert resolve_precision("fp32", cpu, half_on_cpu=True) == "fp32"
    assert resolve_precision("amp", cpu) == "fp32"  # the default: unchanged
    with pytest.warns(UserWarning, match="fp32"):
        assert resolve_precision("fp16", cpu) == "fp32"
    assert autocast_dtype("cuda") == torch.float16
    assert autocast_dtype("cpu") in (torch.float16, torch.bfloat16)


def test_without_the_key_a_cpu_still_runs_fp16_in_fp32(build_tiny_trainer):
    with pytest.warns(UserWarning, match="PREC fp16 on CPU: running in fp32"):
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = build_tiny_trainer("CoOp", CONFIG["CoOp"], "TRAINER.COOP.PREC", "fp16")
    assert trainer.prec == "fp32" and trainer.scaler is None
    assert all(t.dtype == torch.float32 for t in frozen_weights(trainer.model).values())


# --------------------------------------------------------------------------- every trainer
@pytest.mark.parametrize("name, prec", ALL)
def test_frozen_clip_has_the_precision_asked_for(half_run, name, prec):
    run = half_run(name, prec)
    if name in PREC_NODE:
        assert run["trainer"].prec == prec  # not the CPU fallback
    want = torch.float16 if prec == "fp16" else torch.float32
    assert run["frozen"] and {n: d for n, d in run["frozen"].items() if d != want} == {}
    assert frozen_clip(run["trainer"]).dtype == want


@pytest.mark.parametrize("name, prec", ALL)
def test_the_encoders_compute_in_half(half_run, name, prec):
    """Under fp16 because the weights are half; under amp inside autocast, on fp32 weights."""
    run = half_run(name, prec)
    assert set(run["activations"]) == set(probed_modules(run["trainer"]))
    for label, dtypes in run["activations"].items():
        assert dtypes == {half_dtype(prec)}, label


@pytest.mark.parametrize("name, prec", TRAINED)
def test_learned_tensors_and_optimizer_state_stay_fp32(half_run, name, prec):
    run = half_run(name, prec)
    trainer = run["trainer"]
    params = learned(trainer)
    assert params and all(n.startswith("prompt_learner.") for n in params)
    assert {n: p.dtype for n, p in params.items() if p.dtype != torch.float32} == {}
    state = [v for s in trainer.optim.state.values() for k, v in s.items() if k != "step" and torch.is_tensor(v)]
    assert state, "the optimizer took no step"
    assert {v.dtype for v in state} == {torch.float32}
    if prec == "amp":
        assert trainer.scaler is not None and trainer.scaler.is_enabled()
        with trainer.autocast():
            assert torch.is_autocast_enabled("cpu")
    else:
        assert trainer.scaler is None


@pytest.mark.parametrize("name, prec", TRAINED)
def test_a_step_is_finite_and_moves_every_learned_tensor(half_run, name, prec):
    run = half_run(name, prec)
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in run["summaries"])
    now = learned(run["trainer"])
    unchanged = [n for n, before in run["before"].items() if torch.equal(before, now[n])]
    assert unchanged == []
    assert all(torch.isfinite(p).all() for p in now.values())
    # Steps the GradScaler skipped were overflows it backed off from (scale halved), nothing else.
    scales = run["scales"]
    assert all(later == earlier / 2 for earlier, later in zip(scales, scales[1:]))


@pytest.mark.parametrize("name, prec", ALL)
def test_inference_is_finite(half_run, name, prec):
    run = half_run(name, prec)
    logits = run["logits"]
    n_cls = len(run["trainer"].dm.dataset.classnames)
    assert logits.shape == (run["batch_size"], n_cls) and torch.isfinite(logits).all()
    assert 0 <= run["accuracy"] <= 100


@pytest.mark.parametrize("name, prec", EMPL)
def test_sgld_chains_run_in_fp32_and_keep_their_drift(half_run, name, prec):
    """The chains start from the half model's states (under fp16) but run in fp32: every chain
    state the energy sees is fp32 (fp16 states once rounded the data drift away, trainers/sgld.py),
    and the data term moved them: at the end they have a lower data energy than prior-only
    chains run on the same start and noise."""
    run = half_run(name, prec)
    calls = run["sgld_calls"]  # training step(s), then the test batch (INFERENCE sample)
    assert len(calls) >= 2
    for anchor, states, samples in calls:
        assert anchor == (torch.float16 if prec == "fp16" else torch.float32)
        assert states == {torch.float32} and samples == torch.float32
    offsets, reference = run["trainer"].persistent_offsets
    assert offsets.dtype == reference.dtype == torch.float32
    assert run["empl"]["sgld_rejected_steps"] == 0
    assert run["empl"]["sgld_data_energy_gain"] < 0
    assert torch.isfinite(torch.tensor(run["empl"]["sgld_energy_after"]))
