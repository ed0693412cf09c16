#!/bin/bash
# CoOp few-shot training, 3 seeds (CoOp's scripts/coop/main.sh).
# usage: DATA=/path/to/datasets bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
#   e.g. bash scripts/coop/main.sh caltech101 rn50_ep50 end 16 1 False
source "$(dirname "$0")/../common.sh"
TRAINER=CoOp

DATASET=$1
CFG=$2  # config file
CTP=$3  # class token position (end, middle or front)
NCTX=$4  # number of context tokens
SHOTS=$5  # number of shots (1, 2, 4, 8, 16)
CSC=$6  # class-specific context (False or True)

for SEED in ${SEEDS:-$(defaults seeds)}; do
    train_py_unless_done "output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}" \
        TRAINER.COOP.N_CTX ${NCTX} \
        TRAINER.COOP.CSC ${CSC} \
        TRAINER.COOP.CLASS_TOKEN_POSITION ${CTP} \
        DATASET.NUM_SHOTS ${SHOTS}
done
