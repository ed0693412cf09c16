#!/bin/bash
# CoCoOp, protocol step xd_train (scripts/protocols/xd_train.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/cocoop/xd_train.sh SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-CoCoOp} CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1} exec bash "$(dirname "$0")/../protocols/xd_train.sh" "$@"
