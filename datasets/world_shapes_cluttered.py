"""WorldShapesCluttered (synthetic): WorldShapes' 10 classes as photos with small distractor shapes
(the analogue of ImageNet-A's hard scenes); a domain-generalization target for models trained on
WorldShapes (same class names and labels)."""
from dassl.data.datasets import DATASET_REGISTRY

from .world_shapes import WorldShapes


@DATASET_REGISTRY.register()
class WorldShapesCluttered(WorldShapes):
    """WorldShapes rendered in the ``cluttered`` style (datasets/world.py)."""

    dataset_dir = "world_shapes_cluttered"
    style = "cluttered"
