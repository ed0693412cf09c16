"""Evaluators (``cfg.TEST.EVALUATOR``)."""
from .build import EVALUATOR_REGISTRY, build_evaluator  # isort:skip
from .evaluator import Classification, EvaluatorBase, macro_f1_score

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator", "EvaluatorBase", "Classification", "macro_f1_score"]
