"""Dataset containers and registry (Dassl's ``dassl.data.datasets``).

Dassl's own DA/DG/SSL benchmarks are not included: the CoOp-family datasets live in the
project's top-level ``datasets`` package and register themselves in DATASET_REGISTRY.
"""
from .build import DATASET_REGISTRY, build_dataset  # isort:skip
from .base_dataset import Datum, DatasetBase  # isort:skip

__all__ = ["DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase"]
