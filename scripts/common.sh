# Sourced by every protocol script: run from the repository root whatever the caller's cwd,
# and take the dataset root from the environment instead of an edited path.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
DATA=${DATA:?"set DATA to the folder that holds the datasets, e.g. DATA=~/datasets bash $0 ... (layouts: docs/DATASETS.md)"}
PYTHON=${PYTHON:-python}
