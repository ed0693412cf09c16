"""WorldShapesNoisy (synthetic): WorldShapes' 10 classes as photos under heavy pixel noise (a
corruption shift); a domain-generalization target for models trained on WorldShapes (same class
names and labels)."""
from dassl.data.datasets import DATASET_REGISTRY

from .world_shapes import WorldShapes


@DATASET_REGISTRY.register()
class WorldShapesNoisy(WorldShapes):
    """WorldShapes rendered in the ``noisy`` style (datasets/world.py)."""

    dataset_dir = "world_shapes_noisy"
    style = "noisy"
