"""CoOp's datasets, registered in dassl's DATASET_REGISTRY under CoOp's names (import this
package to register them), plus the generated ones: SyntheticShapes and the World* tasks of
the bundled benchmark (datasets/world.py, docs/BENCHMARK.md). Shared machinery:
datasets/common.py; layouts: docs/DATASETS.md."""
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
    world_compositions,
    world_shapes,
    world_shapes_cluttered,
    world_shapes_inverted,
    world_shapes_noisy,
    world_shapes_sketch,
)
