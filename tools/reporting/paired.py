"""Paired statistics of two trainers over the same seeds: per-seed differences and their
Student-t 95% intervals (tools/paired_stats.py is the command; tools/ablate_empl.py uses them too).
"""
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dassl.utils import UserValueError
from tools.reporting.results import RunResult, transfer_targets
from tools.reporting.summaries import harmonic_mean
from tools.reporting.tables import md_table

# Two-sided 95% quantiles of Student's t by degrees of freedom (beyond 30: the normal's 1.96).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042}
METRICS = ("base", "new", "H")


def t_quantile(df: int) -> float:
    if df < 1:
        raise UserValueError("a confidence interval needs at least 2 seeds")
    if df in T_975:
        return T_975[df]
    return T_975[max(k for k in T_975 if k <= df)] if df <= 30 else 1.96


def t_interval(values: Sequence[float]) -> Tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean of values (n >= 2)."""
    mean = statistics.fmean(values)
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def seed_averages(results: Sequence[RunResult], trainer: str,
                  datasets: Optional[Sequence[str]] = None) -> Dict[int, Dict[str, Dict[str, float]]]:
    """{seed: {dataset: {"base": acc, "new": acc}}} of a trainer's base-to-new runs (base from
    test_base when it exists, else from the train_base log, as the tables do)."""
    out: Dict[int, Dict[str, Dict[str, float]]] = {}
    runs = [r for r in results if r.trainer == trainer and r.part in ("train_base", "test_base", "test_new")
            and (datasets is None or r.dataset in datasets)]
    for r in sorted(runs, key=lambda r: r.part != "train_base"):
        out.setdefault(r.seed, {}).setdefault(r.dataset, {})["new" if r.part == "test_new" else "base"] = r.accuracy
    return out


def averages(per_dataset: Dict[str, Dict[str, float]], datasets: Sequence[str]) -> Dict[str, float]:
    base = statistics.fmean(per_dataset[d]["base"] for d in datasets)
    new = statistics.fmean(per_dataset[d]["new"] for d in datasets)
    return {"base": base, "new": new, "H": harmonic_mean(base, new)}


def paired_differences(results, first: str, second: str) -> Tuple[List[int], Dict[str, List[float]]]:
    """Seeds both trainers finished on the same datasets, and per metric the per-seed A - B. A
    seedless B (zero-shot CLIP: one run set) is compared with every seed of A."""
    a, b = seed_averages(results, first), seed_averages(results, second)
    return seed_differences(a, every_seed(b, a))


def every_seed(b: Dict[int, Any], a: Dict[int, Any]) -> Dict[int, Any]:
    """b with one seed (zero-shot CLIP: a seedless run set) repeated for every seed of a; else b."""
    return dict.fromkeys(a, next(iter(b.values()))) if len(b) == 1 and len(a) > 1 else b


def seed_differences(a, b) -> Tuple[List[int], Dict[str, List[float]]]:
    """The same from two seed_averages() results (two trainers, or one trainer's two run sets)."""
    seeds, diffs = [], {m: [] for m in METRICS}
    for seed in sorted(set(a) & set(b)):
        common = sorted(d for d in set(a[seed]) & set(b[seed])
                        if len(a[seed][d]) == 2 and len(b[seed][d]) == 2)
        if not common:
            continue
        avg_a, avg_b = averages(a[seed], common), averages(b[seed], common)
        seeds.append(seed)
        for m in METRICS:
            diffs[m].append(avg_a[m] - avg_b[m])
    return seeds, diffs


def transfer_seed_means(results, trainer: str, targets: Sequence[str]) -> Dict[int, float]:
    """{seed: mean accuracy over targets} of a trainer's seeds that evaluated every target."""
    by_seed: Dict[int, Dict[str, float]] = {}
    for r in results:
        if r.trainer == trainer and r.part == "evaluation" and r.dataset in targets:
            by_seed.setdefault(r.seed, {})[r.dataset] = r.accuracy
    return {seed: statistics.fmean(v.values()) for seed, v in by_seed.items() if len(v) == len(targets)}


def render_transfer(results, pairs: Sequence[Tuple[str, str]], protocol: str, source: str) -> str:
    targets = transfer_targets(results, source)[protocol]  # as the tables show them
    rows = []
    for first, second in pairs:
        a = transfer_seed_means(results, first, targets)
        b = every_seed(transfer_seed_means(results, second, targets), a)
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            rows.append([f"{first} - {second}", f"{len(seeds)} paired seed(s): need 2", "–"])
            continue
        diffs = [a[s] - b[s] for s in seeds]
        mean, low, high = t_interval(diffs)
        rows.append([f"{first} - {second}", " / ".join(f"{d:+.2f}" for d in diffs), f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"])
    title = f"{protocol}, mean over {', '.join(targets)}"
    return md_table([title, "per seed", "mean [95% CI]"], rows)


def render(results, pairs: Sequence[Tuple[str, str]]) -> str:
    rows = []
    for first, second in pairs:
        seeds, diffs = paired_differences(results, first, second)
        if len(seeds) < 2:
            rows.append([f"{first} - {second}", "–", f"{len(seeds)} paired seed(s): need 2", "–"])
            continue
        for m in METRICS:
            mean, low, high = t_interval(diffs[m])
            rows.append([f"{first} - {second}", m, " / ".join(f"{d:+.2f}" for d in diffs[m]),
                         f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"])
    return md_table(["pair", "metric", "per seed", "mean [95% CI]"], rows)


def cell_differences(results, first: str, second: str) -> List[Tuple[str, int, str, float]]:
    """Every (dataset, seed, split) cell both trainers finished, with A - B: [(dataset, seed,
    "base" | "new", difference)], in that order. A seedless B is compared with every seed of A."""
    a = seed_averages(results, first)
    b = every_seed(seed_averages(results, second), a)
    return [(d, seed, m, a[seed][d][m] - b[seed][d][m])
            for seed in sorted(set(a) & set(b)) for d in sorted(set(a[seed]) & set(b[seed]))
            for m in ("base", "new") if m in a[seed][d] and m in b[seed][d]]


def render_cells(results, pairs: Sequence[Tuple[str, str]], margin: float) -> str:
    """Per pair: how many cells A is below B by more than margin, which ones, and the worst cell
    (EMPL's anchor check: the anchor at least its host's accuracy minus 2, on every task, seed
    and split)."""
    rows = []
    for first, second in pairs:
        cells = cell_differences(results, first, second)
        if not cells:
            rows.append([f"{first} - {second}", "0", "–", "no common cells"])
            continue
        below = [c for c in cells if c[3] < -margin]
        worst = min(cells, key=lambda c: c[3])
        rows.append([f"{first} - {second}", f"{len(below)} of {len(cells)}",
                     f"{worst[3]:+.2f} ({worst[0]} seed {worst[1]} {worst[2]})",
                     "; ".join(f"{d} seed {seed} {m} {x:+.2f}" for d, seed, m, x in below) or "none"])
    return md_table(["pair", f"cells below -{margin:g}", "worst", "cells below"], rows)
