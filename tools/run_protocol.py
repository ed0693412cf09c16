"""Run a protocol (many train.py runs) with CoOp's output layout; skip finished runs, resume the rest.

    python -m tools.run_protocol base2new --trainers CoOp EMPL_CoOp --root $DATA
    python -m tools.run_protocol cross_dataset --trainers all --seeds 1 --dry-run
    python -m tools.run_protocol domain_generalization --trainers EMPL_ProDA -- OPTIM.MAX_EPOCH 5

Protocols (the datasets are CoOp's config names, configs/datasets/<name>.yaml):
- base2new: per dataset and seed, train on the base classes
  (output/base2new/train_base/<D>/shots_<S>/<T>/<CFG>/seed<N>; its log's final accuracy is the
  base accuracy), then evaluate the last epoch on the new classes (.../test_new/...). Exactly
  scripts/protocols/base2new_{train,test}.sh.
- cross_dataset / domain_generalization: per seed, train once on the source (ImageNet, all
  classes) at output/<source>/<T>/<CFG>_<S>shots/seed<N>, then evaluate it on every target at
  output/evaluation/<T>/<CFG>_<S>shots/<D>/seed<N> (scripts/protocols/xd_{train,test}.sh).
  Both protocols share the source runs.
- ZeroshotCLIP trains nothing: it runs --eval-only with CoOp's config of the same name (as
  scripts/coop/zeroshot.sh), on base and new (base2new/test_base, test_new) or on the source
  and the targets (evaluation/), with the first seed only (it is deterministic).

A run is *finished* when its log.txt holds Dassl's result block: an "* accuracy: X%" line after
"Finish training" (training runs) or after "=> result" (--eval-only runs); that is what
parse_test_res.py and tools/make_tables.py read. Finished runs are skipped. An unfinished
training run whose folder has a checkpoint pointer (<model>/checkpoint) is *resumed*: train.py
is run again on the same --output-dir and Dassl's resume_model_if_exist restores weights,
optimizer, scheduler and RNG states and continues from the saved epoch (a run stopped after its
last checkpoint only runs the final test). Any other unfinished run starts over. Before
re-running, the old log.txt is renamed log.txt-interrupted-<time>, so the new log.txt holds the
result block (Dassl would otherwise write the new log to log.txt-<time>); a run that starts over
also sets its old config.yaml aside the same way.
The output folder identifies a run: changing extra opts (or a config file) does not re-run a
finished run, whose skip line then says its config.yaml differs; use another --output-dir (one
per sweep value) for that.
"""
import argparse
import sys

from tools.execution import execute, exit_status
from tools.protocols import TRAINER_DEFAULTS, ProtocolError, plan
from tools.sweep import add_run_arguments, run_kwargs, split_extra_opts


def main(argv=None, out=None) -> int:
    own, extra_opts = split_extra_opts(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m tools.run_protocol",
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config opts after '--' (KEY VALUE ...) go to every train.py call.",
    )
    parser.add_argument("protocol", help="base2new, cross_dataset (xd) or domain_generalization (dg)")
    parser.add_argument("--trainers", nargs="+", required=True, help=f"'all' or names from: {', '.join(TRAINER_DEFAULTS)}")
    parser.add_argument("--datasets", nargs="*", help="datasets (targets for xd/dg); default: the protocol's")
    add_run_arguments(parser)
    args = parser.parse_args(own)
    try:
        runs = plan(args.protocol, args.trainers, args.datasets, out=out, **run_kwargs(args, extra_opts))
    except ProtocolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return exit_status(execute(runs, dry_run=args.dry_run, out=out, verbose=args.verbose), out)


if __name__ == "__main__":
    sys.exit(main())
