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

# Two-stage training (TRAINER.EMPL.HOST_RUN auto in $TRAINER's $CFG; docs/EMPL.md): runs the
# host's own training step (defaults.txt's host=; its config: TRAINER.EMPL.HOST_CONFIG, else CFG if
# the caller gave one, else the host's for the protocol, as tools/run_protocol.py plans it) on the
# same data, seed and shots,
# then prints the opts that start the EMPL run from it. Prints nothing for other configs.
# usage: host_run_opts STEP PROTOCOL HOST_DIR_TEMPLATE ARG...  (the template's @T/@C: trainer/config)
host_run_opts() {
    local step=$1 protocol=$2 template=$3 host host_cfg
    shift 3
    local host_run host_config
    read -r host_run host_config <<< "$($PYTHON -c "import sys, yaml
e = ((yaml.safe_load(open(sys.argv[1])) or {}).get('TRAINER') or {}).get('EMPL') or {}
print(e.get('HOST_RUN') or '-', e.get('HOST_CONFIG') or '')" "configs/trainers/${TRAINER}/${CFG}.yaml")"
    [ "$host_run" = auto ] || return 0
    host=$(defaults trainer "$TRAINER" | grep -o 'host=[^ ]*' | cut -d= -f2)
    [ -n "$host" ] || { echo "HOST_RUN auto: $TRAINER has no host= in scripts/protocols/defaults.txt" >&2; exit 1; }
    host_cfg=${host_config:-${CFG_GIVEN:-$(METHOD=$host method_cfg "$protocol")}}
    # the host's output goes to the terminal (stderr), not into the opts
    TRAINER=$host CFG=$host_cfg METHOD= bash "scripts/protocols/${step}.sh" "$@" >&2 || exit 1
    local dir=${template//@T/$host}
    echo "TRAINER.EMPL.HOST_RUN ${dir//@C/$host_cfg}"
}
