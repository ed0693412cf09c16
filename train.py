"""Train and evaluate a prompt learner on CLIP, with KaiyangZhou/CoOp's command line.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/eurosat.yaml \
        --config-file configs/trainers/CoOp/vit_b16.yaml \
        --output-dir output/eurosat/CoOp/seed1 DATASET.NUM_SHOTS 16

Flags, config keys, output folders and log lines are CoOp's, so CoOp's and MaPLe's scripts,
config files and parse_test_res.py work unchanged.
"""
from launch import run_command_line

if __name__ == "__main__":
    run_command_line()
