"""Paired comparisons of two trainers over the same seeds: differences with 95% confidence intervals.

    python -m tools.paired_stats output/quickstart --pairs EMPL_CoOp:CoOp EMPL_ProDA:ProDA

For each seed, base and new are averaged over the base-to-new datasets both trainers finished
with that seed, and H is the harmonic mean of those averages; the difference A - B is taken per
seed (runs with the same seed see the same data), and its mean gets a Student-t 95% interval
over seeds. An interval above zero means A beats B on these seeds beyond seed noise.

    python -m tools.paired_stats output/quickstart --protocol cross_dataset --pairs EMPL_CoOp:CoOp

The transfer protocols compare each seed's mean accuracy over the targets (cross-dataset: every
evaluated dataset but the source and its shifted domains; domain generalization: the source's
shifted domains). `--cells 2` lists instead every task, seed and split where A is more than 2
points below B (EMPL's anchor check). Zero-shot CLIP has no seed: a pair with it compares every
seed of A with its one value (a one-sample interval).

    python -m tools.paired_stats output/ablations/N_CHAINS-0 output/ablations/default --pairs EMPL_CoOp:CoOp --cells 2

With several folders each trainer's runs come from the first folder that holds any of them (an
ablation's value folder holds EMPL's runs; the host's are in the default folder).

    python -m tools.compare --trainers CoOp ProDA --seeds 1 2 3 4 5 --output-dir output/rerun -- TRAIN.SEED_OFFSET 100
    python -m tools.paired_stats output/quickstart --pairs EMPL_CoOp:CoOp EMPL_ProDA:ProDA --cells 2 --rerun output/rerun

--rerun adds, for every pair's B, "B (re-run) - B": B re-trained on the same few-shot data with
other training randomness (TRAIN.SEED_OFFSET: initialisation, batch order, sampling), the
difference that chance in training alone makes, as a yardstick for A - B. A pair may also name
a re-run: --pairs "EMPL_ProDA:ProDA (re-run)".
"""
import argparse
import dataclasses
import os
import sys
from typing import Tuple

from tools.reporting.paired import render, render_cells, render_transfer
from tools import run_loading
from tools.reporting.results import collect_results, config_string
from tools.protocols import DEFAULT_SOURCE


def parse_pair(text: str) -> Tuple[str, str]:
    first, sep, second = text.partition(":")
    if not sep or not first or not second:
        raise argparse.ArgumentTypeError(f"a pair is TRAINER_A:TRAINER_B, got {text!r}")
    return first, second


def first_folder_per_trainer(per_folder):
    """Results of several folders ([[RunResult]], in order), each trainer's from the first
    folder that holds any of its runs."""
    merged, taken = [], set()
    for results in per_folder:
        trainers = {r.trainer for r in results} - taken
        merged += [r for r in results if r.trainer in trainers]
        taken |= trainers
    return merged


RERUN = " (re-run)"  # the name suffix of a trainer's runs from --rerun's folder


def not_reruns(rerun_results, pairs):
    """The training runs among rerun_results, of trainers the pairs name, made without
    TRAIN.SEED_OFFSET: they repeat the runs they would be compared with instead of re-running them."""
    named = {t.removesuffix(RERUN) for pair in pairs for t in pair}
    return [r for r in rerun_results if r.trainer in named and r.part in ("train_base", "source") and config_string(
        run_loading.read_config_dump(os.path.dirname(r.log_path)), "TRAIN.SEED_OFFSET") in (None, "0")]


def with_reruns(results, pairs, rerun_results):
    """(results with the re-runs named "T (re-run)", pairs + "B (re-run)":B for every pair's B
    that has re-runs, each once). A pair may name a re-run itself, e.g. "EMPL_ProDA:ProDA (re-run)"."""
    reruns = [dataclasses.replace(r, trainer=r.trainer + RERUN) for r in rerun_results]
    found = {r.trainer for r in reruns}
    hosts = [b for b in dict.fromkeys(b for _, b in pairs) if b + RERUN in found]
    return results + reruns, list(pairs) + [(b + RERUN, b) for b in hosts]


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m tools.paired_stats", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="root",
                        help="output folders holding the runs (compare.py's --output-dir); each trainer's runs "
                             "come from the first folder that holds any")
    parser.add_argument("--pairs", nargs="+", type=parse_pair, required=True, help="A:B, e.g. EMPL_CoOp:CoOp")
    parser.add_argument("--protocol", default="base2new", choices=["base2new", "cross_dataset", "domain_generalization"])
    parser.add_argument("--source", help="the transfer protocols' source dataset (default: the one the runs trained on)")
    parser.add_argument("--cells", type=float, metavar="MARGIN",
                        help="base-to-new: instead of the intervals, list every task, seed and split where A is "
                             "more than MARGIN points below B (EMPL's anchor check: --cells 2)")
    parser.add_argument("--rerun", metavar="ROOT",
                        help="a folder of trainers re-trained on the same data with TRAIN.SEED_OFFSET: adds "
                             "'B (re-run) - B' for each pair's B found there; a pair may name 'T (re-run)' too")
    args = parser.parse_args(argv)
    results = first_folder_per_trainer([collect_results(root)[0] for root in args.roots])
    if args.rerun:
        rerun_results = collect_results(args.rerun)[0]
        plain = not_reruns(rerun_results, args.pairs)
        if plain:
            print(f"error: {len(plain)} training run(s) under {args.rerun} were made without TRAIN.SEED_OFFSET, e.g. "
                  f"{os.path.dirname(plain[0].log_path)}: they repeat the runs instead of re-running them. Make the "
                  "re-runs with '-- TRAIN.SEED_OFFSET 100' in another --output-dir", file=sys.stderr)
            return 2
        results, args.pairs = with_reruns(results, args.pairs, rerun_results)
    if not results:
        print(f"error: no finished runs under {' or '.join(args.roots)}", file=sys.stderr)
        return 2
    if args.protocol == "base2new":
        print(render(results, args.pairs) if args.cells is None else render_cells(results, args.pairs, args.cells), file=out)
        return 0
    sources = sorted({r.dataset for r in results if r.part == "source"})
    source = args.source or (sources[0] if len(sources) == 1 else DEFAULT_SOURCE)
    print(render_transfer(results, args.pairs, args.protocol, source), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
