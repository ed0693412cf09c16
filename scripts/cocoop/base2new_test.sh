#!/bin/bash
# Base-to-new, step 2: evaluate the base-trained model on the new classes.
# usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_test.sh DATASET SEED
#   LOADEP must be the last epoch of CFG (10 for CoCoOp's configs); SUB=base re-tests the base classes.
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-CoCoOp}
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-10}
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
