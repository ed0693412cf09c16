#!/bin/bash
# EMPL_ProDA, protocol step xd_test (scripts/protocols/xd_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_proda/xd_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_ProDA} CFG=${CFG:-vit_b16_ep10_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_test.sh" "$@"
