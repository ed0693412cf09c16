"""Choose a trainer's budget on validation data only: the bundled benchmark's tuning protocol.

    python tools/tune_bundled.py --trainers CoOp MaPLe --seeds 1 2           # the grid below, in one process
    python tools/tune_bundled.py --trainers CoOp --points "OPTIM.LR 0.01 OPTIM.MAX_EPOCH 10"

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
EMPL trainers' sampling settings (EMPL exists for new-class accuracy; SELECT_DEFAULT). Nothing
here reads a test split of a reported task; the held-out tasks' images are used for nothing else.

The same command tunes on a real dataset (--root $DATA --tasks eurosat --cfg vit_b16_ep50_ctxv1):
a task without a <task>_heldout config trains on the first half of its base classes
(DATASET.SUBSAMPLE_CLASSES base_fit) and holds the other half out (base_heldout), val splits
only, so the new classes are never read.
"""
import argparse
import os
import statistics
import sys
from typing import Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import parse_test_res  # noqa: E402
from tools import compare, make_tables, run_protocol  # noqa: E402

# Candidate budgets per trainer (config opts over bundled.yaml). Every point costs at most 200
# optimisation steps per run, so that the main job fits its 10-minute budget on 2 cores (longer
# budgets did a little better on val; docs/BENCHMARK.md lists them). The chosen ones are in the
# bundled.yaml files; docs/BENCHMARK.md has the table that chose them.
GRID: Dict[str, List[str]] = {
    "CoOp": [
        "OPTIM.LR 0.05 OPTIM.MAX_EPOCH 20",
        "OPTIM.LR 0.1 OPTIM.MAX_EPOCH 20",
        "OPTIM.LR 0.2 OPTIM.MAX_EPOCH 20",
    ],
    "CoCoOp": [
        "OPTIM.LR 0.01 OPTIM.MAX_EPOCH 10",
        "OPTIM.LR 0.05 OPTIM.MAX_EPOCH 10",
        "OPTIM.LR 0.1 OPTIM.MAX_EPOCH 10",
    ],
    "ProDA": [
        "OPTIM.LR 0.05 OPTIM.MAX_EPOCH 20",
        "OPTIM.LR 0.1 OPTIM.MAX_EPOCH 20",
        "OPTIM.LR 0.2 OPTIM.MAX_EPOCH 20",
    ],
    "MaPLe": [
        "OPTIM.LR 0.0035 OPTIM.MAX_EPOCH 5",
        "OPTIM.LR 0.01 OPTIM.MAX_EPOCH 5",
        "OPTIM.LR 0.035 OPTIM.MAX_EPOCH 5",
    ],
    # KgCoOp is CoOp plus one loss term: CoOp's chosen budget, and only the term's weight W
    # (1 and 8: the reference's train.py default and its scripts' value).
    "KgCoOp": [f"TRAINER.COOP.W {w}" for w in ("1.0", "2.0", "4.0", "8.0")],
    # PromptSRC: MaPLe's budget (5 epochs of batch 4), the LR, and the self-regulating losses'
    # weights at the reference's 25 / 10 and scaled to the world CLIP's width (x sqrt(64 / 512):
    # an L1 mean over D dimensions shrinks as 1 / sqrt(D)).
    "PromptSRC": [
        f"OPTIM.LR {lr} TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT {text} TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT {image}"
        for text, image, lrs in (("25", "10", ("0.0025", "0.0035", "0.01", "0.035", "0.1", "0.35")),
                                 ("9", "4", ("0.0035", "0.035", "0.1")))
        for lr in lrs
    ],
}
# The EMPL trainers keep their host's chosen budget (bundled.yaml): EMPL adds sampling to a host,
# it does not get its own optimiser search, as in the paper's configs. Their grid is over the
# sampler (docs/EMPL.md, "Choosing the defaults on validation data"): where the chains live
# (SGLD_LAYERS), how wide the prior is (PRIOR_STD, chains starting from it: INIT_STD = PRIOR_STD,
# step size PRIOR_STD^2 / 2) and how strongly the data term pulls (ENERGY_TEMP).
_E = "TRAINER.EMPL."
EMPL_GRID = [
    f"{_E}PERSISTENT False {_E}SGLD_LAYERS {layers} {_E}PRIOR_STD {p} {_E}INIT_STD {p} {_E}SGLD_STEP_SIZE {alpha} "
    f"{_E}SGLD_STEPS 4 {_E}ENERGY_TEMP {temp}"
    for layers in (2, 4) for p, alpha in (("0.3", "0.045"), ("1.0", "0.5")) for temp in ("1.0", "0.1", "0.01")
] + [f"{_E}N_PROMPTS 0"]
# Then, at the grid's best point, the two cheaper samplers (Build point 4: cost): the data
# gradient taken once at the anchor, and persistent chains with one step per training step.
_BEST = f"{_E}SGLD_LAYERS 4 {_E}PRIOR_STD 1.0 {_E}INIT_STD 1.0 {_E}SGLD_STEP_SIZE 0.5 {_E}ENERGY_TEMP 0.01"
EMPL_GRID += [f"{_E}PERSISTENT False {_BEST} {_E}SGLD_STEPS 4 {_E}SGLD_GRADIENT anchor",
              f"{_E}PERSISTENT True {_BEST} {_E}SGLD_STEPS 1"]
GRID["EMPL_CoOp"] = EMPL_GRID
SELECTIONS = ("base", "H")
SELECT_DEFAULT = {"EMPL_CoOp": "H", "EMPL_ProDA": "H", "EMPL_MaPLe": "H"}


def parse_point(point: str) -> List[str]:
    """"KEY VALUE KEY VALUE" -> opts list (quotes allowed for empty values: '')."""
    import shlex

    opts = shlex.split(point)
    if len(opts) % 2:
        raise run_protocol.ProtocolError(f"a grid point must be KEY VALUE pairs, got {point!r}")
    return opts


def point_runs(trainer: str, point: str, tasks: Sequence[str], seeds: Sequence[int], root: str, output_root: str,
               shots: int, cfg: str, python: str):
    """(runs in order, {(task, seed): (val run, held-out run)}) of one grid point."""
    opts = parse_point(point)
    slug = "-".join(o.replace("TRAINER.", "").replace("OPTIM.", "").replace("'", "") or "empty" for o in opts) or "default"
    config_file = run_protocol.config_path(trainer, cfg)
    eval_only = run_protocol.is_eval_only(trainer)
    load_epoch = None if eval_only else str(run_protocol.max_epoch(config_file, opts))
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
            train = None
            if not eval_only:
                argv = run_protocol.train_argv(python, root, seed, trainer, task, config_file, os.path.join(folder, "train"),
                                               ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", fit,
                                                "TEST.SPLIT", "val", *opts])
                train = run_protocol.Run(trainer, cfg, task, seed, os.path.join(folder, "train"), argv, False)
                runs.append(train)
            pair = []
            for name, dataset, extra in (("val_base", task, ["DATASET.SUBSAMPLE_CLASSES", fit, "TEST.SPLIT", "val"]),
                                         ("heldout", *heldout)):
                out = os.path.join(folder, name)
                argv = run_protocol.train_argv(python, root, seed, trainer, dataset, config_file, out, [])
                if train is not None:
                    argv += ["--model-dir", train.output_dir, "--load-epoch", load_epoch]
                argv += ["--eval-only", "DATASET.NUM_SHOTS", "0", *extra, *opts]
                run = run_protocol.Run(trainer, cfg, dataset, seed, out, argv, True, train)
                runs.append(run)
                pair.append(run)
            evals[(task, seed)] = tuple(pair)
    return runs, evals


def summarize(evals) -> Dict[str, float]:
    """Mean over tasks and seeds of val base, held-out, and the H of those two means."""
    base, held = [], []
    for val_run, heldout_run in evals.values():
        if not (os.path.isfile(val_run.log_path) and os.path.isfile(heldout_run.log_path)):
            continue  # a failed run (reported by execute) has no result
        b = parse_test_res.read_metric(val_run.log_path, "accuracy", parse_test_res.TEST_END_SIGNAL)
        h = parse_test_res.read_metric(heldout_run.log_path, "accuracy", parse_test_res.TEST_END_SIGNAL)
        if b is not None and h is not None:
            base.append(b)
            held.append(h)
    if not base:
        return {}
    mb, mh = statistics.fmean(base), statistics.fmean(held)
    return {"base": mb, "heldout": mh, "H": make_tables.harmonic_mean(mb, mh), "n": len(base)}


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", nargs="+", default=["ZeroshotCLIP"] + list(GRID))
    parser.add_argument("--points", nargs="+", help="grid points to try (default: GRID of each trainer)")
    parser.add_argument("--tasks", nargs="+", default=list(compare.BUNDLED_BASE2NEW))
    parser.add_argument("--select", choices=SELECTIONS,
                        help="selection rule for every trainer (default: SELECT_DEFAULT, else base)")
    parser.add_argument("--subprocess", action="store_true", help="one train.py process per run (default: in-process)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="every run of every point in one work queue over this many worker processes")
    run_protocol.add_run_arguments(parser, seeds=(1, 2), output_dir=os.path.join("output", "tune"))
    parser.set_defaults(root=compare.BUNDLED["root"], cfg=compare.BUNDLED["cfg"]["base2new"])
    args = parser.parse_args(argv)
    rows, chosen = [], []
    try:
        planned = {}  # trainer -> {point: evals}
        all_runs = []
        for trainer in args.trainers:
            points = [""] if run_protocol.is_eval_only(trainer) else args.points or (GRID.get(trainer) or [""])
            planned[trainer] = {}
            for point in points:
                runs, evals = point_runs(trainer, point, args.tasks, args.seeds, args.root, args.output_dir,
                                         args.shots, args.cfg, args.python)
                all_runs += runs
                planned[trainer][point] = evals
        n_failed = run_protocol.execute(all_runs, dry_run=args.dry_run, out=out, verbose=args.verbose,
                                        in_process=not args.subprocess, jobs=args.jobs)
        if n_failed:
            print(f"{n_failed} run(s) failed", file=out)
        for trainer, point_evals in planned.items():
            points = list(point_evals)
            results = {point: summarize(evals) for point, evals in point_evals.items()}
            scored = {p: r for p, r in results.items() if r}
            rule = args.select or SELECT_DEFAULT.get(trainer, "base")
            best = max(scored, key=lambda p: scored[p][rule]) if scored else None
            for point, r in results.items():
                mark = "**chosen**" if point == best and len(points) > 1 else ""
                rows.append([trainer, point or "(bundled.yaml)"] + ([f"{r['base']:.2f}", f"{r['heldout']:.2f}",
                                                                     f"{r['H']:.2f}", str(r["n"])] if r else ["–"] * 4)
                            + [mark])
            if best is not None:
                chosen.append((trainer, best))
    except run_protocol.ProtocolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    rules = args.select or ", ".join(f"{t}: {SELECT_DEFAULT.get(t, 'base')}" for t in args.trainers)
    print(f"\n## Tuning on validation data (selection: {rules}; seeds {' '.join(map(str, args.seeds))}; "
          f"tasks {', '.join(args.tasks)})\n", file=out)
    print(make_tables.md_table(["Trainer", "Config opts over bundled.yaml", "Val base", "Held-out", "H", "runs", ""],
                               rows), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
