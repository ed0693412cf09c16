# Sourced by every protocol script: run from the repository root whatever the caller's cwd,
# and take the dataset root from the environment instead of an edited path.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
DATA=${DATA:?"set DATA to the folder that holds the datasets, e.g. DATA=~/datasets bash $0 ... (layouts: docs/DATASETS.md)"}
PYTHON=${PYTHON:-python}

# defaults KEY [WORD...]: the values after KEY [WORD...] on their line of scripts/protocols/defaults.txt,
# where each protocol default is written once (`defaults shots` -> 16).
defaults() {
    awk -v key="$*" '{ sub(/#.*/, ""); $1 = $1 } index($0 " ", key " ") == 1 { print substr($0, length(key) + 2); exit }' \
        scripts/protocols/defaults.txt
}

# The per-method scripts scripts/<method>/*.sh only set METHOD, a trainer of defaults.txt: TRAINER
# defaults to it, and CFG to its config for protocol $1 (base2new, or cross_dataset: also DG's).
method_cfg() {
    [ -n "$METHOD" ] || return 0
    local folder base2new cross_dataset
    read -r folder base2new cross_dataset _ <<< "$(defaults trainer "$METHOD")"
    if [ "$1" = base2new ]; then echo "$base2new"; else echo "$cross_dataset"; fi
}

# The last epoch (OPTIM.MAX_EPOCH) of configs/trainers/$TRAINER/$CFG.yaml: the checkpoint to test.
max_epoch() {
    $PYTHON -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['OPTIM']['MAX_EPOCH'])" \
        "configs/trainers/${TRAINER}/${CFG}.yaml"
}

# train_py DIR [ARG...]: train.py with $TRAINER's $CFG on $DATASET, seed $SEED, writing DIR; ARGs follow.
train_py() {
    local dir=$1
    shift
    $PYTHON train.py \
        --root "${DATA}" \
        --seed ${SEED} \
        --trainer ${TRAINER} \
        --dataset-config-file configs/datasets/${DATASET}.yaml \
        --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
        --output-dir ${dir} \
        "$@"
}

# The same, but a run whose DIR exists is skipped (CoOp's scripts).
train_py_unless_done() {
    if [ -d "$1" ]; then
        echo "Oops! The results exist at $1 (so skip this job)"
    else
        train_py "$@"
    fi
}
