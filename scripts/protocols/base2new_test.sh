#!/bin/bash
# Base-to-new, step 2: evaluate the base-trained model on the new classes.
# usage: TRAINER=... CFG=... (or METHOD=<trainer in defaults.txt>: its two) DATA=/path/to/datasets bash scripts/protocols/base2new_test.sh DATASET SEED
#   SUB=base re-tests the base classes.
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-$METHOD} TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/base2new_test.sh)"}
CFG=${CFG:-$(method_cfg base2new)} CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-$(defaults shots)}
LOADEP=${LOADEP:-$(max_epoch)}  # the last epoch of CFG unless given
SUB=${SUB:-new}

DATASET=$1
SEED=$2

COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
train_py_unless_done "output/base2new/test_${SUB}/${COMMON_DIR}" \
    --model-dir output/base2new/train_base/${COMMON_DIR} \
    --load-epoch ${LOADEP} \
    --eval-only \
    DATASET.NUM_SHOTS ${SHOTS} \
    DATASET.SUBSAMPLE_CLASSES ${SUB}
