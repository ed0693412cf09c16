"""WorldShapes (synthetic): the 10 shapes of the procedural world, rendered in the shifted
``photo`` domain (datasets/world.py). Base classes: circle .. cross; new: ring .. crescent."""
from dassl.data.datasets import DATASET_REGISTRY

from .synthetic_shapes import SHAPES
from .world import WorldTask


@DATASET_REGISTRY.register()
class WorldShapes(WorldTask):
    """10 shape classes, 16 train / 4 val / 50 test 32x32 images each, generated on first use."""

    dataset_dir = "world_shapes"
    classes = {shape: {"shape": shape} for shape in SHAPES}
    style = "photo"
