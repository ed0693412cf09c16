"""The tables: Markdown (the tools' one table printer, `md_table`) and the long CSV, with the
published rows of docs/reference_results.json beside the measured ones; `write_tables` makes
every table (and plot) of an output tree.
"""
import csv
import io
import json
import os
import sys
from typing import Dict, List, Optional

from tabulate import tabulate

from tools.reporting import plots
from tools.reporting.results import TableError, collect_results, select_results, transfer_targets
from tools.reporting.summaries import AVERAGE, SWEEP_KEYS, Stat, base2new_summary, sweep_points, transfer_summary
from tools.protocols import BASE2NEW_DATASETS, DEFAULT_SOURCE, ROOT

REFERENCE_FILE = os.path.join(ROOT, "docs", "reference_results.json")
MEASURED = "measured"
CSV_FIELDS = ["table", "dataset", "method", "metric", "mean", "std", "n", "source"]


def load_reference(path: str = REFERENCE_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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


def write_tables(root: str, out_dir: Optional[str] = None, plots_dir: Optional[str] = None, show_std: bool = False,
                trainers=None, datasets=None, source: str = DEFAULT_SOURCE, stream=None) -> Dict[str, str]:
    """Write the tables (and plots); return {name: path} of everything written."""
    stream = stream or sys.stdout
    results, unfinished = collect_results(root)
    results = select_results(results, trainers, datasets)
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
            written["plot_h"] = plots.plot_h_by_dataset(b2n, b2n_datasets, os.path.join(plots_dir, "base2new_H_by_dataset.png"))
            written["plot_average"] = plots.plot_base_new_h(b2n, os.path.join(plots_dir, "base2new_average.png"))
        for sweep in SWEEP_KEYS:
            points = sweep_points(results, sweep)
            if points:
                written[f"plot_{sweep}"] = plots.plot_sweep(points, sweep, os.path.join(plots_dir, f"base2new_vs_{sweep}.png"))
        for name in [n for n in written if n.startswith("plot_")]:
            print(f"plot: {written[name]}", file=stream)
    return written
