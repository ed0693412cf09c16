# Sourced by every protocol script: run from the repository root whatever the caller's cwd,
# and take the dataset root from the environment instead of an edited path.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
DATA=${DATA:?"set DATA to the folder that holds the datasets, e.g. DATA=~/datasets bash $0 ... (layouts: docs/DATASETS.md)"}
PYTHON=${PYTHON:-python}

# The last epoch (OPTIM.MAX_EPOCH) of configs/trainers/$TRAINER/$CFG.yaml: the checkpoint to test.
max_epoch() {
    $PYTHON -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['OPTIM']['MAX_EPOCH'])" \
        "configs/trainers/${TRAINER}/${CFG}.yaml"
}
