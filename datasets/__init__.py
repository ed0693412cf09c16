"""CoOp's datasets, registered in dassl's DATASET_REGISTRY under CoOp's names (import this
package to register them), plus SyntheticShapes (generated, for tests). The bundled benchmark's
World* tasks live in benchmark/tasks.py (benchmark.register()). Shared machinery:
datasets/common.py (the pipeline), checks.py (its checks), generated.py (datasets rendered on first
use); layouts: docs/DATASETS.md."""
from . import (  # noqa: F401
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    synthetic_shapes,
    ucf101,
)
