"""DATASET_REGISTRY and build_dataset (Dassl's API)."""
from difflib import get_close_matches

from dassl.utils import Registry, UserValueError

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    """Instantiate the dataset registered under ``cfg.DATASET.NAME``."""
    name = cfg.DATASET.NAME
    available = DATASET_REGISTRY.registered_names()
    if name not in available:
        close = get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserValueError(
            f"DATASET.NAME {name!r} is not a registered dataset.{hint} Available: "
            f"{sorted(available)} (the project's datasets register when the 'datasets' "
            "package is imported)"
        )
    if cfg.VERBOSE:
        print(f"Loading dataset: {name}")
    return DATASET_REGISTRY.get(name)(cfg)
