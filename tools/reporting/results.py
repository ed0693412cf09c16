"""Collecting results: every finished run's accuracy under an output tree, as `RunResult`s.

It reads the layout tools/run_protocol.py and scripts/protocols/*.sh write (tools/make_tables.py
describes it), found anywhere under the given root. Accuracies are parse_test_res.py's; logs
without a result block (unfinished runs) are counted and left out.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import parse_test_res
from dassl.utils import UserValueError
from tools import run_loading
from tools.protocols import CROSS_DATASET_TARGETS, SHIFTED_DOMAINS


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


class TableError(UserValueError):
    pass


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


def config_string(dump: dict, dotted_key: str) -> Optional[str]:
    """The value of e.g. TRAINER.EMPL.OPEN_LOSS_WEIGHT in a run's config dump
    (run_loading.read_config_dump) as a string; None if absent or a node."""
    value = run_loading.config_value(dump, dotted_key)
    return None if value is None or isinstance(value, dict) else str(value)


def order_datasets(datasets, canonical) -> List[str]:
    return [d for d in canonical if d in datasets] + sorted(d for d in datasets if d not in canonical)


def select_results(results, trainers=None, datasets=None):
    out = results
    if trainers:
        out = [r for r in out if r.trainer in trainers]
    if datasets:
        # for transfer tables the source run is kept whatever the dataset filter
        out = [r for r in out if r.dataset in datasets or r.part == "source"]
    return out


def transfer_targets(results: Sequence[RunResult], source: str) -> Dict[str, List[str]]:
    """The targets of each transfer protocol's table: domain generalization, the source's shifted
    domains; cross-dataset, every other evaluated dataset but the source."""
    shifted = list(SHIFTED_DOMAINS.get(source, ()))
    return {"domain_generalization": shifted,
            "cross_dataset": [d for d in _all_eval_targets(results, source) if d not in shifted]}


def _all_eval_targets(results, source):
    ordered = order_datasets({r.dataset for r in results if r.part == "evaluation" and r.dataset != source},
                     CROSS_DATASET_TARGETS)
    return ordered
