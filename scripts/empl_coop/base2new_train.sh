#!/bin/bash
# EMPL_CoOp, protocol step base2new_train (scripts/protocols/base2new_train.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_coop/base2new_train.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_CoOp} CFG=${CFG:-vit_b16_ep50_ctxv1} exec bash "$(dirname "$0")/../protocols/base2new_train.sh" "$@"
