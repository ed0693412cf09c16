"""WorldShapesInverted (synthetic): WorldShapes' 10 classes as colour-inverted photos (the analogue
of ImageNet-R's renditions); a domain-generalization target for models trained on WorldShapes
(same class names and labels)."""
from dassl.data.datasets import DATASET_REGISTRY

from .world_shapes import WorldShapes


@DATASET_REGISTRY.register()
class WorldShapesInverted(WorldShapes):
    """WorldShapes rendered in the ``inverted`` style (datasets/world.py)."""

    dataset_dir = "world_shapes_inverted"
    style = "inverted"
