#!/bin/bash
# EMPL_CoOp, protocol step xd_train (scripts/protocols/xd_train.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_coop/xd_train.sh SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_CoOp} CFG=${CFG:-vit_b16_ep10_ctxv1_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_train.sh" "$@"
