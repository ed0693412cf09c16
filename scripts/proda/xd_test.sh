#!/bin/bash
# ProDA, protocol step xd_test (scripts/protocols/xd_test.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/proda/xd_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-ProDA} CFG=${CFG:-vit_b16_ep10_cross_datasets} exec bash "$(dirname "$0")/../protocols/xd_test.sh" "$@"
