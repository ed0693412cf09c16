#!/bin/bash
# docs/BENCHMARKS.md's GPU measurement (ViT-B/16 shapes with random weights, so nothing is
# downloaded; steps, evaluation and peak memory up to 1000 classes) as one prepared call for a
# lent GPU machine, most important part first, each part under its own time limit so that a
# slow part cannot take the others' results with it.
#
# 1. Here, on the CPU machine, once per checkout:
#        REFERENCE_COOP=/path/to/KaiyangZhou/CoOp bash scripts/gpu_measurement.sh --prepare
#    downloads the pure-Python packages the GPU image lacks (clip-anytorch, yacs, ftfy, wcwidth)
#    into .whl/ and copies the reference CoOp checkout into .refs/CoOp/ (both git-ignored through
#    .git/info/exclude; without REFERENCE_COOP the reference rows are skipped).
# 2. On the GPU machine (the device tool's run, carrying .whl and .refs, timeout_s 600):
#        bash scripts/gpu_measurement.sh
#    Each part writes bench_<part>.json and the whole log gpu_measurement.log to $OUT (or
#    output/gpu_measurement). Parts: (a) CoOp and EMPL_CoOp at 100 and 1000 classes, amp: the
#    EMPL step ratio and the peak memory at 1000 classes; (b) ours against the reference CoOp and
#    CoCoOp at 100 classes, amp; (c) every trainer at 10, 100 and 1000 classes, amp, then fp16;
#    (d) the EMPL trainers with SGLD_GRADIENT anchor. A part's JSON is written when it ends: a
#    part stopped at its limit leaves only its log lines.
# environment: OUT (results), PART_SECONDS (time limit of each part, default 110: the five parts
# fit the device tool's 600 s per call), DEVICE
# (default cuda; cpu runs the same plumbing on a CPU), CLASSES_SMALL / CLASSES_LARGE (default 100
# / 1000), BENCH_ARGS (added to every tools.bench call; a CPU check of the plumbing:
# DEVICE=cpu CLASSES_SMALL=4 CLASSES_LARGE=8 BENCH_ARGS="--warmup 0 --steps 1 --eval-batches 1
# --eval-batch-size 2"), PYTHON (default python3).
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PYTHON=${PYTHON:-python3}

if [ "$1" = "--prepare" ]; then
    set -e
    mkdir -p .whl
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    grep -qx "/.refs/" .git/info/exclude 2>/dev/null || echo "/.refs/" >> .git/info/exclude
    # Pure-Python wheels (py3-none-any): the GPU image's Python 3.12 takes them as they are.
    $PYTHON -m pip download -q --no-deps --only-binary=:all: -d .whl \
        clip-anytorch==2.6.0 yacs==0.1.8 ftfy wcwidth
    if [ -n "$REFERENCE_COOP" ]; then
        [ -f "$REFERENCE_COOP/trainers/coop.py" ] || { echo "error: $REFERENCE_COOP is not a CoOp checkout (no trainers/coop.py)" >&2; exit 2; }
        rm -rf .refs/CoOp && mkdir -p .refs && cp -r "$REFERENCE_COOP" .refs/CoOp && rm -rf .refs/CoOp/.git
    fi
    echo "prepared: $(ls .whl | tr '\n' ' ')$([ -d .refs/CoOp ] && echo '+ .refs/CoOp')"
    echo "device call: bash scripts/gpu_measurement.sh   (carry: .whl .refs)"
    exit 0
fi

OUT=${OUT:-output/gpu_measurement}
mkdir -p "$OUT"
LOG="$OUT/gpu_measurement.log"
PART_SECONDS=${PART_SECONDS:-110}
DEVICE=${DEVICE:-cuda}
SMALL=${CLASSES_SMALL:-100}
LARGE=${CLASSES_LARGE:-1000}
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{
    echo "== $(date -u +%FT%TZ) $(git log --format=%h -1 2>/dev/null) device $DEVICE"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$LOG"

part() {  # part NAME ARGS...: one tools.bench call under its time limit, its rows in bench_NAME.json
    local name=$1; shift
    echo "== part $name: python -m tools.bench $*" | tee -a "$LOG"
    timeout "$PART_SECONDS" $PYTHON -m tools.bench --device "$DEVICE" --backbone random-vit-b16 "$@" $BENCH_ARGS \
        --json "$OUT/bench_$name.json" 2>&1 | tee -a "$LOG"
    echo "== part $name: exit ${PIPESTATUS[0]} (124: stopped at ${PART_SECONDS} s)" | tee -a "$LOG"
}

REFERENCE=()
[ -f .refs/CoOp/trainers/coop.py ] && REFERENCE=(--reference-coop .refs/CoOp)
part a_empl --classes "$SMALL" "$LARGE" --prec amp --trainers CoOp EMPL_CoOp
if [ ${#REFERENCE[@]} -gt 0 ]; then
    part b_reference --classes "$SMALL" --prec amp --trainers CoOp CoCoOp "${REFERENCE[@]}"
else
    echo "== part b_reference: skipped (no .refs/CoOp: prepare with REFERENCE_COOP set)" | tee -a "$LOG"
fi
part c_all_amp --classes 10 "$SMALL" "$LARGE" --prec amp
part c_all_fp16 --classes 10 "$SMALL" "$LARGE" --prec fp16
part d_anchor_gradient --classes "$SMALL" "$LARGE" --prec amp --trainers CoOp EMPL_CoOp EMPL_ProDA EMPL_MaPLe \
    --opts TRAINER.EMPL.SGLD_GRADIENT anchor
