#!/bin/bash
# EMPL_ProDA, protocol step base2new_test (scripts/protocols/base2new_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/empl_proda/base2new_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-EMPL_ProDA} CFG=${CFG:-vit_b16_ep50} exec bash "$(dirname "$0")/../protocols/base2new_test.sh" "$@"
