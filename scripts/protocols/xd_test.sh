#!/bin/bash
# Cross-dataset / domain generalization, step 2: evaluate the ImageNet model on a target dataset.
# usage: TRAINER=... CFG=... (or METHOD=<trainer in defaults.txt>: its two) DATA=/path/to/datasets bash scripts/protocols/xd_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
TRAINER=${TRAINER:-$METHOD} TRAINER=${TRAINER:?"set TRAINER (or use scripts/<method>/xd_test.sh)"}
CFG=${CFG:-$(method_cfg cross_dataset)} CFG=${CFG:?"set CFG, a config name under configs/trainers/$TRAINER/"}
SHOTS=${SHOTS:-$(defaults shots)}
LOADEP=${LOADEP:-$(max_epoch)}  # the last epoch of CFG unless given
SOURCE=${SOURCE:-$(defaults source)}

DATASET=$1
SEED=$2

train_py_unless_done "output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}" \
    --model-dir output/${SOURCE}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED} \
    --load-epoch ${LOADEP} \
    --eval-only
