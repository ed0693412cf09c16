"""Choose a trainer's budget on validation data only: the bundled benchmark's tuning protocol.

    python -m tools.tune_bundled --trainers CoOp MaPLe --seeds 1 2           # the grid below, in one process
    python -m tools.tune_bundled --trainers CoOp --points "OPTIM.LR 0.01 OPTIM.MAX_EPOCH 10"
    python -m tools.tune_bundled --trainers ZeroshotCLIP CoOp --output-dir output/tune-candidate \
        -- MODEL.BACKBONE.CHECKPOINT world-vit-candidate.pt      # opts for every run of every point

For every grid point (config opts on top of configs/trainers/<T>/bundled.yaml), task and seed:
  1. train on the task's base classes (16 shots; the run's own final evaluation is on the val
     split, TEST.SPLIT val, so no test image is ever read);
  2. evaluate on the base classes' whole val split (DATASET.NUM_SHOTS 0, TEST.SPLIT val): *val base*;
  3. evaluate on the task's held-out classes (<Task>Heldout: world words of the same kind that no
     reported result uses): *held-out*, a stand-in for new classes that is not the test's new
     classes.
The table gives each point's mean over tasks and seeds of val base, held-out and their H. The
selection rule (--select) picks a point per trainer; by default ``base`` (the best val base
accuracy, the quantity every method trains for) for the baselines' budgets and ``H`` for the
EMPL trainers' sampling settings (EMPL exists for new-class accuracy; SELECT_DEFAULT). An EMPL
point is eligible only if its anchor alone scores at least its host's bundled point minus
ANCHOR_MARGIN on every task, seed and validation split (the host's point is run and evaluated
for that); when no point passes, the rule chooses among all and the table says the check was
missed. Nothing here reads a test split of a reported task; the held-out tasks' images are used
for nothing else.

The same command tunes on a real dataset (--root $DATA --tasks eurosat --cfg vit_b16_ep50_ctxv1):
a task without a <task>_heldout config trains on the first half of its base classes
(DATASET.SUBSAMPLE_CLASSES base_fit) and holds the other half out (base_heldout), val splits
only, so the new classes are never read.
"""
import argparse
import os
import re
import shlex
import statistics
import sys
from typing import Dict, List, Sequence, Tuple

import parse_test_res
from tools import protocols, sweep
from tools.reporting.summaries import harmonic_mean
from tools.reporting.tables import md_table
from trainers.empl_config import TRANSDUCTIVE_MODES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Candidate budgets per trainer (config opts over bundled.yaml): each method's recipe shape at
# this scale (its context length and init, batch size and prompt depth as in bundled.yaml), over
# learning rates and epochs up to where training accuracy saturates, with no cap on the steps;
# CoOp also with CoOp's 16 randomly initialised context vectors. The chosen points are in the
# bundled.yaml files; docs/BENCHMARK.md has the tables that chose them.
_COOP_SHAPES = ("", "TRAINER.COOP.N_CTX 16 TRAINER.COOP.CTX_INIT '' ")
GRID: Dict[str, List[str]] = {
    "CoOp": [f"{shape}OPTIM.LR {lr} OPTIM.MAX_EPOCH {ep}"
             for shape in _COOP_SHAPES for lr in ("0.05", "0.2") for ep in (25, 50, 100, 200)],
    "CoCoOp": [f"OPTIM.LR {lr} OPTIM.MAX_EPOCH {ep}" for lr in ("0.02", "0.05", "0.1") for ep in (10, 25, 50)],
    "ProDA": [f"OPTIM.LR {lr} OPTIM.MAX_EPOCH {ep}" for lr in ("0.05", "0.1", "0.2") for ep in (25, 50, 100)],
    "MaPLe": [f"OPTIM.LR {lr} OPTIM.MAX_EPOCH {ep}" for lr in ("0.0035", "0.01", "0.035") for ep in (5, 10, 20)],
    # KgCoOp is CoOp plus one loss term: CoOp's chosen budget, and only the term's weight W
    # (1 and 8: the reference's train.py default and its scripts' value).
    "KgCoOp": [f"TRAINER.COOP.W {w}" for w in ("1.0", "2.0", "4.0", "8.0")],
    # PromptSRC: MaPLe's chosen budget (its batch and epochs), the LR, and the self-regulating
    # losses' weights at the reference's 25 / 10 and scaled to the world CLIP's width
    # (x sqrt(64 / 512): an L1 mean over D dimensions shrinks as 1 / sqrt(D)).
    "PromptSRC": [
        f"OPTIM.LR {lr} TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT {text} TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT {image}"
        for text, image in (("25", "10"), ("9", "4")) for lr in ("0.0035", "0.01", "0.035")
    ],
}
# The EMPL trainers: the sampler chosen on validation before (docs/EMPL.md: persistent chains,
# one step per training step, PRIOR_STD 1, T_E 0.01, 4 chains), now over how EMPL is trained
# (from the host's CTX_INIT at the host's budget, or two-stage: from the host's trained run for
# a few epochs), its in-domain loss (IN_LOSS), where the chains live (SGLD_LAYERS, as a fraction
# of the text encoder's depth: {layers:F} is F x depth, so the grid runs unchanged on a 12-block
# encoder) and how it evaluates (EVALUATION_KEYS: the inference mode and test-time steps; points
# that differ only there share their training runs). The rule is H (EMPL exists for new-class
# accuracy); a transductive evaluation (sample_batch) is shown but never chosen.
_E = protocols.EMPL_PREFIX
# The sampler's prior distance the grids were built around (the v2 sampler; trainers/empl_config.py's
# default): grid points not varying it state it, since a shipped config may choose another.
SAMPLER_PRIOR_STD = "1.0"
# Evaluations of every training point: per-image sampling on each image's 3 best anchor classes,
# amortized, anchor, and (shown, never chosen) batch-conditioned sampling.
_EMPL_EVALUATIONS = [f"{_E}INFERENCE sample {_E}TEST_SGLD_STEPS 1 {_E}TEST_TOP_K 3"] + [
    f"{_E}INFERENCE {mode}" for mode in ("amortized", "anchor", "sample_batch")]
# Per-image sampling over all classes and with 4 test-time steps cost 2.5x and 7x the top-3
# evaluation. EMPL_CoOp's grid measured them on its first training points (from scratch, and
# two-stage for 10 epochs with half-depth chains), where neither beat top-3 sampling by more
# than TIE (docs/EMPL.md, "Choosing the defaults"); its other points and EMPL_ProDA's skip them.
_COSTLY_EVALUATIONS = [f"{_E}INFERENCE sample {_E}TEST_SGLD_STEPS {steps}" for steps in (1, 4)]


def _empl_trainings(host_lr: str, host_epochs: int, losses, scratch_depths=("1.0",),
                    two_stage_depths=("0.5", "1.0"), fine_tune_lrs=(), fine_tune_depths=(),
                    fine_tune_losses=("mixture",), fine_tune_prior_stds=(),
                    near_host_lrs=(), near_host_prior_stds=()) -> Tuple[List[str], List[str]]:
    """(training points, the ones that also get the costly evaluations).

    From scratch at the host's budget (chains at scratch_depths of the depth; token-level, as
    chosen before, by default), and two-stage from the host's run: a few epochs at the host's LR,
    chains at two_stage_depths of the depth (half or all by default); then two-stage for 10
    epochs at each of fine_tune_lrs (below the host's: the host's prompt is already trained, and
    restarting at its LR moves it as far as a fresh run would), with each of fine_tune_losses and
    chains at fine_tune_depths; and at the first of those LRs with the first loss, the samples
    nearer the anchor: PRIOR_STD (INIT_STD following it, so the chains start from the prior) at
    each of fine_tune_prior_stds. near_host_lrs: two-stage for 10 epochs nearer the host's
    prompt still (the first loss, chains at the first fine-tune depth), at SAMPLER_PRIOR_STD and
    each of near_host_prior_stds. Every point states its PRIOR_STD and INIT_STD (SAMPLER_PRIOR_STD
    unless varied), so that a point means the same whatever the shipped config chose since.
    The costly evaluations go to the scratch points and to the first two-stage point with
    half-depth chains (host LR, 10 epochs, the first loss), where EMPL_CoOp's grid measured them."""
    def point(host_run, lr, epochs, loss, depth, prior=SAMPLER_PRIOR_STD):
        return (f"{_E}HOST_RUN {host_run} OPTIM.LR {lr} OPTIM.MAX_EPOCH {epochs} {_E}IN_LOSS {loss} "
                f"{_E}SGLD_LAYERS {{layers:{depth}}} {_E}PRIOR_STD {prior} {_E}INIT_STD {prior}")

    scratch = [point("''", host_lr, host_epochs, loss, f) for loss in losses for f in scratch_depths]
    two_stage = [point("auto", lr, epochs, loss, f)
                 for lr, epoch_list, loss_list, depths in (
                     (host_lr, (10, 25), losses, two_stage_depths),
                     *((lr, (10,), fine_tune_losses, fine_tune_depths) for lr in fine_tune_lrs))
                 for epochs in epoch_list for loss in loss_list for f in depths]
    two_stage += [point("auto", fine_tune_lrs[0], 10, fine_tune_losses[0], f, p)
                  for p in fine_tune_prior_stds for f in fine_tune_depths]
    two_stage += [point("auto", lr, 10, fine_tune_losses[0], fine_tune_depths[0], p)
                  for lr in near_host_lrs for p in (SAMPLER_PRIOR_STD, *near_host_prior_stds)]
    costly = scratch + ([point("auto", host_lr, 10, losses[0], "0.5")] if "0.5" in two_stage_depths else [])
    return scratch + two_stage, costly


def _empl_grid(trainings: Tuple[List[str], List[str]], costly: bool) -> List[str]:
    """Every training point with every evaluation; with costly, the costly evaluations on the
    points _empl_trainings names for them too."""
    points, costly_points = trainings
    return [f"{t} {e}" for t in points for e in _EMPL_EVALUATIONS] + [
        f"{t} {e}" for t in points if costly and t in costly_points for e in _COSTLY_EVALUATIONS]


# Since benchmark v4 (docs/EMPL.md, "Choosing the defaults"; v5 ran the same grid): the hosts'
# budgets are read from their bundled.yaml (their grids' choices), and each EMPL grid spans the
# neighbourhood of what v3's wider grid chose (docs/EMPL.md; the v3 grid: `git show
# 2b7f7e1:tools/tune_bundled.py`), to fit the time: EMPL_CoOp two-stage, 10 epochs from CoOp's run
# at a tenth and a quarter of CoOp's LR (restarting at the host's LR moves a trained prompt as far
# as a fresh run would), chains in a quarter or half of the depth, both in-domain losses, and at a
# tenth with the mixture the samples at a quarter and half of the prior's default distance
# (per_prompt and PRIOR_STD added after v5's test, because no point passed the anchor check:
# docs/EMPL.md, "The anchor check, again"; then, for the same reason, a 25th and a 50th of CoOp's
# LR with the mixture at PRIOR_STD 1 and 0.5: "The anchor check, nearer the host"); and once from
# CoOp's CTX_INIT at CoOp's budget, for the two-stage comparison, with both in-domain losses (the
# mixture, and per_prompt, which makes the anchor classify on its own: added 2026-12-07 with the
# anchor check, ANCHOR_MARGIN). EMPL_ProDA from ProDA's CTX_INIT at ProDA's budget with chains in a
# quarter or half of the depth, both bounds (pooled, per chain position); and two-stage at a tenth
# of ProDA's LR with the per-position bound.
_COOP_LR, _COOP_EPOCHS = protocols.bundled_budget("CoOp")
GRID["EMPL_CoOp"] = _empl_grid(_empl_trainings(
    _COOP_LR, _COOP_EPOCHS, ("mixture", "per_prompt"), scratch_depths=("0.25",), two_stage_depths=(),
    fine_tune_lrs=tuple(protocols.lr_fraction(_COOP_LR, d) for d in (10, 4)), fine_tune_depths=("0.25", "0.5"),
    fine_tune_losses=("mixture", "per_prompt"), fine_tune_prior_stds=("0.25", "0.5"),
    near_host_lrs=tuple(protocols.lr_fraction(_COOP_LR, d) for d in (25, 50)), near_host_prior_stds=("0.5",)),
    costly=False)
_PRODA_LR, _PRODA_EPOCHS = protocols.bundled_budget("ProDA")
GRID["EMPL_ProDA"] = _empl_grid(_empl_trainings(
    _PRODA_LR, _PRODA_EPOCHS, ("mixture", "per_prompt"), scratch_depths=("0.25", "0.5"), two_stage_depths=(),
    fine_tune_lrs=(protocols.lr_fraction(_PRODA_LR, 10),), fine_tune_depths=("0.25",),
    fine_tune_losses=("per_prompt",)),
    costly=False)
SELECT_DEFAULT = {"EMPL_CoOp": "H", "EMPL_ProDA": "H", "EMPL_MaPLe": "H"}


def expand_layers(point: str, depth: int) -> str:
    """{layers:F} in a grid point -> round(F x depth), at least 1 (the text encoder's blocks)."""
    return re.sub(r"\{layers:([0-9.]+)\}", lambda m: str(max(1, round(float(m.group(1)) * depth))), point)


def text_depth(trainer: str, cfg: str) -> int:
    """The number of text blocks of the backbone the trainer's config names (12 for OpenAI's CLIPs)."""
    import benchmark
    from trainers.clip_backbone import LOCAL_CLIP_CONFIGS

    benchmark.register()  # the world CLIPs
    name = protocols.config_value(protocols.config_path(trainer, cfg), [], "MODEL.BACKBONE.NAME")
    return LOCAL_CLIP_CONFIGS[name]["transformer_layers"] if name in LOCAL_CLIP_CONFIGS else 12


# Config keys that change only how a trained model is evaluated (EMPL's inference mode and its
# test-time SGLD steps): grid points that differ only in them share their training runs.
EVALUATION_KEYS = ("TRAINER.EMPL.INFERENCE", "TRAINER.EMPL.TEST_SGLD_STEPS", "TRAINER.EMPL.TEST_TOP_K")


def _slug(opts: Sequence[str]) -> str:
    """A grid point's folder name."""
    return "-".join(o.replace("TRAINER.", "").replace("OPTIM.", "").replace("'", "") or "empty" for o in opts) or "default"


def point_runs(trainer: str, point: str, tasks: Sequence[str], seeds: Sequence[int], root: str, output_root: str,
               shots: int, cfg: str, python: str, test_new: bool = False, common_opts: Sequence[str] = ()):
    """(runs in order, {(task, seed): (val run, held-out run[, test-new run])}) of one grid point.
    test_new: also evaluate on the test split's new classes of a bundled task (the agreement
    report after the choice; the selection never reads it). common_opts: config opts of every
    run, the host's and the evaluations' included (before the point's own)."""
    opts = sweep.parse_point(point)
    # Keys that only change the evaluation: points that differ only in them share a training run.
    train_opts = protocols.without_keys(opts, lambda key: key in EVALUATION_KEYS)
    slug, train_slug = _slug(opts), _slug(train_opts)
    config_file = protocols.config_path(trainer, cfg)
    eval_only = protocols.is_eval_only(trainer)
    load_epoch = None if eval_only else str(protocols.max_epoch(config_file, [*common_opts, *train_opts]))
    host = protocols.host_trainer(trainer)
    if host is None or str(protocols.config_value(config_file, opts, "TRAINER.EMPL.HOST_RUN")) != protocols.HOST_RUN_AUTO:
        host = None
    runs, evals = [], {}
    for task in tasks:
        # Held-out classes: the bundled task's <task>_heldout dataset, else (a real dataset) the
        # second half of the base classes, the model being trained on the first half.
        has_heldout = os.path.isfile(os.path.join(ROOT, "configs", "datasets", f"{task}_heldout.yaml"))
        fit = "base" if has_heldout else "base_fit"
        heldout = ((f"{task}_heldout", []) if has_heldout else
                   (task, ["DATASET.SUBSAMPLE_CLASSES", "base_heldout", "TEST.SPLIT", "val"]))
        for seed in (seeds[:1] if eval_only else seeds):
            folder = os.path.join(output_root, trainer, slug, task, f"seed{seed}")
            train_dir = os.path.join(output_root, trainer, train_slug, task, f"seed{seed}", "train")
            train = None
            if not eval_only:
                fit_opts = [*common_opts, "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", fit,
                            "TEST.SPLIT", "val"]
                first = None
                if host is not None:  # two-stage: the host's run at its bundled budget (its own "" point)
                    host_dir = os.path.join(output_root, host, "default", task, f"seed{seed}", "train")
                    first = protocols.Run(host, cfg, task, seed, host_dir, protocols.train_argv(
                        python, root, seed, host, task, protocols.config_path(host, cfg), host_dir, fit_opts), False)
                    runs.append(first)
                    opts_here = [*train_opts, "TRAINER.EMPL.HOST_RUN", host_dir]
                else:
                    opts_here = train_opts
                argv = protocols.train_argv(python, root, seed, trainer, task, config_file, train_dir,
                                            [*fit_opts, *opts_here])
                train = protocols.Run(trainer, cfg, task, seed, train_dir, argv, False, first)
                runs.append(train)
            pair = []
            evaluations = [("val_base", task, ["DATASET.SUBSAMPLE_CLASSES", fit, "TEST.SPLIT", "val"]), ("heldout", *heldout)]
            if test_new and has_heldout:
                evaluations.append(("test_new", task, ["DATASET.SUBSAMPLE_CLASSES", "new"]))
            for name, dataset, extra in evaluations:
                out = os.path.join(folder, name)
                argv = protocols.train_argv(python, root, seed, trainer, dataset, config_file, out, [])
                if train is not None:
                    argv += ["--model-dir", train.output_dir, "--load-epoch", load_epoch]
                # (HOST_RUN stays as the point sets it: evaluation loads the EMPL run itself.)
                argv += ["--eval-only", *common_opts, "DATASET.NUM_SHOTS", "0", *extra, *opts]
                run = protocols.Run(trainer, cfg, dataset, seed, out, argv, True, train)
                runs.append(run)
                pair.append(run)
            evals[(task, seed)] = tuple(pair)
    return runs, evals


def _accuracy(run) -> float:
    if not os.path.isfile(run.log_path):
        return None  # a failed run (reported by execute) has no result
    return parse_test_res.read_metric(run.log_path, "accuracy", parse_test_res.TEST_END_SIGNAL)


def _log_text(run) -> str:
    if run is None or not os.path.isfile(run.log_path):
        return ""
    with open(run.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _training_seconds(run) -> float:
    """A training run's cost: the CPU time its log reports, else (logs from before 2026-12-07,
    session 39) its wall time, the Elapsed line; 0 for an evaluation-only point."""
    text = _log_text(run)
    cpu = re.findall(r"^CPU time: ([0-9.]+) s", text, re.M)
    if cpu:
        return float(cpu[-1])
    found = re.findall(r"^Elapsed: (\d+):(\d\d):(\d\d)", text, re.M)
    return sum(int(h) * 3600 + int(m) * 60 + int(sec) for h, m, sec in found[-1:])


def _evaluation_seconds(run) -> float:
    """An evaluation run's cost, from the last "Evaluation time" line of its log (the engine's
    test()): its CPU time, else (older logs) its wall time."""
    found = re.findall(r"^Evaluation time: ([0-9.]+) s for \d+ images(?: \(CPU ([0-9.]+) s\))?", _log_text(run), re.M)
    if not found:
        return 0.0
    wall, cpu = found[-1]
    return float(cpu or wall)


def _mean_sd(values: Sequence[float]):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(evals) -> Dict[str, float]:
    """A point's results: the means over tasks and seeds of val base and held-out and the H of
    those means; the same per seed (each seed's task average) with their spread over seeds;
    ``score_base`` / ``score_H``: mean minus that spread (what the selection rules maximise);
    ``minutes``: the measured time (CPU time, in logs that report it) of its training runs and
    of its val base and held-out evaluations (the cost the selection weighs); ``test_new``: the
    test new classes' mean where they were evaluated (after the choice)."""
    by_seed: Dict[int, List[tuple]] = {}
    test_new = []
    seconds = 0.0
    for (task, seed), runs in evals.items():
        b, h = _accuracy(runs[0]), _accuracy(runs[1])
        if b is None or h is None:
            continue
        by_seed.setdefault(seed, []).append((b, h))
        seconds += _training_seconds(runs[0].depends_on) + _evaluation_seconds(runs[0]) + _evaluation_seconds(runs[1])
        if len(runs) > 2 and _accuracy(runs[2]) is not None:
            test_new.append(_accuracy(runs[2]))
    if not by_seed:
        return {}
    complete = max(len(v) for v in by_seed.values())
    seed_base = [statistics.fmean(b for b, _ in v) for v in by_seed.values() if len(v) == complete]
    seed_held = [statistics.fmean(h for _, h in v) for v in by_seed.values() if len(v) == complete]
    seed_h = [harmonic_mean(b, h) for b, h in zip(seed_base, seed_held)]
    pairs = [pair for v in by_seed.values() for pair in v]
    mb, mh = statistics.fmean(b for b, _ in pairs), statistics.fmean(h for _, h in pairs)
    (base_m, base_sd), (_, held_sd), (h_m, h_sd) = _mean_sd(seed_base), _mean_sd(seed_held), _mean_sd(seed_h)
    return {"base": mb, "heldout": mh, "H": harmonic_mean(mb, mh), "n": len(pairs),
            "base_sd": base_sd, "heldout_sd": held_sd, "H_sd": h_sd,
            "score_base": base_m - base_sd, "score_H": h_m - h_sd, "minutes": seconds / 60,
            "test_new": statistics.fmean(test_new) if test_new else None}


# The selection rules. Each maximises a one-sided bound: the mean over seeds of a seed's task
# average minus its standard deviation over seeds, so that a point that is better on average
# only because one seed went well (or that diverges on some seeds) loses to a steadier one.
# Points whose score is within TIE of the best are equal for the rule (the standard error of a
# point's mean is about 1 point: 160 val images per task and seed); of those the one whose
# training and evaluation took least time is chosen, so that a budget (or an inference mode's
# cost) is paid for only when validation shows it buys accuracy. Times within COST_TIE of the
# cheapest are the same cost (points of the same budget differ by timing noise: two inference
# modes of one training run, or two LRs), and of those the best score is chosen. COST_TIE was
# added on 2026-12-06 after every grid had run; it changes none of their choices. The time is
# each run's CPU time since 2026-12-07 (session 39): the wall time it replaced grew with whatever
# else ran on the machine, and once decided EMPL_CoOp's default (docs/EMPL.md, "The anchor check,
# nearer the host").
SELECTIONS = ("base", "H")
TIE = 0.5
COST_TIE = 0.1
# An EMPL trainer predicts with (or around) its anchor, which must classify on its own: a training
# point is eligible only if its anchor alone scores at least its host's bundled point minus
# ANCHOR_MARGIN on every task, seed and validation split (issue 26's check, in its validation
# form; added 2026-12-07 after v4's test missed the check, before the runs it judges).
ANCHOR_MARGIN = 2.0


def anchor_point(point: str) -> str:
    """The grid point that evaluates the same training runs with the anchor alone."""
    opts = protocols.without_keys(sweep.parse_point(point), lambda key: key in EVALUATION_KEYS)
    return shlex.join([*opts, f"{_E}INFERENCE", "anchor"])  # (parse_point's inverse: '' for an empty value)


def anchor_gaps(anchor_evals, host_evals) -> List[float]:
    """Anchor - host accuracy per task, seed and validation split (val base, held-out), for the
    cells both have results for."""
    gaps = []
    for cell, runs in anchor_evals.items():
        for anchor_run, host_run in zip(runs[:2], host_evals.get(cell, ())[:2]):
            a, h = _accuracy(anchor_run), _accuracy(host_run)
            if a is not None and h is not None:
                gaps.append(a - h)
    return gaps


def transductive(point: str) -> bool:
    """A point whose evaluation conditions on other test images (EMPL's TRANSDUCTIVE_MODES):
    shown for comparison, never chosen as a default."""
    return any(key == f"{_E}INFERENCE" and value in TRANSDUCTIVE_MODES
               for key, value in protocols.opt_pairs(sweep.parse_point(point)))


def choose(results: Dict[str, Dict[str, float]], rule: str, ineligible=frozenset()):
    """The chosen point of one trainer's results ({point: summarize(...)}), or None. Transductive
    points and those in ineligible are not eligible."""
    scored = {p: r for p, r in results.items() if r and not transductive(p) and p not in ineligible}
    if not scored:
        return None
    best = max(r[f"score_{rule}"] for r in scored.values())
    eligible = [p for p, r in scored.items() if r[f"score_{rule}"] >= best - TIE]
    cheapest = min(scored[p]["minutes"] for p in eligible)
    same_cost = [p for p in eligible if scored[p]["minutes"] <= cheapest * (1 + COST_TIE)]
    return max(same_cost, key=lambda p: (scored[p][f"score_{rule}"], -scored[p]["minutes"]))


def choose_checked(results: Dict[str, Dict[str, float]], rule: str, ineligible):
    """(chosen point, whether the anchor check was given up): choose among the points not in
    ineligible; when every point is in it, the check is missed and the choice is made among all."""
    best = choose(results, rule, ineligible)
    if best is None and ineligible:
        return choose(results, rule), True
    return best, False


def agreement(results: Dict[str, Dict[str, float]]):
    """(Pearson r, Spearman rho) over the points of held-out accuracy against test new accuracy,
    or None with fewer than 3 points or a constant column."""
    pairs = [(r["heldout"], r["test_new"]) for r in results.values() if r and r.get("test_new") is not None]
    if len(pairs) < 3:
        return None
    from scipy import stats

    held, new = zip(*pairs)
    if len(set(held)) < 2 or len(set(new)) < 2:
        return None  # a constant column has no correlation
    return stats.pearsonr(held, new)[0], stats.spearmanr(held, new)[0]


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    own, common_opts = sweep.split_extra_opts(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m tools.tune_bundled", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Config opts after '--' (KEY VALUE ...) go to every run of every point "
                                            "(e.g. a candidate world CLIP: -- MODEL.BACKBONE.CHECKPOINT FILE; give "
                                            "it its own --output-dir).")
    parser.add_argument("--trainers", nargs="+", default=["ZeroshotCLIP"] + list(GRID))
    parser.add_argument("--points", nargs="+", help="grid points to try (default: GRID of each trainer)")
    parser.add_argument("--tasks", nargs="+", default=list(protocols.BUNDLED_BASE2NEW))
    parser.add_argument("--select", choices=SELECTIONS,
                        help="selection rule for every trainer (default: SELECT_DEFAULT, else base)")
    parser.add_argument("--subprocess", action="store_true", help="one train.py process per run (default: in-process)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="every run of every point in one work queue over this many worker processes")
    parser.add_argument("--test-new-after-choice", action="store_true",
                        help="after the choice is printed, evaluate every point on the bundled tasks' test new "
                             "classes and report how well held-out accuracy tracked it (reads the test split)")
    sweep.add_run_arguments(parser, seeds=(1, 2), output_dir=os.path.join("output", "tune"))
    parser.set_defaults(root=protocols.BUNDLED["root"], cfg=protocols.BUNDLED["cfg"]["base2new"])
    args = parser.parse_args(own)
    try:
        sweep.check_extra_opts(common_opts)
        planned = {}  # trainer -> {point: evals}
        checks = {}  # EMPL trainer -> {point: (its anchor's evals, its host's bundled point's evals)}
        point_plans = []

        def plan(name, point, test_new=False):
            return point_runs(name, point, args.tasks, args.seeds, args.root, args.output_dir, args.shots,
                              args.cfg, args.python, test_new=test_new, common_opts=common_opts)

        for trainer in args.trainers:
            points = [""] if protocols.is_eval_only(trainer) else args.points or (GRID.get(trainer) or [""])
            points = [expand_layers(p, text_depth(trainer, args.cfg)) for p in points] if "{layers:" in "".join(points) else points
            planned[trainer] = {}
            for point in points:
                runs, evals = plan(trainer, point, test_new=args.test_new_after_choice)
                point_plans.append(runs)  # a two-stage host's run is its own "" point's: run_sweep runs it once
                planned[trainer][point] = evals
            host = protocols.host_trainer(trainer)
            if host is not None:  # the anchor check: the host's bundled point and each point's anchor
                checks[trainer] = {}
                host_runs, host_evals = plan(host, "")
                point_plans.append(host_runs)
                for point in points:
                    anchor_runs, anchor_evals = plan(trainer, anchor_point(point))
                    point_plans.append(anchor_runs)
                    checks[trainer][point] = (anchor_evals, host_evals)
        n_failed = sweep.run_sweep(point_plans, args, out, in_process=not args.subprocess)[1]
        if n_failed:
            print(f"{n_failed} run(s) failed", file=out)
    except protocols.ProtocolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    results = {t: {p: summarize(evals) for p, evals in pe.items()} for t, pe in planned.items()}
    rules = {t: args.select or SELECT_DEFAULT.get(t, "base") for t in planned}
    rows = []
    for trainer, point_results in results.items():
        # The worst anchor - host cell of each point (EMPL trainers); below -ANCHOR_MARGIN, or
        # with no cell measured, a point is not eligible.
        worst = {p: min(gaps, default=None) for p, gaps in
                 ((p, anchor_gaps(*checks[trainer][p])) for p in point_results)} if trainer in checks else {}
        ineligible = {p for p, w in worst.items() if w is None or w < -ANCHOR_MARGIN}
        best, unchecked = (choose_checked(point_results, rules[trainer], ineligible) if len(point_results) > 1
                           else (None, False))
        for point, r in point_results.items():
            cells = ["–"] * 5
            if r:
                cells = [f"{r['base']:.2f} ± {r['base_sd']:.2f}", f"{r['heldout']:.2f} ± {r['heldout_sd']:.2f}",
                         f"{r['H']:.2f}", f"{r[f'score_{rules[trainer]}']:.2f}", f"{r['minutes']:.1f}"]
            mark = (("**chosen**" + (" (no point passes the anchor check)" if unchecked else "")) if point == best
                    else "transductive: not eligible" if transductive(point)
                    else f"anchor below host - {ANCHOR_MARGIN:g}: not eligible" if point in ineligible and not unchecked
                    else "")
            anchor = ["" if worst.get(point) is None else f"{worst[point]:+.1f}"] if checks else []
            rows.append([trainer, point or "(bundled.yaml)", *cells, *anchor, mark])
    described = args.select or ", ".join(f"{t}: {rules[t]}" for t in planned)
    print(f"\n## Tuning on validation data (selection: {described}; seeds {' '.join(map(str, args.seeds))}; "
          f"tasks {', '.join(args.tasks)})\n", file=out)
    print("Val base and held-out: mean over tasks and seeds ± the std over seeds of each seed's task average. "
          f"Score: the rule's quantity, mean minus std over seeds; the chosen point is the one with the least "
          f"training and evaluation time (Minutes: CPU time where the runs' logs report it) among those within "
          f"{TIE} of the best score; times within "
          f"{COST_TIE:.0%} of the least are the same cost, and of those the best score is chosen.\n", file=out)
    if checks:
        print(f"Anchor - host: an EMPL point's worst cell (task, seed, val base or held-out) of its anchor alone "
              f"against its host's bundled point; below -{ANCHOR_MARGIN:g} the point is not eligible, unless no "
              f"point passes (then the rule chooses among all, and the check is missed).\n", file=out)
    print(md_table(["Trainer", "Config opts over bundled.yaml", "Val base", "Held-out", "H", "Score", "Minutes",
                    *(["Anchor - host"] if checks else []), ""], rows), file=out)
    if args.test_new_after_choice:
        print_agreement(results, out)
    return 0


def print_agreement(results, out) -> None:
    """After the choice: each point's held-out accuracy beside its test new accuracy, and their
    correlation over each trainer's points."""
    rows, notes = [], []
    for trainer, point_results in results.items():
        for point, r in point_results.items():
            if r and r.get("test_new") is not None:
                rows.append([trainer, point or "(bundled.yaml)", f"{r['heldout']:.2f}", f"{r['test_new']:.2f}"])
        corr = agreement(point_results)
        if corr is not None:
            notes.append(f"{trainer}: Pearson r {corr[0]:+.2f}, Spearman rho {corr[1]:+.2f} over "
                         f"{sum(1 for r in point_results.values() if r)} points")
    if not rows:
        return
    print("\n## Held-out against test new classes (read after the choice, not for it)\n", file=out)
    print(md_table(["Trainer", "Config opts over bundled.yaml", "Held-out", "Test new"], rows), file=out)
    for note in notes:
        print(f"\n{note}", file=out)


if __name__ == "__main__":
    sys.exit(main())
