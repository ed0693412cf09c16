#!/bin/bash
# PromptSRC, protocol step base2new_train (scripts/protocols/base2new_train.sh with this method's defaults from scripts/protocols/defaults.txt).
# usage: DATA=/path/to/datasets bash scripts/promptsrc/base2new_train.sh DATASET SEED   (TRAINER, CFG, SHOTS, ... may be overridden)
METHOD=PromptSRC exec bash "$(dirname "$0")/../protocols/base2new_train.sh" "$@"
