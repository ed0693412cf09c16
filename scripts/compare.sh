#!/bin/bash
# EMPL against MaPLe and CoOp (and others) on the same data, seeds and budget; prints the table.
# usage: bash scripts/compare.sh [python -m tools.compare options] [-- KEY VALUE ...]
#   e.g. bash scripts/compare.sh --trainers CoOp EMPL_CoOp --seeds 1 -- OPTIM.MAX_EPOCH 1
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
exec ${PYTHON:-python} -m tools.compare "$@"
