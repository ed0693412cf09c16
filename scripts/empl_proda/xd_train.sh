#!/bin/bash
# EMPL_ProDA, protocol step xd_train (scripts/protocols/xd_train.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_proda/xd_train.sh SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_ProDA} CFG=${CFG:-vit_b16_ep10_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_train.sh" "$@"
