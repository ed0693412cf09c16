#!/bin/bash
# Base-to-new, step 1: train on the base classes (CoCoOp's scripts/cocoop/base2new_train.sh).
# usage: TRAINER=... CFG=... (or METHOD=<trainer in defaults.txt>: its two) DATA=/path/to/datasets bash scripts/protocols/base2new_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-$METHOD} TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/base2new_train.sh)"}
CFG_GIVEN=$CFG CFG=${CFG:-$(method_cfg base2new)} CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-$(defaults shots)}

DATASET=$1
SEED=$2

DIR_OF=output/base2new/train_base/${DATASET}/shots_${SHOTS}/@T/@C/seed${SEED}
DIR=${DIR_OF//@T/$TRAINER} DIR=${DIR//@C/$CFG}
HOST_OPTS=$(host_run_opts base2new_train base2new "$DIR_OF" "$@") || exit 1
train_py_unless_done "$DIR" \
    DATASET.NUM_SHOTS ${SHOTS} \
    DATASET.SUBSAMPLE_CLASSES base \
    ${HOST_OPTS}
