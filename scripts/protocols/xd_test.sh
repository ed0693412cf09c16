#!/bin/bash
# Cross-dataset / domain generalization, step 2: evaluate the ImageNet model on a target dataset.
# usage: TRAINER=... CFG=... DATA=/path/to/datasets bash scripts/protocols/xd_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/xd_test.sh)"}
CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-$(max_epoch)}  # the last epoch of CFG unless given
SOURCE=${SOURCE:-imagenet}

DATASET=$1
SEED=$2

DIR=output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
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
        --model-dir output/${SOURCE}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED} \
        --load-epoch ${LOADEP} \
        --eval-only
fi
