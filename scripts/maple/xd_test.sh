#!/bin/bash
# MaPLe, protocol step xd_test (scripts/protocols/xd_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/maple/xd_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-MaPLe} CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_test.sh" "$@"
