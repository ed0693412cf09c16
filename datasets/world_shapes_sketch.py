"""WorldShapesSketch (synthetic): WorldShapes' 10 classes as outlines on light paper, no fill or
pattern (the analogue of ImageNet-Sketch); a domain-generalization target for models trained on
WorldShapes (same class names and labels)."""
from dassl.data.datasets import DATASET_REGISTRY

from .world_shapes import WorldShapes


@DATASET_REGISTRY.register()
class WorldShapesSketch(WorldShapes):
    """WorldShapes rendered in the ``sketch`` style (datasets/world.py)."""

    dataset_dir = "world_shapes_sketch"
    style = "sketch"
