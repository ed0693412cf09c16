#!/bin/bash
# KgCoOp, protocol step xd_train (scripts/protocols/xd_train.sh with this method's defaults from scripts/protocols/defaults.txt).
# usage: DATA=/path/to/datasets bash scripts/maple/xd_train.sh SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
METHOD=KgCoOp exec bash "$(dirname "$0")/../protocols/xd_train.sh" "$@"
