#!/bin/bash
# Cross-dataset / domain generalization, step 1: train on ImageNet, all classes, 16 shots.
# usage: TRAINER=... CFG=... (or METHOD=<trainer in defaults.txt>: its two) DATA=/path/to/datasets bash scripts/protocols/xd_train.sh SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-$METHOD} TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/xd_train.sh)"}
CFG_GIVEN=$CFG CFG=${CFG:-$(method_cfg cross_dataset)} CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-$(defaults shots)}
DATASET=${SOURCE:-$(defaults source)}

SEED=$1

DIR_OF=output/${DATASET}/@T/@C_${SHOTS}shots/seed${SEED}
DIR=${DIR_OF//@T/$TRAINER} DIR=${DIR//@C/$CFG}
HOST_OPTS=$(host_run_opts xd_train cross_dataset "$DIR_OF" "$@") || exit 1
train_py_unless_done "$DIR" \
    DATASET.NUM_SHOTS ${SHOTS} \
    ${HOST_OPTS}
