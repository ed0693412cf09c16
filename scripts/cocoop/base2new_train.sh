#!/bin/bash
# Base-to-new, step 1: train on the base classes (CoCoOp's scripts/cocoop/base2new_train.sh).
# usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_train.sh DATASET SEED
#   TRAINER=CoOp CFG=vit_b16_ctxv1 ... runs CoOp through the same protocol.
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-CoCoOp}
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
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
