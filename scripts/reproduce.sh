#!/bin/bash
# Run a protocol for one trainer (or "all") through tools/run_protocol.py: skips finished runs,
# resumes unfinished ones (docs/REPRODUCE.md).
# usage: DATA=/path/to/datasets bash scripts/reproduce.sh PROTOCOL TRAINER [DATASETS...]
#   PROTOCOL: base2new | cross_dataset | domain_generalization; DATASETS default to the protocol's.
#   Optional environment: SEEDS="1 2", SHOTS=4 (defaults: scripts/protocols/defaults.txt),
#   CFG=<config name>, OUTPUT=output, DRY_RUN=1, PYTHON=python,
#   OPTS="OPTIM.MAX_EPOCH 5" (config opts for every train.py call).
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [ $# -lt 2 ]; then
    echo "usage: DATA=/path/to/datasets bash $0 PROTOCOL TRAINER [DATASETS...]" >&2
    exit 2
fi
PROTOCOL=$1
TRAINER=$2
shift 2
ARGS=(--trainers "$TRAINER" --output-dir "${OUTPUT:-output}")  # seeds, shots, configs: scripts/protocols/defaults.txt
[ -n "$SEEDS" ] && ARGS+=(--seeds $SEEDS)
[ -n "$SHOTS" ] && ARGS+=(--shots "$SHOTS")
[ -n "$CFG" ] && ARGS+=(--cfg "$CFG")
[ -n "$DRY_RUN" ] && ARGS+=(--dry-run)
[ $# -gt 0 ] && ARGS+=(--datasets "$@")
# shellcheck disable=SC2086  # OPTS is a list of KEY VALUE words
exec ${PYTHON:-python} -m tools.run_protocol "$PROTOCOL" "${ARGS[@]}" -- ${OPTS}
