"""The skeleton of the analyses of trained run folders (tools/modality_gap.py,
tools/prompt_diversity.py, tools/interpret_prompt.py): their command-line arguments, each run's
trainer rebuilt from its folder (tools/run_loading.py) and measured, the rows written as CSV, and
the prompts a trained learner predicts with.
"""
import argparse
import csv
import os
from typing import Callable, List

import torch

from dassl.utils import UserValueError
from tools.run_loading import build_trainer_from_run
from trainers.empl import EMPLMixin


def run_label(run_dir: str) -> str:
    """A short name for a run in tables: its trainer and the folder's last parts."""
    parts = os.path.normpath(run_dir).split(os.sep)
    return "/".join(parts[-2:]) if len(parts) >= 2 else parts[-1]


def add_run_folder_arguments(parser: argparse.ArgumentParser, out_help: str, opts_example: str) -> None:
    """The command-line arguments of a tool that analyses trained run folders (runs, --out,
    --root, --labels, --load-epoch, --opts). (tools/sweep.py's add_run_arguments are the
    options of a tool that launches runs.)"""
    parser.add_argument("runs", nargs="+", help="train.py output folders")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--root", default="", help="dataset root (default: the run's DATASET.ROOT)")
    parser.add_argument("--labels", nargs="+", help="names of the runs in the table (default: folder)")
    parser.add_argument("--load-epoch", type=int, help="checkpoint epoch (default: the last saved)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help=f"config overrides for every run, e.g. {opts_example}")


def run_labels(args: argparse.Namespace) -> List[str]:
    """--labels, or each run's run_label; also makes the --out folder."""
    if args.labels and len(args.labels) != len(args.runs):
        raise UserValueError(f"--labels gives {len(args.labels)} names for {len(args.runs)} runs")
    os.makedirs(args.out, exist_ok=True)
    return list(args.labels) if args.labels else [run_label(run_dir) for run_dir in args.runs]


def write_csv(path: str, rows, columns) -> None:
    """The analysis tools' CSV output: one line per row dict, the given columns in order."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k) for k in columns})


def analyse_runs(args: argparse.Namespace, measure: Callable[[object, str], dict]) -> List[dict]:
    """[{"run": label, "run_dir": folder, **measure(trainer, folder)}] over the command line's run
    folders, each trainer rebuilt from its folder with --root, --opts and --load-epoch."""
    rows = []
    for label, run_dir in zip(run_labels(args), args.runs):
        trainer = build_trainer_from_run(run_dir, args.root or None, args.opts, args.load_epoch)
        rows.append({"run": label, "run_dir": run_dir, **measure(trainer, run_dir)})
    return rows


@torch.no_grad()
def trainer_prompts(trainer):
    """The prompts a trained prompt learner predicts with.

    -> dict(context [P, M, d] (P prompts; EMPL: K anchors x (1 + N_CHAINS), anchor first in
    each group), text_features [P, C, D] (normalised), level: where the context vectors live).
    """
    learner = trainer.model.prompt_learner
    if isinstance(trainer, EMPLMixin):
        with trainer.autocast():
            hidden, eot = trainer.prefix_states([learner.classes])
            calibration = trainer.calibration_features()
            features, _, result = trainer.sampled_features(hidden, eot, calibration, sample=True, condition="batch")
        anchors = trainer.split_text.context_states(hidden[:, 0]).unsqueeze(1)  # [K, 1, M, d]
        context = anchors if result is None else torch.cat([anchors, result.samples.type(anchors.dtype)], 1)
        split = trainer.split_text.split
        level = "token + positional embeddings" if split == 0 else f"hidden states at text block {split}"
        return {"context": context.flatten(0, 1).float(), "text_features": features.flatten(0, 1).float(), "level": level}
    if not hasattr(learner, "ctx"):
        raise UserValueError(f"{type(trainer).__name__} has no learned context (ctx) to analyse")
    if hasattr(learner, "context_sets"):
        context = learner.context_sets()  # [K, M, d]
    elif learner.ctx.dim() == 2:
        context = learner.ctx.unsqueeze(0)  # one shared context
    else:
        raise UserValueError("class-specific contexts (CSC) are one prompt per class, not a prompt set")
    return {
        "context": context.detach().float(),
        "text_features": trainer.inference_text_features().float(),
        "level": "token embeddings",
    }
