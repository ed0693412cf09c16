#!/bin/bash
# EMPL_MaPLe, protocol step xd_train (scripts/protocols/xd_train.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_maple/xd_train.sh SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_MaPLe} CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_train.sh" "$@"
