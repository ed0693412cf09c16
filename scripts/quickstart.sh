#!/bin/bash
# The bundled benchmark's main job (all synthetic; CPU, no downloads; docs/BENCHMARK.md): every
# trainer base-to-new on WorldObjects, WorldBreeds, WorldTextures and WorldAerial with the
# shipped world CLIP, over 3 seeds, then the table (mean ± std over seeds) and plots.
# PROTOCOLS=all adds cross-dataset (WorldNet -> the four tasks) and domain generalization
# (WorldNet -> its sketch, inverted, noisy and cluttered renderings).
#
# How it runs: zero-shot CLIP first (it renders every task once), then the trainers in JOBS
# parallel groups, each one process with one thread (tools/compare.py --in-process: imports,
# datasets and frozen image features are shared by the runs of a process), then the tables.
# Finished runs are skipped, so an interrupted quickstart resumes.
# usage: bash scripts/quickstart.sh [OUTPUT_DIR]        (default output/quickstart)
# environment: DATA (dataset root, default data), PYTHON, SEEDS (default "1 2 3"), SHOTS (default 16),
#              PROTOCOLS (default base2new; "all" for the three), JOBS (default 2: one per core)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
set -e
PYTHON=${PYTHON:-python}
DATA=${DATA:-data}
OUT=${1:-output/quickstart}
SEEDS=${SEEDS:-"1 2 3"}
SHOTS=${SHOTS:-16}
PROTOCOLS=${PROTOCOLS:-base2new}
JOBS=${JOBS:-2}
# Trainer groups of about equal CPU time on the bundled budgets (EMPL_ProDA alone is about a third).
GROUPS_OF_TRAINERS=("EMPL_ProDA CoOp KgCoOp" "EMPL_CoOp CoCoOp ProDA MaPLe PromptSRC")
ALL="ZeroshotCLIP CoOp CoCoOp ProDA MaPLe KgCoOp PromptSRC EMPL_CoOp EMPL_ProDA"

start=$(date +%s)
common=(--root "$DATA" --seeds $SEEDS --shots "$SHOTS" --output-dir "$OUT" --protocol $PROTOCOLS --in-process)
mkdir -p "$OUT/logs"
echo "zero-shot CLIP (renders the tasks on first use)"
$PYTHON tools/compare.py "${common[@]}" --trainers ZeroshotCLIP --no-tables
if [ "$JOBS" -gt 1 ]; then
    pids=()
    for group in "${GROUPS_OF_TRAINERS[@]}"; do
        log="$OUT/logs/${group// /_}.log"
        echo "training $group (log: $log)"
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $PYTHON tools/compare.py "${common[@]}" --trainers $group --no-tables \
            > "$log" 2>&1 &
        pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [ "$failed" = 0 ] || echo "a group had failed runs (see $OUT/logs); the tables below leave them out"
fi
# Every trainer: runs what is left (everything, with JOBS=1), then the tables and plots.
$PYTHON tools/compare.py "${common[@]}" --trainers $ALL --std --plots "$OUT/plots"
echo "quickstart finished in $(( $(date +%s) - start ))s; runs, tables and plots under $OUT"
