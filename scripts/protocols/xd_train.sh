#!/bin/bash
# Cross-dataset / domain generalization, step 1: train on ImageNet, all classes, 16 shots.
# usage: TRAINER=... CFG=... DATA=/path/to/datasets bash scripts/protocols/xd_train.sh SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/xd_train.sh)"}
CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-16}
DATASET=${SOURCE:-imagenet}

SEED=$1

DIR=output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
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
        DATASET.NUM_SHOTS ${SHOTS}
fi
