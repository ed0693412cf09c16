#!/bin/bash
# CoCoOp, protocol step xd_test (scripts/protocols/xd_test.sh with this method's defaults from scripts/protocols/defaults.txt).
# usage: DATA=/path/to/datasets bash scripts/cocoop/xd_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
METHOD=CoCoOp exec bash "$(dirname "$0")/../protocols/xd_test.sh" "$@"
