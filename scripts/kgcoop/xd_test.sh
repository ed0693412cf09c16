#!/bin/bash
# KgCoOp, protocol step xd_test (scripts/protocols/xd_test.sh with this method's defaults from scripts/protocols/defaults.txt).
# usage: DATA=/path/to/datasets bash scripts/maple/xd_test.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
METHOD=KgCoOp exec bash "$(dirname "$0")/../protocols/xd_test.sh" "$@"
