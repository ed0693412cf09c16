#!/bin/bash
# Base-to-new, step 1: train on the base classes (CoCoOp's scripts/cocoop/base2new_train.sh).
# usage: TRAINER=... CFG=... DATA=/path/to/datasets bash scripts/protocols/base2new_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/base2new_train.sh)"}
CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-16}

DATASET=$1
SEED=$2

DIR=output/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
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
        DATASET.NUM_SHOTS ${SHOTS} \
        DATASET.SUBSAMPLE_CLASSES base
fi
