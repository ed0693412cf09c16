"""Run EMPL and the methods it is compared with on the same datasets, seeds and budget; print the table.

    python tools/compare.py                                   # bundled data, default trainers, 1 seed
    python tools/compare.py --root data --datasets synthetic_shapes --trainers CoOp EMPL_CoOp \
        --seeds 1 --cfg tiny --shots 4 --output-dir output/compare -- OPTIM.MAX_EPOCH 1
    python tools/compare.py --root $DATA --datasets eurosat dtd --cfg vit_b16_ep50_ctxv1 --seeds 1 2 3

Every trainer runs through tools/run_protocol.py (same layout, skip/resume rules) with the same
--cfg name (configs/trainers/<T>/<cfg>.yaml; ZeroshotCLIP uses CoOp's, as scripts/coop/zeroshot.sh),
the same shots, seeds and extra config opts (after '--'), so the budgets match. A trainer that is
not registered or has no such config is skipped with a one-line note. Then tools/make_tables.py
prints the side-by-side table of the trainers and datasets compared (and writes it, with CSV,
under OUTPUT_DIR/tables; plots with --plots).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import make_tables, run_protocol  # noqa: E402

# The bundled benchmark (docs/BENCHMARK.md): its base-to-new tasks and the config name every
# trainer uses on it (configs/trainers/<T>/bundled.yaml: the world-pretrained tiny CLIP).
# Cross-dataset and domain generalization train on WorldShapes (all classes) and test on the other
# task or on WorldShapes' restyled renderings.
BUNDLED = {
    "datasets": {
        "base2new": ("world_shapes", "world_compositions"),
        "cross_dataset": ("world_compositions",),
        "domain_generalization": run_protocol.SHIFTED_DOMAINS["world_shapes"],
    },
    "source": "world_shapes",
    "cfg": "bundled",
    "root": os.path.join(ROOT, "data"),
}
DEFAULT_TRAINERS = ("CoOp", "MaPLe", "EMPL_CoOp", "EMPL_MaPLe")
DEFAULT_SEEDS = (1,)


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    own, extra_opts = run_protocol.split_extra_opts(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config opts after '--' (KEY VALUE ...) go to every train.py call of every trainer.",
    )
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="dataset config names (default: the bundled tasks of the protocol)")
    parser.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS))
    parser.add_argument("--protocol", default="base2new", help="base2new, cross_dataset or domain_generalization")
    parser.add_argument("--plots", help="folder for the PNG plots")
    parser.add_argument("--std", action="store_true", help="show ± std over seeds")
    run_protocol.add_run_arguments(parser, seeds=DEFAULT_SEEDS, output_dir=os.path.join("output", "compare"))
    # Not $DATA: real data needs --root (and --datasets, --source for the transfer protocols).
    parser.set_defaults(root=BUNDLED["root"], cfg=BUNDLED["cfg"], source=BUNDLED["source"])
    args = parser.parse_args(own)
    try:
        if args.datasets is None:
            protocol = run_protocol.normalize_protocol(args.protocol)
            args.datasets = list(BUNDLED["datasets"][protocol])
        runs = run_protocol.plan(args.protocol, args.trainers, args.datasets, out=out,
                                 **run_protocol.run_kwargs(args, extra_opts))
        if not runs:
            raise run_protocol.ProtocolError(f"none of the trainers {args.trainers} can run here (see the notes above)")
        n_failed = run_protocol.execute(runs, dry_run=args.dry_run, out=out, verbose=args.verbose)
        if args.dry_run:
            return 0
        trainers = sorted({r.trainer for r in runs})
        datasets = sorted({r.dataset for r in runs})
        make_tables.make_tables(args.output_dir, plots_dir=args.plots, show_std=args.std, trainers=trainers,
                                datasets=datasets, source=args.source, stream=out)
    except (run_protocol.ProtocolError, make_tables.TableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if n_failed:
        print(f"{n_failed} run(s) failed; re-run the same command to resume them", file=out)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
