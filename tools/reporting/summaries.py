"""Statistics over seeds and datasets of collected results: the numbers each table and plot shows.

Conventions (as CoOp, CoCoOp and MaPLe report; tools/make_tables.py lists them): per dataset, the
mean over seeds and the population std; H of the two means; the Average row's H is the harmonic
mean of the averaged base and new.
"""
import collections
import os
import statistics
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import parse_test_res
from tools import run_loading
from tools.reporting.results import RunResult, config_string, order_datasets
from tools.protocols import BASE2NEW_DATASETS, DEFAULT_SOURCE

AVERAGE = "average"

SWEEP_KEYS = {"open_loss_weight": "TRAINER.EMPL.OPEN_LOSS_WEIGHT", "n_chains": "TRAINER.EMPL.N_CHAINS"}
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


def base2new_summary(results: Sequence[RunResult]):
    """{label: {dataset: {"base": Stat, "new": Stat, "H": float}, "average": {...}}}, datasets, labels.
    Base per seed comes from test_base when that run exists, else from the train_base log."""
    runs = [r for r in results if r.part in ("train_base", "test_base", "test_new")]
    labels = method_labels(sorted({r.method_key for r in runs}))
    values = collections.defaultdict(dict)  # (label, dataset, metric) -> {seed: acc}
    for r in sorted(runs, key=lambda r: r.part != "train_base"):  # test_base overrides train_base
        metric = "new" if r.part == "test_new" else "base"
        values[(labels[r.method_key], r.dataset, metric)][r.seed] = r.accuracy
    datasets = order_datasets({r.dataset for r in runs}, BASE2NEW_DATASETS)
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
            rows[AVERAGE] = average_over_seeds(
                [(values[(label, d, "base")], values[(label, d, "new")]) for d in complete])
        summary[label] = rows
    return summary, datasets


def average_over_seeds(per_dataset: Sequence[Tuple[Dict[int, float], Dict[int, float]]]) -> dict:
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
    present_targets = order_datasets({r.dataset for r in runs if r.dataset in targets and r.dataset != source}, targets)
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
        raw = config_string(dump, key)
        if raw is None:
            continue
        other_values[r] = tuple(config_string(dump, k) for k in others)
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
