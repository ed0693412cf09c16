#!/bin/bash
# CoCoOp, protocol step base2new_test (scripts/protocols/base2new_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-CoCoOp} CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1} exec bash "$(dirname "$0")/../protocols/base2new_test.sh" "$@"
