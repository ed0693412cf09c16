"""WorldPatterns (synthetic): the 10 background patterns of the procedural world (a texture
task, the analogue of DTD) in the ``photo`` domain, a random shape in front. Base: plain ..
grid; new: wavy .. concentric. The world-tiny CLIP does not learn the patterns at its budget
(zero-shot at chance, docs/BENCHMARK.md), so the quickstart leaves this task out; it is for
larger pretraining (world-small)."""
from dassl.data.datasets import DATASET_REGISTRY

from .world import PATTERNS, WorldTask


@DATASET_REGISTRY.register()
class WorldPatterns(WorldTask):
    """10 pattern classes, 16 train / 4 val / 50 test 32x32 images each."""

    dataset_dir = "world_patterns"
    classes = {pattern: {"pattern": pattern} for pattern in PATTERNS}
    style = "photo"
