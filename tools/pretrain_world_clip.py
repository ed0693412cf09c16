"""Pretrain the bundled benchmark's tiny CLIP on the procedural world, or find it in the cache.

    python tools/pretrain_world_clip.py                                  # world-tiny, CPU, ~3 min on 2 cores
    python tools/pretrain_world_clip.py --config world-small --device cuda
    python tools/pretrain_world_clip.py --print-path                     # where the weights are cached

The code is trainers/world_clip.py (docs/BENCHMARK.md); this is its command line.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.world_clip import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
