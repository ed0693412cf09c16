"""WorldCompositions (synthetic): colour + shape classes of the procedural world in the
``photo`` domain; inside each half, classes share colours and shapes, so both words matter.
Base: {red, blue} x {circle, square} + green star; new: {yellow, purple} x {triangle, heart}
+ green cross."""
from dassl.data.datasets import DATASET_REGISTRY

from .world import WorldTask

COMPOSITIONS = (
    ("red", "circle"), ("red", "square"), ("blue", "circle"), ("blue", "square"), ("green", "star"),
    ("yellow", "triangle"), ("yellow", "heart"), ("purple", "triangle"), ("purple", "heart"), ("green", "cross"),
)


@DATASET_REGISTRY.register()
class WorldCompositions(WorldTask):
    """10 "<colour> <shape>" classes, 16 train / 4 val / 50 test 32x32 images each."""

    dataset_dir = "world_compositions"
    classes = {f"{color} {shape}": {"color": color, "shape": shape} for color, shape in COMPOSITIONS}
    style = "photo"
