#!/bin/bash
# MaPLe, protocol step base2new_test (scripts/protocols/base2new_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/maple/base2new_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-MaPLe} CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx} exec bash "$(dirname "$0")/../protocols/base2new_test.sh" "$@"
