"""Run EMPL and the methods it is compared with on the same datasets, seeds and budget; print the table.

    python -m tools.compare                                   # bundled data, default trainers, 1 seed
    python -m tools.compare --protocol all --in-process --jobs 2 --seeds 1 2 3 --std   # the main job (scripts/quickstart.sh)
    python -m tools.compare --root data --datasets synthetic_shapes --trainers CoOp EMPL_CoOp \
        --seeds 1 --cfg tiny --shots 4 --output-dir output/compare -- OPTIM.MAX_EPOCH 1
    python -m tools.compare --root $DATA --datasets eurosat dtd --cfg vit_b16_ep50_ctxv1 --seeds 1 2 3

Every trainer runs through tools/run_protocol.py (same layout, skip/resume rules) with the same
--cfg name (configs/trainers/<T>/<cfg>.yaml; ZeroshotCLIP uses CoOp's, as scripts/coop/zeroshot.sh;
without --cfg, the bundled benchmark's: bundled for base-to-new, bundled_xd for the transfer
protocols' source training), the same shots, seeds and extra config opts (after '--'), so the
budgets match. --protocol takes several protocols (or all); the transfer protocols share their
source runs. --in-process runs train.py's run (launch.main) in a Python process (tools/execution.run_in_process), and
--jobs N spreads the runs over a work queue of N such processes (tools/work_queue.py). A trainer that is
not registered or has no such config is skipped with a one-line note. Then tools/make_tables.py
prints the side-by-side table of the trainers and datasets compared (and writes it, with CSV,
under OUTPUT_DIR/tables; plots with --plots).
"""
import argparse
import os
import sys

from tools import execution, protocols, sweep
from tools.reporting.results import TableError
from tools.reporting.tables import write_tables

DEFAULT_TRAINERS = ("CoOp", "MaPLe", "EMPL_CoOp", "EMPL_MaPLe")
DEFAULT_SEEDS = (1,)


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    own, extra_opts = sweep.split_extra_opts(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m tools.compare",
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config opts after '--' (KEY VALUE ...) go to every train.py call of every trainer.",
    )
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="dataset config names (default: the bundled tasks of the protocol)")
    parser.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS))
    parser.add_argument("--protocol", nargs="+", default=["base2new"],
                        help="base2new, cross_dataset, domain_generalization, or all (the three)")
    parser.add_argument("--in-process", action="store_true",
                        help="runs call train.py's run (launch.main) in a Python process instead of starting train.py "
                             "(faster: imports once, shared images and image features)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="run in a work queue over this many worker processes of one thread each "
                             "(longest runs first, progress and time to go; default 0: one after another)")
    parser.add_argument("--plots", help="folder for the PNG plots")
    parser.add_argument("--no-tables", action="store_true",
                        help="only run (for parallel groups of trainers; a later call makes the tables)")
    parser.add_argument("--std", action="store_true", help="show ± std over seeds")
    sweep.add_run_arguments(parser, seeds=DEFAULT_SEEDS, output_dir=os.path.join("output", "compare"))
    # Not $DATA: real data needs --root (and --datasets, --source for the transfer protocols).
    parser.set_defaults(root=protocols.BUNDLED["root"], source=protocols.BUNDLED["source"])
    args = parser.parse_args(own)
    try:
        planned, datasets = plan_comparison(args, extra_opts, out)
        runs, n_failed = sweep.run_sweep(planned, args, out, in_process=args.in_process)
        if args.dry_run or args.no_tables:
            return 1 if n_failed else 0
        trainers = sorted({r.trainer for r in runs})
        write_tables(args.output_dir, plots_dir=args.plots, show_std=args.std, trainers=trainers,
                     datasets=sorted(set(protocols.resolve_datasets(datasets))), source=args.source, stream=out)
    except (protocols.ProtocolError, TableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return execution.exit_status(n_failed, out)


def plan_comparison(args, extra_opts, out):
    """([the runs of each protocol], the datasets named) of compare's arguments; the transfer
    protocols' shared source runs are merged by run_sweep."""
    protocol_names = list(protocols.BUNDLED["datasets"]) if args.protocol == ["all"] else args.protocol
    planned, datasets = [], []
    for protocol in map(protocols.normalize_protocol, protocol_names):
        names = args.datasets or list(protocols.BUNDLED["datasets"][protocol])
        kwargs = dict(sweep.run_kwargs(args, extra_opts), cfg=args.cfg or protocols.BUNDLED["cfg"][protocol])
        planned.append(protocols.plan(protocol, args.trainers, names, out=out, **kwargs))
        datasets += names
    if not any(planned):
        raise protocols.ProtocolError(f"none of the trainers {args.trainers} can run here (see the notes above)")
    return planned, datasets

if __name__ == "__main__":
    sys.exit(main())
