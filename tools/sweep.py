"""One sweep runner: the runs of every point of a grid, planned by the command, merged by output
folder (a run two points share, such as a two-stage host's run, runs once) and executed in one
work queue; and the command-line options the sweep commands share.

The sweeps: run_protocol (one protocol), compare (trainers x protocols), ablate_empl (EMPL's
settings, one compare per value), tune_bundled (each trainer's grid on validation data), and
sgld_diagnostics (sampler settings measured on one trained run, built in this process).
"""
import argparse
import os
import shlex
import sys
from typing import Iterable, List, Sequence, Tuple

from tools.execution import execute
from tools.protocols import DEFAULT_SEEDS, DEFAULT_SHOTS, DEFAULT_SOURCE, ProtocolError, Run, merge_runs


def split_extra_opts(argv: Sequence[str]):
    """(own args, config opts after the first '--')."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def add_run_arguments(parser: argparse.ArgumentParser, seeds=DEFAULT_SEEDS, shots=DEFAULT_SHOTS, output_dir="output"):
    """The options the sweep commands share (run_protocol, compare, ablate_empl, tune_bundled)."""
    parser.add_argument("--root", default=os.environ.get("DATA", ""), help="dataset root (default: $DATA)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--shots", type=int, default=shots)
    parser.add_argument("--cfg", default=None, help="config name for every trainer (default: TRAINER_DEFAULTS)")
    parser.add_argument("--output-dir", default=output_dir, help="output root (CoOp's output/)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="source dataset of cross_dataset / domain_generalization")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--verbose", action="store_true", help="stream each run's output (default: one line per run)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for train.py")


def run_kwargs(args, extra_opts):
    if not args.root:
        raise ProtocolError("no dataset root: pass --root or set DATA (layouts: docs/DATASETS.md)")
    check_extra_opts(extra_opts)
    return dict(
        seeds=args.seeds, root=args.root, output_root=args.output_dir, cfg=args.cfg, shots=args.shots,
        source=args.source, extra_opts=extra_opts, python=args.python,
    )


def check_extra_opts(extra_opts: Sequence[str]) -> None:
    """Refuse config opts after '--' that are not KEY VALUE pairs."""
    if len(extra_opts) % 2:
        raise ProtocolError(f"config opts after '--' must be KEY VALUE pairs, got {list(extra_opts)}")


def parse_point(point: str) -> List[str]:
    """"KEY VALUE KEY VALUE" -> opts list (quotes allowed for empty values: '')."""
    opts = shlex.split(point)
    if len(opts) % 2:
        raise ProtocolError(f"a grid point must be KEY VALUE pairs, got {point!r}")
    return opts


def run_sweep(planned: Iterable[Sequence[Run]], args, out, in_process: bool) -> Tuple[List[Run], int]:
    """(every run, the number that failed) of the points' planned runs, merged by folder and
    executed (or, with --dry-run, printed) in one queue of --jobs workers."""
    by_folder = {}
    for runs in planned:
        merge_runs(by_folder, runs)
    runs = list(by_folder.values())
    return runs, execute(runs, dry_run=args.dry_run, out=out, verbose=args.verbose, in_process=in_process,
                         jobs=getattr(args, "jobs", 0))
