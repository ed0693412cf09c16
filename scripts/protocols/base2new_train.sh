#!/bin/bash
# Base-to-new, step 1: train on the base classes (CoCoOp's scripts/cocoop/base2new_train.sh).
# usage: TRAINER=... CFG=... (or METHOD=<trainer in defaults.txt>: its two) DATA=/path/to/datasets bash scripts/protocols/base2new_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-$METHOD} TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/base2new_train.sh)"}
CFG=${CFG:-$(method_cfg base2new)} CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-$(defaults shots)}

DATASET=$1
SEED=$2

DIR=output/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
train_py_unless_done "$DIR" \
    DATASET.NUM_SHOTS ${SHOTS} \
    DATASET.SUBSAMPLE_CLASSES base
