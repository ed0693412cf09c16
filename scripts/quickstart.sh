#!/bin/bash
# The bundled benchmark's main job (all synthetic; CPU, no downloads; docs/BENCHMARK.md): every
# trainer base-to-new on the bundled tasks with the shipped world CLIP, over 3 seeds, then the
# table (mean ± std over seeds) and plots. PROTOCOLS=all adds cross-dataset (WorldNet -> the
# base-to-new tasks) and domain generalization (WorldNet -> its restyled renderings).
#
# How it runs: one work queue (python -m tools.compare --in-process --jobs JOBS, tools/work_queue.py)
# over JOBS worker processes of one thread each. Each task is rendered once, before its runs;
# then the runs go longest first, each evaluation as soon as its training run is done. A worker
# shares imports, decoded images and frozen image features between its runs. A line per
# finished run says how many are done and left and the time to go. Finished runs are skipped,
# so an interrupted quickstart resumes. Then the tables and plots.
# usage: bash scripts/quickstart.sh [OUTPUT_DIR]        (default output/quickstart)
# environment: DATA (dataset root, default data), PYTHON, SEEDS (default "1 2 3"), SHOTS (default 16),
#              PROTOCOLS (default base2new; "all" for the three), JOBS (default: one per core, at most
#              8; each worker holds about 1 GB). The numbers do not depend on JOBS: every run is
#              seeded and single-threaded wherever it runs (tests/test_work_queue.py).
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
set -e
PYTHON=${PYTHON:-python}
DATA=${DATA:-data}
OUT=${1:-output/quickstart}
SEEDS=${SEEDS:-"1 2 3"}
SHOTS=${SHOTS:-16}
PROTOCOLS=${PROTOCOLS:-base2new}
JOBS=${JOBS:-$($PYTHON -c "import os; print(max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 2)))")}
ALL="ZeroshotCLIP CoOp CoCoOp ProDA MaPLe KgCoOp PromptSRC EMPL_CoOp EMPL_ProDA"

start=$(date +%s)
status=0
$PYTHON -m tools.compare --root "$DATA" --seeds $SEEDS --shots "$SHOTS" --output-dir "$OUT" --protocol $PROTOCOLS \
    --in-process --jobs "$JOBS" --trainers $ALL --std --plots "$OUT/plots" || status=$?
echo "quickstart finished in $(( $(date +%s) - start ))s; runs, tables and plots under $OUT"
exit $status
