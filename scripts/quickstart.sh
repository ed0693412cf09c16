#!/bin/bash
# The bundled benchmark (all synthetic; CPU, no downloads; docs/BENCHMARK.md):
#   1. pretrain the tiny world CLIP, or find it in the cache (tools/pretrain_world_clip.py);
#   2. base-to-new (train on the base classes, test on base and new) for every trainer on the
#      World* tasks with fixed seeds, then the side-by-side table (base, new, H) and plots
#      (tools/compare.py). Finished runs are skipped, so an interrupted quickstart resumes.
# usage: bash scripts/quickstart.sh [OUTPUT_DIR]        (default output/quickstart)
# environment: DATA (dataset root, default data), PYTHON, DEVICE (pretraining device: cpu, cuda),
#              SEEDS (default 1), SHOTS (default 16), TRAINERS (default: the seven below)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
set -e
PYTHON=${PYTHON:-python}
DATA=${DATA:-data}
OUT=${1:-output/quickstart}
SEEDS=${SEEDS:-1}
SHOTS=${SHOTS:-16}
DEVICE=${DEVICE:-cpu}
TRAINERS=${TRAINERS:-"ZeroshotCLIP CoOp CoCoOp ProDA MaPLe EMPL_CoOp EMPL_ProDA"}

start=$(date +%s)
$PYTHON tools/pretrain_world_clip.py --config world-tiny --device "$DEVICE"
# The tasks and the config name (bundled) are compare.py's defaults: the bundled benchmark.
# A trainer this checkout lacks is skipped with a one-line note.
$PYTHON tools/compare.py --root "$DATA" --trainers $TRAINERS --seeds $SEEDS --shots "$SHOTS" \
    --output-dir "$OUT" --protocol base2new --plots "$OUT/plots"
echo "quickstart finished in $(( $(date +%s) - start ))s; runs, table and plots under $OUT"
