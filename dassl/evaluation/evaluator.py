"""Classification evaluator: accuracy, error, macro-F1, per-class accuracy, confusion matrix."""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from dassl.utils import UserValueError, all_gather_object, is_main_process, mkdir_if_missing

from .build import EVALUATOR_REGISTRY


def macro_f1_score(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` (in [0, 1]).

    Same as ``sklearn.metrics.f1_score(y_true, y_pred, average="macro",
    labels=np.unique(y_true))``, which Dassl uses: F1_c = 2TP / (2TP + FP + FN),
    taken as 0 when TP = 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.unique(y_true):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn))  # denominator > 0: c occurs in y_true
    return float(np.mean(scores)) if scores else 0.0


def confusion_matrix_normalized(y_true: Sequence[int], y_pred: Sequence[int]) -> np.ndarray:
    """Row-normalized confusion matrix over the sorted union of labels (as
    ``sklearn.metrics.confusion_matrix(..., normalize="true")``): entry [i, j]
    is the fraction of class-i samples predicted as class j.
    """
    labels = np.union1d(y_true, y_pred)
    index = {lab: i for i, lab in enumerate(labels)}
    cmat = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for t, p in zip(y_true, y_pred):
        cmat[index[t], index[p]] += 1
    rows = cmat.sum(axis=1, keepdims=True)
    return np.divide(cmat, rows, out=np.zeros_like(cmat), where=rows > 0)


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)``, ``evaluate()``."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reset(self):
        raise NotImplementedError

    def process(self, mo, gt):
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError

    def sync(self):
        """Merge what every rank has processed (distributed evaluation: each rank sees a shard
        of the data), so that ``evaluate()`` gives the metrics of the whole set on every rank."""
        raise NotImplementedError(f"{type(self).__name__} cannot merge results across processes")


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accumulate argmax predictions; ``evaluate()`` prints and returns metrics.

    The first entry of the returned dict (accuracy) is what ``trainer.test()``
    returns. The printed block is parsed by CoOp's parse_test_res.py.
    """

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs):
        super().__init__(cfg)
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise UserValueError("TEST.PER_CLASS_RESULT=True needs lab2cname (label -> class name)")
        self._lab2cname = lab2cname
        self._per_class = cfg.TEST.PER_CLASS_RESULT
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list = []
        self._y_pred: list = []
        self._per_class_res = defaultdict(list) if self._per_class else None

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: logits [batch, num_classes]; ``gt``: labels [batch]."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).int().cpu().tolist()
        gt_list = gt.cpu().tolist()
        self._correct += sum(matches)
        self._total += len(gt_list)
        self._y_true.extend(gt_list)
        self._y_pred.extend(pred.cpu().tolist())
        if self._per_class_res is not None:
            for label, m in zip(gt_list, matches):
                self._per_class_res[label].append(m)

    def sync(self) -> None:
        state = (self._correct, self._total, self._y_true, self._y_pred,
                 dict(self._per_class_res) if self._per_class_res is not None else None)
        gathered = all_gather_object(state)
        self.reset()
        for correct, total, y_true, y_pred, per_class in gathered:
            self._correct += correct
            self._total += total
            self._y_true.extend(y_true)
            self._y_pred.extend(y_pred)
            if self._per_class_res is not None:
                for label, res in per_class.items():
                    self._per_class_res[label].extend(res)

    def evaluate(self) -> "OrderedDict[str, float]":
        if self._total == 0:
            raise RuntimeError("Classification.evaluate() called before any process() (empty data loader?)")
        results = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results["accuracy"] = acc  # first value: returned by trainer.test()
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                accs.append(100.0 * correct / total)
                print(
                    f"* class: {label} ({self._lab2cname[label]})\t"
                    f"total: {total:,}\t"
                    f"correct: {correct:,}\t"
                    f"acc: {accs[-1]:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT and is_main_process():
            cmat = confusion_matrix_normalized(self._y_true, self._y_pred)
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            mkdir_if_missing(self.cfg.OUTPUT_DIR)
            torch.save(cmat, save_path)
            print(f"Confusion matrix is saved to {save_path}")

        return results
