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
different TRAINER.EMPL.LAMBDA / N_PROMPTS values exist, base2new_vs_lambda.png and
base2new_vs_n_prompts.png (values read from each run's config.yaml, or for runs made before
train.py wrote it, from the config dump in its log.txt: tools/run_loading.py).
The CSV is long: table,dataset,method,metric,mean,std,n,source (n: seeds, or datasets for an
average; source: "measured" or the published source's label).
"""
import argparse
import collections
import csv
import io
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

import parse_test_res
from tools import run_loading
from tools.run_protocol import (
    BASE2NEW_DATASETS,
    CROSS_DATASET_TARGETS,
    DEFAULT_SOURCE,
    SHIFTED_DOMAINS,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REFERENCE_FILE = os.path.join(ROOT, "docs", "reference_results.json")
MEASURED = "measured"
AVERAGE = "average"
CSV_FIELDS = ["table", "dataset", "method", "metric", "mean", "std", "n", "source"]
SWEEP_KEYS = {"lambda": "TRAINER.EMPL.LAMBDA", "n_prompts": "TRAINER.EMPL.N_PROMPTS"}


@dataclass(frozen=True)
class RunResult:
    tree: str  # the output root holding this run, relative to the walked root ("." for itself)
    part: str  # train_base, test_base, test_new, source, evaluation
    trainer: str
    cfg: str
    shots: int
    dataset: str
    seed: int
    accuracy: float
    log_path: str

    @property
    def method_key(self) -> Tuple[str, str, str, int]:
        return (self.tree, self.trainer, self.cfg, self.shots)


class TableError(ValueError):
    pass


# ------------------------------------------------------------------------------------ reading
def _seed(name: str) -> Optional[int]:
    match = re.fullmatch(r"seed(\d+)", name)
    return int(match.group(1)) if match else None


def _read(log_path: str, eval_only: bool) -> Optional[float]:
    signal = parse_test_res.TEST_END_SIGNAL if eval_only else parse_test_res.TRAIN_END_SIGNAL
    return parse_test_res.read_metric(log_path, "accuracy", signal)


def _subdirs(path: str) -> List[str]:
    return sorted(d for d in os.listdir(path) if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))


def find_output_trees(root: str, max_depth: int = 4) -> List[str]:
    """Folders under root (root included) that hold base2new/ or evaluation/."""
    trees = []
    for dirpath, dirnames, _ in os.walk(root):
        depth = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
        if "base2new" in dirnames or "evaluation" in dirnames:
            trees.append(dirpath)
        dirnames[:] = [d for d in dirnames if d not in ("base2new", "evaluation") and depth < max_depth
                       and not d.startswith("seed")]
    return sorted(trees)


def collect_results(root: str) -> Tuple[List[RunResult], int]:
    """Every finished run under root, and the number of logs without a result block."""
    if not os.path.isdir(root):
        raise TableError(f"{root} is not a directory")
    results, unfinished = [], 0

    def add(tree, part, trainer, cfg, shots, dataset, seed_dir, eval_only):
        nonlocal unfinished
        seed = _seed(os.path.basename(seed_dir))
        log = os.path.join(seed_dir, "log.txt")
        if seed is None or not os.path.isfile(log):
            return
        acc = _read(log, eval_only)
        if acc is None:
            unfinished += 1
            return
        results.append(RunResult(os.path.relpath(tree, root), part, trainer, cfg, shots, dataset, seed, acc, log))

    for tree in find_output_trees(root):
        b2n = os.path.join(tree, "base2new")
        if os.path.isdir(b2n):
            for part in _subdirs(b2n):
                if part not in ("train_base", "test_base", "test_new"):
                    continue
                for dataset in _subdirs(os.path.join(b2n, part)):
                    for shots_dir in _subdirs(os.path.join(b2n, part, dataset)):
                        if not shots_dir.startswith("shots_"):
                            continue
                        shots = int(shots_dir[len("shots_"):])
                        base = os.path.join(b2n, part, dataset, shots_dir)
                        for trainer in _subdirs(base):
                            for cfg in _subdirs(os.path.join(base, trainer)):
                                for seed_dir in _subdirs(os.path.join(base, trainer, cfg)):
                                    add(tree, part, trainer, cfg, shots, dataset,
                                        os.path.join(base, trainer, cfg, seed_dir), part != "train_base")
        evaluation = os.path.join(tree, "evaluation")
        if os.path.isdir(evaluation):
            for trainer in _subdirs(evaluation):
                for cfg_shots in _subdirs(os.path.join(evaluation, trainer)):
                    match = re.fullmatch(r"(.+)_(\d+)shots", cfg_shots)
                    if not match:
                        continue
                    for dataset in _subdirs(os.path.join(evaluation, trainer, cfg_shots)):
                        d = os.path.join(evaluation, trainer, cfg_shots, dataset)
                        for seed_dir in _subdirs(d):
                            add(tree, "evaluation", trainer, match.group(1), int(match.group(2)), dataset,
                                os.path.join(d, seed_dir), True)
        for source in _subdirs(tree):  # <source>/<T>/<CFG>_<S>shots/seed<N>: source training runs
            if source in ("base2new", "evaluation", "tables", "plots"):
                continue
            for trainer in _subdirs(os.path.join(tree, source)):
                for cfg_shots in _subdirs(os.path.join(tree, source, trainer)):
                    match = re.fullmatch(r"(.+)_(\d+)shots", cfg_shots)
                    if not match:
                        continue
                    d = os.path.join(tree, source, trainer, cfg_shots)
                    for seed_dir in _subdirs(d):
                        add(tree, "source", trainer, match.group(1), int(match.group(2)), source,
                            os.path.join(d, seed_dir), False)
    return results, unfinished


def read_config_value(log_path: str, dotted_key: str) -> Optional[str]:
    """The value of e.g. TRAINER.EMPL.LAMBDA in the config of the run whose log is log_path
    (tools/run_loading.py: its config.yaml, or the config dump in log.txt), as a string; None if
    absent or the run has no readable config."""
    try:
        dump = run_loading.read_config_dump(os.path.dirname(log_path))
    except run_loading.NotARunDirError:
        return None
    return _config_string(dump, dotted_key)


def _config_string(dump: dict, dotted_key: str) -> Optional[str]:
    value = run_loading.config_value(dump, dotted_key)
    return None if value is None or isinstance(value, dict) else str(value)


def load_reference(path: str = REFERENCE_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------- summaries
def harmonic_mean(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        mean, std = parse_test_res.mean_and_spread(list(values))
        return cls(mean, std, len(values))


def method_labels(keys: Sequence[Tuple[str, str, str, int]]) -> Dict[Tuple[str, str, str, int], str]:
    """Trainer name, plus config / shots / tree where two methods of one trainer differ in them."""
    by_trainer = collections.defaultdict(list)
    for key in keys:
        by_trainer[key[1]].append(key)
    labels = {}
    for trainer, group in by_trainer.items():
        for key in group:
            tree, _, cfg, shots = key
            extra = []
            if len({k[2] for k in group}) > 1:
                extra.append(cfg)
            if len({k[3] for k in group}) > 1:
                extra.append(f"{shots} shots")
            if len({k[0] for k in group}) > 1:
                extra.append(tree)
            labels[key] = f"{trainer} ({', '.join(extra)})" if extra else trainer
    return labels


def _order(datasets, canonical) -> List[str]:
    return [d for d in canonical if d in datasets] + sorted(d for d in datasets if d not in canonical)


def _select(results, trainers=None, datasets=None):
    out = results
    if trainers:
        out = [r for r in out if r.trainer in trainers]
    if datasets:
        # for transfer tables the source run is kept whatever the dataset filter
        out = [r for r in out if r.dataset in datasets or r.part == "source"]
    return out


def base2new_summary(results: Sequence[RunResult]):
    """{label: {dataset: {"base": Stat, "new": Stat, "H": float}, "average": {...}}}, datasets, labels.
    Base per seed comes from test_base when that run exists, else from the train_base log."""
    runs = [r for r in results if r.part in ("train_base", "test_base", "test_new")]
    labels = method_labels(sorted({r.method_key for r in runs}))
    values = collections.defaultdict(dict)  # (label, dataset, metric) -> {seed: acc}
    for r in sorted(runs, key=lambda r: r.part != "train_base"):  # test_base overrides train_base
        metric = "new" if r.part == "test_new" else "base"
        values[(labels[r.method_key], r.dataset, metric)][r.seed] = r.accuracy
    datasets = _order({r.dataset for r in runs}, BASE2NEW_DATASETS)
    summary = {}
    for label in dict.fromkeys(labels.values()):
        rows = {}
        for dataset in datasets:
            base, new = values.get((label, dataset, "base")), values.get((label, dataset, "new"))
            row = {}
            if base:
                row["base"] = Stat.of(list(base.values()))
            if new:
                row["new"] = Stat.of(list(new.values()))
            if base and new:
                row["H"] = harmonic_mean(row["base"].mean, row["new"].mean)
            if row:
                rows[dataset] = row
        complete = [d for d in datasets if "H" in rows.get(d, {})]
        if complete:
            rows[AVERAGE] = _average_over_seeds(
                [(values[(label, d, "base")], values[(label, d, "new")]) for d in complete])
        summary[label] = rows
    return summary, datasets


def _average_over_seeds(per_dataset: Sequence[Tuple[Dict[int, float], Dict[int, float]]]) -> dict:
    """The Average row of base-to-new from per-dataset {seed: base}, {seed: new}: base and new are
    the mean over datasets of their seed means, H their harmonic mean (the papers' convention).
    The spreads are over seeds, of each seed's average over datasets (and of its H), for the
    seeds every dataset has."""
    avg_base = statistics.fmean(statistics.fmean(base.values()) for base, _ in per_dataset)
    avg_new = statistics.fmean(statistics.fmean(new.values()) for _, new in per_dataset)
    seeds = sorted(set.intersection(*(set(base) & set(new) for base, new in per_dataset)))
    seed_base = [statistics.fmean(base[s] for base, _ in per_dataset) for s in seeds]
    seed_new = [statistics.fmean(new[s] for _, new in per_dataset) for s in seeds]
    seed_h = [harmonic_mean(b, n) for b, n in zip(seed_base, seed_new)]
    spread = {name: parse_test_res.mean_and_spread(v)[1] if v else 0.0
              for name, v in (("base", seed_base), ("new", seed_new), ("H", seed_h))}
    n = len(per_dataset)
    return {"base": Stat(avg_base, spread["base"], n), "new": Stat(avg_new, spread["new"], n),
            "H": harmonic_mean(avg_base, avg_new), "H_std": spread["H"], "seeds": len(seeds)}


def transfer_summary(results: Sequence[RunResult], targets: Sequence[str], source: str = DEFAULT_SOURCE):
    """{label: {dataset: Stat, "average": Stat over targets}}, columns (source first), for the
    domain-generalization (targets = ImageNet variants) or cross-dataset table."""
    runs = [r for r in results if (r.part == "evaluation" and (r.dataset in targets or r.dataset == source))
            or (r.part == "source" and r.dataset == source)]
    if not any(r.part == "evaluation" and r.dataset in targets for r in runs):
        return {}, []
    labels = method_labels(sorted({r.method_key for r in runs}))
    values = collections.defaultdict(dict)
    for r in sorted(runs, key=lambda r: r.part != "source"):
        values[(labels[r.method_key], r.dataset)][r.seed] = r.accuracy
    present_targets = _order({r.dataset for r in runs if r.dataset in targets and r.dataset != source}, targets)
    columns = [source] + present_targets
    summary = {}
    for label in dict.fromkeys(labels.values()):
        row = {d: Stat.of(list(values[(label, d)].values())) for d in columns if values.get((label, d))}
        have = [d for d in present_targets if d in row]
        if have:
            seeds = sorted(set.intersection(*(set(values[(label, d)]) for d in have)))
            per_seed = [statistics.fmean(values[(label, d)][s] for d in have) for s in seeds]
            spread = parse_test_res.mean_and_spread(per_seed)[1] if per_seed else 0.0
            row[AVERAGE] = Stat(statistics.fmean(row[d].mean for d in have), spread, len(have))
        summary[label] = row
    return summary, columns


# ---------------------------------------------------------------------------------- rendering
def _cell(stat: Optional[Stat], show_std: bool, total: Optional[int] = None) -> str:
    if stat is None:
        return "–"
    text = f"{stat.mean:.2f}"
    if show_std:
        text += f" ± {stat.std:.2f}"
    if total is not None and stat.n < total:
        text += f" ({stat.n}/{total})"
    return text


def md_table(header: List[str], rows: List[List[str]]) -> str:
    """A GitHub Markdown table (tabulate's "github" format) of already formatted cells: the
    tools' one table printer. Cells are printed as given (no number parsing, which would
    rewrite e.g. 80.00 as 80)."""
    return tabulate([[str(cell) for cell in row] for row in rows], headers=[str(h) for h in header],
                    tablefmt="github", disable_numparse=True)


def _published_rows(reference: dict, table: str):
    return [(row, reference["sources"][row["source"]]["label"]) for row in reference.get(table, [])]


def render_base2new(summary, datasets, reference, show_std=False):
    """(markdown, csv rows). As in the CoCoOp and MaPLe papers: one small table per dataset and
    one for the average, each with a row per method (Base, New, H); published rows, labelled
    with their source, under the measured ones of the same dataset."""
    labels = list(summary)
    published = _published_rows(reference, "base2new")
    # A published average is over the protocol's real datasets: it stands beside an average of
    # those datasets only, not beside the bundled benchmark's (synthetic) tasks.
    published_average_applies = set(datasets) <= set(BASE2NEW_DATASETS)
    csv_rows, blocks = [], []
    n_datasets = len(datasets)
    for dataset in [AVERAGE] + datasets:
        rows = []
        total = n_datasets if dataset == AVERAGE else None
        for label in labels:
            cell = summary[label].get(dataset, {})
            if not cell:
                continue
            h_cell = f"{cell['H']:.2f}" if "H" in cell else "–"
            if "H_std" in cell and show_std:
                h_cell += f" ± {cell['H_std']:.2f}"
            rows.append([label, _cell(cell.get("base"), show_std, total), _cell(cell.get("new"), show_std, total),
                         h_cell])
            for metric in ("base", "new", "H"):
                if metric in cell:
                    stat = cell[metric]
                    if metric == "H":
                        mean, std, n = stat, cell.get("H_std", ""), cell["base"].n
                    else:
                        mean, std, n = stat.mean, stat.std, stat.n
                    csv_rows.append(["base2new", dataset, label, metric, _num(mean), _num(std), n, MEASURED])
        shown = {label.split(" (")[0] for label in labels}
        for p, source_label in published:
            if p["dataset"] == dataset and p["trainer"] in shown and (dataset != AVERAGE or published_average_applies):
                rows.append([f"{p['method']} (published: {source_label})"]
                            + [f"{p[m]:.2f}" if m in p else "–" for m in ("base", "new", "H")])
        title = f"Average over {n_datasets} dataset{'s' * (n_datasets != 1)}" if dataset == AVERAGE else dataset
        blocks.append(f"### {title}\n\n" + md_table(["Method", "Base", "New", "H"], rows))
    for p, source_label in published:
        for metric in ("base", "new", "H"):
            if metric in p:
                csv_rows.append(["base2new", p["dataset"], p["method"], metric, _num(p[metric]), "", "", source_label])
    md = "## Base-to-new generalization (accuracy %, mean over seeds" + (" ± std" if show_std else "") + ")\n\n"
    md += "\n\n".join(blocks)
    md += ("\n\nH = 2·Base·New/(Base+New) of the mean Base and New; the average's H is that of the averages. "
           + ("The average's ± are over seeds, of each seed's average over the datasets (and of its H). "
              if show_std else "") +
           "Published rows come from docs/reference_results.json (all published rows are in the CSV).\n")
    return md, csv_rows


def render_transfer(table: str, title: str, summary, columns, reference, show_std=False):
    header = ["Method"] + columns + ["Average"]
    rows, csv_rows = [], []
    n_targets = len(columns) - 1
    for label, row_stats in summary.items():
        row = [label] + [_cell(row_stats.get(d), show_std) for d in columns]
        row.append(_cell(row_stats.get(AVERAGE), show_std, n_targets))
        rows.append(row)
        for d in columns + [AVERAGE]:
            if d in row_stats:
                s = row_stats[d]
                csv_rows.append([table, d, label, "accuracy", _num(s.mean), _num(s.std), s.n, MEASURED])
    for p, source_label in _published_rows(reference, table):
        acc = p["accuracy"]
        for d, value in acc.items():
            csv_rows.append([table, d, p["method"], "accuracy", _num(value), "", "", source_label])
        if not set(acc) & set(columns):  # published on other datasets (its average is theirs too)
            continue
        rows.append([f"{p['method']} (published: {source_label})"]
                    + [f"{acc[d]:.2f}" if d in acc else "–" for d in columns]
                    + [f"{acc[AVERAGE]:.2f}" if AVERAGE in acc else "–"])
    md = f"## {title} (accuracy %, mean over seeds" + (" ± std" if show_std else "") + ")\n\n"
    md += md_table(header, rows)
    md += f"\n\nSource: {columns[0]}; Average: mean over the targets shown.\n"
    return md, csv_rows


def _num(x) -> str:
    return "" if x == "" else f"{x:.4f}"


def write_outputs(name: str, md: str, csv_rows, out_dir: str, stream) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.md"), "w", encoding="utf-8") as f:
        f.write(md)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    writer.writerows(csv_rows)
    with open(os.path.join(out_dir, f"{name}.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())
    print(md, file=stream)
    print(f"(written: {os.path.join(out_dir, name)}.md and .csv)\n", file=stream)


# ------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_base_new_h(summary, path: str) -> str:
    """Average base, new and H per method, with error bars (std over seeds), on an axis cut to
    the range of the data so the differences show; the legend sits outside the axes."""
    plt = _pyplot()
    labels = [label for label in summary if AVERAGE in summary[label]]
    metrics = (("base", "Base"), ("new", "New"), ("H", "H"))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    lows, highs = [], []
    for i, label in enumerate(labels):
        avg = summary[label][AVERAGE]
        means = [avg[m].mean if m != "H" else avg["H"] for m, _ in metrics]
        stds = [avg[m].std if m != "H" else avg.get("H_std", 0.0) for m, _ in metrics]
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(metrics))]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=label)
        lows += [m - s for m, s in zip(means, stds)]
        highs += [m + s for m, s in zip(means, stds)]
    if lows:
        span = max(highs) - min(lows)
        ax.set_ylim(max(0.0, min(lows) - 0.15 * span - 1), min(100.0, max(highs) + 0.1 * span + 1))
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([name for _, name in metrics])
    ax.set_ylabel("accuracy (%), average over datasets")
    ax.set_title("Base-to-new (mean ± std over seeds)")
    return _save_with_outside_legend(plt, fig, ax, path)


def _save_with_outside_legend(plt, fig, ax, path: str) -> str:
    """The legend right of the axes (it covers no bar), then the PNG."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_h_by_dataset(summary, datasets, path: str) -> str:
    plt = _pyplot()
    groups = datasets + [AVERAGE]
    labels = list(summary)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(groups) * max(1, len(labels) / 2)), 4))
    values = []
    for i, label in enumerate(labels):
        xs = [g + (i - (len(labels) - 1) / 2) * width for g in range(len(groups))]
        hs = [summary[label].get(d, {}).get("H", 0.0) for d in groups]
        values += [h for h in hs if h > 0]
        ax.bar(xs, hs, width, label=label)
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right")
    ax.set_ylabel("H (harmonic mean of base and new, %)")
    ax.set_title("Base-to-new: H per dataset")
    return _save_with_outside_legend(plt, fig, ax, path)


def sweep_points(results: Sequence[RunResult], sweep: str):
    """{trainer: {value: (base, new, H)}} for EMPL base-to-new runs that differ in the swept key,
    holding the other swept key at its most common value. Per value: mean over seeds per dataset,
    then over the datasets that every value has."""
    key = SWEEP_KEYS[sweep]
    others = [k for k in SWEEP_KEYS.values() if k != key]
    per_run = collections.defaultdict(dict)  # (trainer, value, dataset, seed) -> {metric: acc}
    other_values = {}
    for r in results:
        if not r.trainer.startswith("EMPL") or r.part not in ("train_base", "test_base", "test_new"):
            continue
        try:
            dump = run_loading.read_config_dump(os.path.dirname(r.log_path))
        except run_loading.NotARunDirError:
            continue
        raw = _config_string(dump, key)
        if raw is None:
            continue
        other_values[r] = tuple(_config_string(dump, k) for k in others)
        per_run[(r.trainer, float(raw), r.dataset, r.seed, other_values[r])]["new" if r.part == "test_new" else "base"] = r.accuracy
    points = {}
    for trainer in sorted({k[0] for k in per_run}):
        keys = [k for k in per_run if k[0] == trainer and len(per_run[k]) == 2]
        if not keys:
            continue
        modal = collections.Counter(k[4] for k in keys).most_common(1)[0][0]
        keys = [k for k in keys if k[4] == modal]
        values = sorted({k[1] for k in keys})
        if len(values) < 2:
            continue
        common = set.intersection(*({k[2] for k in keys if k[1] == v} for v in values))
        if not common:
            continue
        points[trainer] = {}
        for v in values:
            bases, news = [], []
            for d in sorted(common):
                seeds = [per_run[k] for k in keys if k[1] == v and k[2] == d]
                bases.append(statistics.fmean(s["base"] for s in seeds))
                news.append(statistics.fmean(s["new"] for s in seeds))
            b, n = statistics.fmean(bases), statistics.fmean(news)
            points[trainer][v] = (b, n, harmonic_mean(b, n))
    return points


def plot_sweep(points, sweep: str, path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for trainer, by_value in points.items():
        xs = sorted(by_value)
        for i, (metric, style) in enumerate((("base", "o-"), ("new", "s--"), ("H", "^:"))):
            ax.plot(xs, [by_value[x][i] for x in xs], style, label=f"{trainer} {metric}")
    ax.set_xlabel(SWEEP_KEYS[sweep])
    ax.set_ylabel("accuracy (%), mean over datasets")
    if sweep == "lambda" and all(x > 0 for by in points.values() for x in by):
        ax.set_xscale("log")
    ax.set_title(f"Base-to-new accuracy against {SWEEP_KEYS[sweep]}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------- main
def make_tables(root: str, out_dir: Optional[str] = None, plots_dir: Optional[str] = None, show_std: bool = False,
                trainers=None, datasets=None, source: str = DEFAULT_SOURCE, stream=None) -> Dict[str, str]:
    """Write the tables (and plots); return {name: path} of everything written."""
    stream = stream or sys.stdout
    results, unfinished = collect_results(root)
    results = _select(results, trainers, datasets)
    if not results:
        raise TableError(
            f"no finished runs under {root}"
            + (f" for trainers {list(trainers)}" if trainers else "")
            + (f" and datasets {list(datasets)}" if datasets else "")
            + " (expected base2new/{train_base,test_new}/..., evaluation/... with log.txt result blocks)"
        )
    if unfinished:
        print(f"note: {unfinished} log(s) without a result block (unfinished runs) left out", file=stream)
    out_dir = out_dir or os.path.join(root, "tables")
    reference = load_reference()
    written = {}
    b2n, b2n_datasets = base2new_summary(results)
    if b2n_datasets:
        md, rows = render_base2new(b2n, b2n_datasets, reference, show_std)
        write_outputs("base2new", md, rows, out_dir, stream)
        written["base2new"] = os.path.join(out_dir, "base2new.md")
    targets_of = transfer_targets(results, source)
    for name, title in (("domain_generalization", "Domain generalization"), ("cross_dataset", "Cross-dataset transfer")):
        targets = targets_of[name]
        summary, columns = transfer_summary(results, targets, source)
        if columns:
            md, rows = render_transfer(name, title, summary, columns, reference, show_std)
            write_outputs(name, md, rows, out_dir, stream)
            written[name] = os.path.join(out_dir, f"{name}.md")
    if plots_dir:
        os.makedirs(plots_dir, exist_ok=True)
        if b2n_datasets:
            written["plot_h"] = plot_h_by_dataset(b2n, b2n_datasets, os.path.join(plots_dir, "base2new_H_by_dataset.png"))
            written["plot_average"] = plot_base_new_h(b2n, os.path.join(plots_dir, "base2new_average.png"))
        for sweep in SWEEP_KEYS:
            points = sweep_points(results, sweep)
            if points:
                written[f"plot_{sweep}"] = plot_sweep(points, sweep, os.path.join(plots_dir, f"base2new_vs_{sweep}.png"))
        for name in [n for n in written if n.startswith("plot_")]:
            print(f"plot: {written[name]}", file=stream)
    return written


def transfer_targets(results: Sequence[RunResult], source: str) -> Dict[str, List[str]]:
    """The targets of each transfer protocol's table: domain generalization, the source's shifted
    domains; cross-dataset, every other evaluated dataset but the source."""
    shifted = list(SHIFTED_DOMAINS.get(source, ()))
    return {"domain_generalization": shifted,
            "cross_dataset": [d for d in _all_eval_targets(results, source) if d not in shifted]}


def _all_eval_targets(results, source):
    ordered = _order({r.dataset for r in results if r.part == "evaluation" and r.dataset != source},
                     CROSS_DATASET_TARGETS)
    return ordered


def main(argv=None, stream=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
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
        make_tables(args.root, args.out, args.plots, args.std, args.trainers, args.datasets, args.source, stream)
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
