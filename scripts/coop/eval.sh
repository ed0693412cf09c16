#!/bin/bash
# Evaluate ImageNet-trained CoOp models on another dataset (CoOp's scripts/coop/eval.sh).
# usage: DATA=/path/to/datasets bash scripts/coop/eval.sh DATASET CFG
source "$(dirname "$0")/../common.sh"
TRAINER=CoOp
SHOTS=$(defaults shots)
NCTX=16
CSC=False
CTP=end

DATASET=$1
CFG=$2

for SEED in ${SEEDS:-$(defaults seeds)}; do
    train_py output/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/${DATASET}/seed${SEED} \
        --model-dir output/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED} \
        --load-epoch 50 \
        --eval-only \
        TRAINER.COOP.N_CTX ${NCTX} \
        TRAINER.COOP.CSC ${CSC} \
        TRAINER.COOP.CLASS_TOKEN_POSITION ${CTP}
done
