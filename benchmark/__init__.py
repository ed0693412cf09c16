"""The bundled benchmark: a procedural image-caption world, a small CLIP pretrained on it, and
CoOp-style classification tasks rendered from it (all synthetic; docs/BENCHMARK.md).

- world.py: the vocabulary (308 words), scenes and captions;
- render.py: scenes to 32x32 images, in the pretraining style and the tasks' styles;
- tasks.py: the World* datasets (dassl's DATASET_REGISTRY; configs/datasets/world_*.yaml);
- world_clip.py: the world CLIP's architecture, pretraining recipe and shipped weights.

``register()`` makes the tasks and the world CLIPs known to dassl and to ``load_clip``;
train.py calls it.
"""


def register() -> None:
    """Register the World* datasets and the world CLIPs (idempotent)."""
    from . import tasks  # noqa: F401  (the datasets register on import)
    from .world_clip import register_world_clips

    register_world_clips()
