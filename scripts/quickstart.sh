#!/bin/bash
# The bundled benchmark (all synthetic; CPU, no downloads; docs/BENCHMARK.md):
#   1. pretrain the tiny world CLIP, or find it in the cache (python tools/pretrain_world_clip.py);
#   2. base-to-new (train on the base classes, test on base and new) for every trainer on the
#      World* tasks with fixed seeds, then the side-by-side table (base, new, H) and plots
#      (tools/compare.py). Finished runs are skipped, so an interrupted quickstart resumes.
# usage: bash scripts/quickstart.sh [OUTPUT_DIR]        (default output/quickstart)
# environment: DATA (dataset root, default data), PYTHON, DEVICE (pretraining device: cpu, cuda),
#              SEEDS (default 1), SHOTS (default 16)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
set -e
PYTHON=${PYTHON:-python}
DATA=${DATA:-data}
OUT=${1:-output/quickstart}
SEEDS=${SEEDS:-1}
SHOTS=${SHOTS:-16}
DEVICE=${DEVICE:-cpu}
DATASETS="world_shapes world_compositions"  # WorldPatterns: at chance for world-tiny (docs/BENCHMARK.md)
ALL_TRAINERS="ZeroshotCLIP CoOp CoCoOp ProDA MaPLe EMPL_CoOp EMPL_ProDA"

start=$(date +%s)
$PYTHON tools/pretrain_world_clip.py --config world-tiny --device "$DEVICE"

# Trainers this checkout does not have are skipped with a note.
TRAINERS=$($PYTHON - $ALL_TRAINERS <<'PY'
import sys
import trainers  # noqa: F401  (registers the trainers)
from dassl.engine import TRAINER_REGISTRY
names = TRAINER_REGISTRY.registered_names()
for name in sys.argv[1:]:
    if name in names:
        print(name)
    else:
        print(f"note: skipping {name}: no such trainer in this checkout", file=sys.stderr)
PY
)

if [ ! -f tools/compare.py ]; then
    echo "tools/compare.py is missing: this checkout cannot run the comparison step" >&2
    exit 1
fi
$PYTHON tools/compare.py --root "$DATA" --datasets $DATASETS --trainers $TRAINERS --seeds $SEEDS \
    --cfg bundled --shots "$SHOTS" --output-dir "$OUT" --protocol base2new
echo "quickstart finished in $(( $(date +%s) - start ))s; runs, table and plots under $OUT"
