"""Diversity of a trained multi-prompt learner's prompts and of their text features.

    python -m tools.prompt_diversity RUN [RUN ...] --root DATA --out DIR [--labels ...] [--opts KEY VALUE ...]

Prompts per method:
- EMPL_CoOp / EMPL_ProDA: each anchor plus N_CHAINS samples drawn by the trainer's own SGLD
  sampler from the loaded anchor(s), conditioned on the calibration batch (the first training
  batch, as amortized inference does). The samples are hidden states at text block L - l
  (TRAINER.EMPL.SGLD_LAYERS); the anchor is compared at the same block.
- ProDA: its K prompt sets (token embeddings).
- CoOp: its single context (diversity 0 by construction; a reference row).

For the P prompts (rows = flattened context vectors [M * d]) and, per class, their P text
features [D]: mean pairwise cosine distance and effective rank (exp of the entropy of the
normalised singular values; uncentred and centred on the mean prompt). Also the mean pairwise
rms distance in units of rms(prompt), the sampler's own `sgld_diversity` measure
(trainers/sgld.py). Writes DIR/prompt_diversity.csv and prints a Markdown table.
"""
import argparse
import os.path as osp

import torch

from tools.analysis import add_run_folder_arguments, analyse_runs, trainer_prompts, write_csv
from tools.embedding_stats import prompt_set_diversity
from tools.reporting.tables import md_table
from trainers.sgld import _mean_pairwise_rms, rms


def prompt_diversity(context: torch.Tensor, text_features: torch.Tensor) -> dict:
    """context [P, M, d], text_features [P, C, D] -> diversity of the prompts and (mean over
    classes) of their text features."""
    rows = context.flatten(1).double()
    out = {"n_prompts": rows.shape[0]}
    out.update({f"context_{k}": v for k, v in prompt_set_diversity(rows).items()})
    offsets = (rows - rows.mean(0, keepdim=True)) / rms(rows, (0, 1))
    out["context_rms_distance"] = _mean_pairwise_rms(offsets.unsqueeze(0))  # sgld's measure
    per_class = [prompt_set_diversity(text_features[:, c]) for c in range(text_features.shape[1])]
    for key in per_class[0]:
        out[f"text_{key}"] = sum(d[key] for d in per_class) / len(per_class)
    return out


COLUMNS = (
    "n_prompts", "context_mean_cosine_distance", "context_effective_rank", "context_effective_rank_centered",
    "context_rms_distance", "text_mean_cosine_distance", "text_effective_rank", "text_effective_rank_centered",
)


def markdown_table(rows) -> str:
    header = ["run", "trainer", "prompts", "level", "ctx cos dist", "ctx erank", "ctx erank (centred)",
              "ctx rms dist / r", "text cos dist", "text erank", "text erank (centred)"]
    table = []
    for r in rows:
        cells = [r["run"], r["trainer"], str(r["n_prompts"]), r["level"]]
        cells += [f"{r[k]:.4g}" for k in COLUMNS[1:]]
        table.append(cells)
    return md_table(header, table)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.prompt_diversity", description=__doc__.split("\n")[0])
    add_run_folder_arguments(parser, "folder for prompt_diversity.csv", "TRAINER.EMPL.N_CHAINS 16")
    return parser


def main(argv=None) -> str:
    args = build_parser().parse_args(argv)
    rows = analyse_runs(args, measure)
    path = osp.join(args.out, "prompt_diversity.csv")
    write_csv(path, rows, ("run", "trainer", "run_dir", "level", *COLUMNS))
    table = markdown_table(rows)
    print(table)
    print(f"\nwrote {path}")
    return table


def measure(trainer, run_dir: str) -> dict:
    """One run's row: its trainer, where its prompts live, and their diversity."""
    prompts = trainer_prompts(trainer)
    return {"trainer": trainer.cfg.TRAINER.NAME, "level": prompts["level"],
            **prompt_diversity(prompts["context"], prompts["text_features"])}


if __name__ == "__main__":
    from launch import run_reporting_user_errors

    run_reporting_user_errors(main)
