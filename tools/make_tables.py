"""The paper's tables (base-to-new, domain generalization, cross-dataset) and plots from an output tree.

    python -m tools.make_tables output                      # tables to stdout and output/tables/
    python -m tools.make_tables output --std --plots figs   # mean +- std over seeds; PNG plots in figs/
    python -m tools.make_tables output --trainers CoOp EMPL_CoOp --datasets eurosat dtd

It reads the layout tools/run_protocol.py and scripts/protocols/*.sh write, found anywhere under
the given root (several roots, e.g. one per sweep value, may sit under it):
  <r>/base2new/train_base/<D>/shots_<S>/<T>/<CFG>/seed<N>/log.txt   base accuracy (training log)
  <r>/base2new/test_base/...  (eval-only; preferred over train_base when present, e.g. ZeroshotCLIP)
  <r>/base2new/test_new/...   new accuracy
  <r>/<source>/<T>/<CFG>_<S>shots/seed<N>/log.txt                   source accuracy (training log)
  <r>/evaluation/<T>/<CFG>_<S>shots/<D>/seed<N>/log.txt             target (or ZeroshotCLIP source) accuracy
Accuracies are parse_test_res.py's: the last "* accuracy: X%" after "Finish training" (training
logs) or "=> result" (eval-only logs). Logs without a result block (unfinished runs) are counted
and left out.

A *method* is one (root, trainer, config, shots); it is labeled by its trainer name, with the
config, shots and root added only where needed to tell methods apart.

Conventions (as CoOp, CoCoOp and MaPLe report):
- per dataset, base and new are the mean over seeds; "+-" is the population std over seeds
  (parse_test_res.py's); H = 2 * base * new / (base + new) of the two means (no std);
- the Average row is the mean over datasets of the per-dataset means of base and of new, and its
  H is the harmonic mean of those two averages, not the mean of the per-dataset H values (the
  CoCoOp and MaPLe papers' tables do this: e.g. MaPLe's 82.28 / 75.14 -> H 78.55);
- domain generalization and cross-dataset: mean over seeds per target; the Average column is the
  mean over the targets present (MaPLe's cross-dataset average is over the 10 targets);
- an average over fewer datasets than the table shows is marked "(k/n)".
Published numbers come from docs/reference_results.json and appear as extra rows labeled with
their source.

Outputs: <out>/{base2new,domain_generalization,cross_dataset}.{md,csv} (out: --out, default
<root>/tables) and, with --plots DIR, PNGs: base2new_average.png (average base, new, H per method with
std error bars), base2new_H_by_dataset.png and, when EMPL runs with
different TRAINER.EMPL.OPEN_LOSS_WEIGHT / N_CHAINS values exist, base2new_vs_open_loss_weight.png and
base2new_vs_n_chains.png (values read from each run's config.yaml, or for runs made before
train.py wrote it, from the config dump in its log.txt: tools/run_loading.py).
The CSV is long: table,dataset,method,metric,mean,std,n,source (n: seeds, or datasets for an
average; source: "measured" or the published source's label).
"""
import argparse
import sys

from tools.reporting.results import TableError
from tools.reporting.tables import write_tables
from tools.protocols import DEFAULT_SOURCE


def main(argv=None, stream=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_tables", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output root (the folder holding base2new/, evaluation/, <source>/)")
    parser.add_argument("--out", help="folder for the .md and .csv files (default: ROOT/tables)")
    parser.add_argument("--plots", help="folder for the PNG plots (default: none)")
    parser.add_argument("--std", action="store_true", help="show ± std over seeds")
    parser.add_argument("--trainers", nargs="+", help="only these trainers")
    parser.add_argument("--datasets", nargs="+", help="only these datasets (config names)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="source dataset of the transfer tables")
    args = parser.parse_args(argv)
    try:
        write_tables(args.root, args.out, args.plots, args.std, args.trainers, args.datasets, args.source, stream)
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
