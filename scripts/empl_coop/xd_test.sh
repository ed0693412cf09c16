#!/bin/bash
# EMPL_CoOp, protocol step xd_test (scripts/protocols/xd_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_coop/xd_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_CoOp} CFG=${CFG:-vit_b16_ep10_ctxv1_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_test.sh" "$@"
