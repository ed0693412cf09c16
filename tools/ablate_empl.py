"""EMPL's ablations on the bundled benchmark (or any base-to-new datasets): one key at a time.

    python -m tools.ablate_empl --seeds 1 2 3 --jobs 2                      # every ablation below
    python -m tools.ablate_empl --ablations open_loss_weight n_chains --seeds 1 2 3 --plots docs/figures

Each ablation varies one TRAINER.EMPL key over the paper's values (or turns a component off),
every other setting staying at the trainer's config (configs/trainers/<T>/<cfg>.yaml: for the
bundled benchmark, the defaults chosen on validation data). Each value is one compare-style
base-to-new run set (all seeds and datasets) in OUTPUT_DIR/<value's opts>/; a value equal to the
config's is the shared "default" set, trained once, and a two-stage trainer's host runs are
trained once, in the default set, for every value. The table gives base, new and H as mean ±
std over seeds (each seed's average over the datasets), and H's paired difference from the
default with its 95% interval (as tools/paired_stats.py); the std is the population std over seeds,
as in the compare tables. Runs are resumable (compare's skip
rules): re-running the command only adds what is missing. Reported numbers are test splits; no
setting here is chosen from them.
"""
import argparse
import os
import sys
from typing import Dict, List, Sequence, Tuple

from tools import execution, protocols, sweep
from tools.reporting import paired, plots
from tools.reporting.results import collect_results
from tools.reporting.summaries import average_over_seeds
from tools.reporting.tables import md_table

E = protocols.EMPL_PREFIX
_COOP_LR, _COOP_EPOCHS = protocols.bundled_budget("CoOp")
_COOP_LR_TENTH = protocols.lr_fraction(_COOP_LR, 10)
# name -> [(label, opts)]: the paper's ablations (Fig. 6: lambda, the weight of L_out, and unseen words;
# Fig. 7: number of prompts, the chains per anchor; Table 4: SGLD layers) and this project's (L_out's form, components, gradient, inference).
ABLATIONS: Dict[str, List[Tuple[str, List[str]]]] = {
    "open_loss_weight": [(v, [E + "OPEN_LOSS_WEIGHT", v]) for v in ("0.0", "0.01", "0.1", "1.0")],  # floats: yacs checks the type
    "unseen": [(v, [E + "N_UNSEEN", v]) for v in ("1", "2", "4", "8")],
    "n_chains": [(v, [E + "N_CHAINS", v]) for v in ("0", "1", "2", "4", "8")],
    "sgld_layers": [(v, [E + "SGLD_LAYERS", v]) for v in ("1", "2", "3", "4")],
    "open_loss": [(v, [E + "OPEN_LOSS", v]) for v in ("entropy", "energy", "none")],
    "components": [
        ("sampling + L_out (EMPL)", []),
        ("sampling, no L_out", [E + "OPEN_LOSS_WEIGHT", "0.0"]),
        ("L_out, no sampling", [E + "N_CHAINS", "0"]),
        ("neither", [E + "N_CHAINS", "0", E + "OPEN_LOSS_WEIGHT", "0.0"]),
    ],
    "sgld_gradient": [(v, [E + "SGLD_GRADIENT", v]) for v in ("exact", "anchor")],
    "chains": [("persistent, SGLD_STEPS 1", []), ("fresh, SGLD_STEPS 4", [E + "PERSISTENT", "False", E + "SGLD_STEPS", "4"])],
    # How EMPL is trained: two-stage (from the host's run of the same data and seed, 10 epochs at
    # a tenth of the host's LR, or at the host's LR) or from the host's CTX_INIT at the host's
    # budget (CoOp's, read from its bundled.yaml).
    "training": [(f"two-stage, 10 epochs at LR {_COOP_LR_TENTH}", [E + "HOST_RUN", "auto", "OPTIM.MAX_EPOCH", "10", "OPTIM.LR", _COOP_LR_TENTH]),
                 (f"two-stage, 10 epochs at LR {_COOP_LR}", [E + "HOST_RUN", "auto", "OPTIM.MAX_EPOCH", "10", "OPTIM.LR", _COOP_LR]),
                 (f"from CTX_INIT, {_COOP_EPOCHS} epochs at LR {_COOP_LR}",
                  [E + "HOST_RUN", "", "OPTIM.MAX_EPOCH", str(_COOP_EPOCHS), "OPTIM.LR", _COOP_LR])],
    "in_loss": [(v, [E + "IN_LOSS", v]) for v in ("mixture", "per_prompt")],
    "vocabulary": [("training classes removed", [E + "VOCAB_EXCLUDE", "training"]),
                   ("every class of the dataset removed (strict)", [E + "VOCAB_EXCLUDE", "dataset"])],
    # TEST_TOP_K stated on both sampled rows: a config may set it (EMPL_CoOp's bundled ones do).
    "inference": [("sample, all classes", [E + "INFERENCE", "sample", E + "TEST_TOP_K", "0"]),
                  ("sample, top 3 classes", [E + "INFERENCE", "sample", E + "TEST_TOP_K", "3"]),
                  ("sample_batch (transductive)", [E + "INFERENCE", "sample_batch"]),
                  ("amortized", [E + "INFERENCE", "amortized"]), ("anchor", [E + "INFERENCE", "anchor"])],
}
# Ablations of inference only: the default's trained models are evaluated again (base and new
# test splits) with the value's opts, instead of training anew.
EVAL_ONLY = {"inference"}


def config_defaults(trainer: str, cfg: str) -> dict:
    """The trainer's resolved config (defaults + config file), for telling default values apart."""
    import launch

    argv = ["--trainer", trainer, "--config-file", protocols.config_path(trainer, cfg)]
    return launch.config_from_argv(argv)


def folder_name(opts: Sequence[str], defaults) -> str:
    """'default' when every opt equals the config's value, else the opts that differ."""
    changed = []
    for key, value in protocols.opt_pairs(opts):
        node = defaults
        for part in key.split("."):
            node = node[part]
        # bool("False") is True: compare booleans as text, other values in the config's type.
        same = str(node) == value if isinstance(node, bool) else type(node)(value) == node
        if not same:
            changed.append(f"{key.replace(E, '')}-{value}")
    return "-".join(changed) or "default"


def evaluation_runs(args, folder: str, opts: Sequence[str], trained: Dict[str, protocols.Run]) -> List[protocols.Run]:
    """Eval-only runs of the default folder's trained models (base and new test splits) with opts,
    written under OUTPUT_DIR/<folder>/base2new/test_{base,new}/ as run_protocol lays them out;
    each depends on the default's training run of its dataset and seed (trained: {folder: run})."""
    config_file = protocols.config_path(args.trainer, args.cfg)
    epoch = str(protocols.max_epoch(config_file, []))
    runs = []
    for dataset in args.datasets or protocols.BUNDLED_BASE2NEW:
        for seed in args.seeds:
            tail = os.path.join(dataset, f"shots_{args.shots}", args.trainer, args.cfg, f"seed{seed}")
            model_dir = os.path.join(args.output_dir, "default", "base2new", "train_base", tail)
            for part, subsample in (("test_base", "base"), ("test_new", "new")):
                out = os.path.join(args.output_dir, folder, "base2new", part, tail)
                argv = protocols.train_argv(args.python, args.root, seed, args.trainer, dataset, config_file, out,
                                            ["--model-dir", model_dir, "--load-epoch", epoch, "--eval-only",
                                             "DATASET.NUM_SHOTS", str(args.shots),
                                             "DATASET.SUBSAMPLE_CLASSES", subsample, *opts])
                runs.append(protocols.Run(args.trainer, args.cfg, dataset, seed, out, argv, True, trained.get(model_dir)))
    return runs


def training_runs(args, folder: str, opts: Sequence[str]) -> List[protocols.Run]:
    """One value's base-to-new runs (compare's, with the value's opts) under OUTPUT_DIR/<folder>.
    A two-stage trainer's host runs are the "default" folder's, at the host's own config, shared
    by every value: a value's opts (EMPL's keys, or how EMPL trains: OPTIM.LR, OPTIM.MAX_EPOCH)
    are EMPL's alone."""
    kwargs = dict(sweep.run_kwargs(args, list(opts)), output_root=os.path.join(args.output_dir, folder),
                  host_output_root=os.path.join(args.output_dir, "default"), host_opts=[])
    return protocols.plan("base2new", [args.trainer], args.datasets or list(protocols.BUNDLED_BASE2NEW),
                          out=sys.stderr, **kwargs)


def run_sets(args, plan: Dict[str, List[Tuple[str, str, List[str]]]], out) -> int:
    """Train every distinct folder's runs and evaluate the inference-only ablations on the
    default's models, all in one work queue of --jobs processes; -> failures."""
    folders, evaluations = {"default": []}, {}
    for name, rows in plan.items():
        for _, folder, opts in rows:
            if name in EVAL_ONLY and folder != "default":
                evaluations.setdefault(folder, opts)
            else:
                folders.setdefault(folder, opts)
    planned = [training_runs(args, folder, opts) for folder, opts in folders.items()]
    trained = {run.output_dir: run for runs in planned for run in runs}
    planned += [evaluation_runs(args, folder, opts, trained) for folder, opts in evaluations.items()]
    return sweep.run_sweep(planned, args, out, in_process=True)[1]


def folder_results(args, folder: str):
    """The finished runs of one value's folder ([] when it has none yet)."""
    path = os.path.join(args.output_dir, folder)
    return collect_results(path)[0] if os.path.isdir(path) else []


def summarize(args, name: str, rows) -> Tuple[str, list]:
    """Markdown table of one ablation and the points for its plot."""
    default_results = folder_results(args, "default")
    table, points = [], []
    for label, folder, _ in rows:
        results = folder_results(args, folder)
        per_seed = paired.seed_averages(results, args.trainer)
        expected = set(args.datasets or protocols.BUNDLED_BASE2NEW)
        seeds = sorted(s for s, by_dataset in per_seed.items()  # seeds with every dataset finished
                       if {d for d, v in by_dataset.items() if len(v) == 2} >= expected)
        if not seeds:
            table.append([label, "–", "–", "–", "–", "0"])
            continue
        # The compare tables' Average row, over the seeds that finished every dataset.
        average = average_over_seeds([({s: per_seed[s][d]["base"] for s in seeds},
                                        {s: per_seed[s][d]["new"] for s in seeds}) for d in sorted(expected)])
        stats = {"base": (average["base"].mean, average["base"].std),
                 "new": (average["new"].mean, average["new"].std), "H": (average["H"], average["H_std"])}
        delta = "(default)" if folder == "default" else "–"
        if folder != "default" and default_results:
            seeds_d, diffs = paired.seed_differences(paired.seed_averages(results, args.trainer),
                                                     paired.seed_averages(default_results, args.trainer))
            if len(seeds_d) >= 2:
                mean, low, high = paired.t_interval(diffs["H"])
                delta = f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"
        table.append([label] + [f"{stats[m][0]:.2f} ± {stats[m][1]:.2f}" for m in paired.METRICS]
                     + [delta, str(len(seeds))])
        points.append((label, stats))
    md = md_table([name, "base", "new", "H", "H - default [95% CI]", "seeds"], table)
    return md, points


def plot(trainer: str, name: str, points, path: str) -> str:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = list(range(len(points)))
    for i, (metric, style) in enumerate((("base", "o-"), ("new", "s--"), ("H", "^:"))):
        ax.errorbar([x + (i - 1) * 0.06 for x in xs], [p[1][metric][0] for p in points],
                    yerr=[p[1][metric][1] for p in points], fmt=style, capsize=3, label=metric)
    ax.set_xticks(xs)
    long_labels = max(len(p[0]) for p in points) > 12  # tilted, so that long labels do not overlap
    ax.set_xticklabels([p[0] for p in points], rotation=15 if long_labels else 0,
                       ha="right" if long_labels else "center", fontsize="small")
    ax.set_xlabel(name)
    ax.set_ylabel("accuracy (%), mean ± std over seeds")
    ax.set_title(f"{trainer} ablation: {name} (synthetic)")
    return plots.save_with_outside_legend(plt, fig, ax, path)


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m tools.ablate_empl", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ablations", nargs="+", choices=list(ABLATIONS), default=list(ABLATIONS))
    parser.add_argument("--trainer", default="EMPL_CoOp")
    parser.add_argument("--datasets", nargs="+", help="base-to-new datasets (default: the bundled tasks)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes of the work queue (one per core)")
    parser.add_argument("--plots", help="folder for one PNG per ablation")
    sweep.add_run_arguments(parser, seeds=(1, 2, 3), output_dir=os.path.join("output", "ablations"))
    parser.set_defaults(root=protocols.BUNDLED["root"], cfg=protocols.BUNDLED["cfg"]["base2new"])
    args = parser.parse_args(argv)
    defaults = config_defaults(args.trainer, args.cfg)
    plan = {name: [(label, folder_name(opts, defaults), opts) for label, opts in ABLATIONS[name]]
            for name in args.ablations}
    n_failed = run_sets(args, plan, out)
    if args.dry_run:
        return 0
    for name, rows in plan.items():
        md, points = summarize(args, name, rows)
        print(f"\n### {name}\n\n{md}", file=out)
        if args.plots and points:
            os.makedirs(args.plots, exist_ok=True)
            print(f"(plot: {plot(args.trainer, name, points, os.path.join(args.plots, f'ablation_{name}.png'))})", file=out)
    return execution.exit_status(n_failed, out, "run set(s)")


if __name__ == "__main__":
    sys.exit(main())
