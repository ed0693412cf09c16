#!/bin/bash
# Zero-shot CLIP with CoOp's hand-crafted template per dataset (CoOp's scripts/coop/zeroshot.sh).
# usage: DATA=/path/to/datasets bash scripts/coop/zeroshot.sh DATASET CFG   (CFG: rn50, rn101, vit_b32, vit_b16)
source "$(dirname "$0")/../common.sh"
TRAINER=ZeroshotCLIP
DATASET=$1
CFG=$2

$PYTHON train.py \
    --root "${DATA}" \
    --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/${DATASET}.yaml \
    --config-file configs/trainers/CoOp/${CFG}.yaml \
    --output-dir output/${TRAINER}/${CFG}/${DATASET} \
    --eval-only
