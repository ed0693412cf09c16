#!/bin/bash
# ProDA, protocol step base2new_train (scripts/protocols/base2new_train.sh with this method's defaults).
# usage: DATA=/path/to/datasets bash scripts/proda/base2new_train.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
TRAINER=${TRAINER:-ProDA} CFG=${CFG:-vit_b16_ep50} exec bash "$(dirname "$0")/../protocols/base2new_train.sh" "$@"
