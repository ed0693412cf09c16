#!/bin/bash
# Base-to-new, step 2: evaluate the base-trained model on the new classes.
# usage: TRAINER=... CFG=... DATA=/path/to/datasets bash scripts/protocols/base2new_test.sh DATASET SEED
#   SUB=base re-tests the base classes.
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/base2new_test.sh)"}
CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-$(max_epoch)}  # the last epoch of CFG unless given
SUB=${SUB:-new}

DATASET=$1
SEED=$2

COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=output/base2new/train_base/${COMMON_DIR}
DIR=output/base2new/test_${SUB}/${COMMON_DIR}
if [ -d "$DIR" ]; then
    echo "Oops! The results exist at ${DIR} (so skip this job)"
else
    $PYTHON train.py \
        --root "${DATA}" \
        --seed ${SEED} \
        --trainer ${TRAINER} \
        --dataset-config-file configs/datasets/${DATASET}.yaml \
        --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
        --output-dir ${DIR} \
        --model-dir ${MODEL_DIR} \
        --load-epoch ${LOADEP} \
        --eval-only \
        DATASET.NUM_SHOTS ${SHOTS} \
        DATASET.SUBSAMPLE_CLASSES ${SUB}
fi
