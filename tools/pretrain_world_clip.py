"""Pretrain the bundled benchmark's world CLIP from scratch (the shipped weights' recipe).

    python -m tools.pretrain_world_clip                                  # world-vit on CPU (docs/BENCHMARK.md: time)
    python -m tools.pretrain_world_clip --device cuda --output /tmp/world-vit.pt

The code is benchmark/world_clip.py (docs/BENCHMARK.md); this is its command line. The weights
go to --output (default ./<name>-reproduced.pt); use them with MODEL.BACKBONE.CHECKPOINT, or
replace benchmark/weights/<name>.pt and its hash in benchmark/world_clip.SHIPPED_SHA256.
"""
import sys

from benchmark.world_clip import main

if __name__ == "__main__":
    sys.exit(main())
