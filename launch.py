"""What train.py runs, and what the tools/ commands share with it.

train.py is CoOp's command line and nothing else; this module holds the run itself: the config
set-up (Dassl's defaults, CoOp's and MaPLe's method keys, ours, then the files, flags and opts),
`main`, and the user errors that every command line reports on one line (exit status 2). The
tools import it for the config set-up, to run train.py's `main` in-process and to report errors
as train.py does; it is a module of its own so that no command imports the entry script.
"""
import argparse
import os
import sys
import time

import torch

from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import (
    UserError,
    atomic_write,
    cleanup_distributed,
    collect_env_info,
    get_rank,
    init_distributed,
    is_main_process,
    set_random_seed,
    setup_logger,
)

import benchmark
import datasets  # noqa: F401  (registers every dataset in DATASET_REGISTRY)
import trainers  # noqa: F401  (registers every trainer in TRAINER_REGISTRY)
from trainers.config import add_method_config

benchmark.register()  # the bundled benchmark's World* datasets and world CLIPs

# train.py --help's first line.
DESCRIPTION = "Train and evaluate a prompt learner on CLIP, with KaiyangZhou/CoOp's command line."


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args):
    """Command-line flags override the config files (CoOp's precedence)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg):
    """Add the keys of the prompt learners to Dassl's defaults: each method's node, declared beside
    its trainer (trainers/config.py), and CoOp's DATASET.SUBSAMPLE_CLASSES (all, base or new)."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    add_method_config(cfg)


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    # 1. dataset config file, 2. method config file, 3. flags, 4. trailing KEY VALUE opts.
    # An unknown key raises dassl's ConfigKeyError, whose message names the key and the file.
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg



def config_from_argv(argv):
    """The frozen config of train.py's arguments (what follows `python train.py`)."""
    return setup_cfg(build_parser().parse_args(list(argv)))

def check_output_dir(path):
    """Stop before any work when OUTPUT_DIR cannot hold the log and checkpoints."""
    path = path or "."
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        if os.path.exists(path) and not os.path.isdir(path):
            reason = "a file of that name is in the way"
        raise PermissionError(
            f"cannot write to the output folder {path} ({reason}): pass another --output-dir or "
            "fix its permissions"
        ) from None


CONFIG_FILE = "config.yaml"


def save_config(cfg):
    """OUTPUT_DIR/config.yaml: the run's full config (cfg.dump()), the record tools/run_loading.py
    reads a run from. Written atomically; a re-run of the same command (resume) finds the same
    text and leaves the file alone; a run of another config in the same folder keeps the first
    one and writes config.yaml-<time> next to it, as setup_logger does with log.txt."""
    text = cfg.dump()
    path = os.path.join(cfg.OUTPUT_DIR or ".", CONFIG_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            if f.read() == text:
                return path
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    atomic_write(path, lambda f: f.write(text))
    return path


def main(args):
    cfg = setup_cfg(args)
    # torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join its process group (gloo on CPU, nccl on GPU).
    init_distributed(use_cuda=cfg.USE_CUDA)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if is_main_process():
        check_output_dir(cfg.OUTPUT_DIR)
        setup_logger(cfg.OUTPUT_DIR)
        save_config(cfg)
    else:  # only rank 0 prints and logs; the other ranks keep stderr for their errors
        sys.stdout = open(os.devnull, "w")

    if getattr(args, "deterministic", False):
        make_deterministic()
    elif torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True  # CoOp's choice: faster, not bit-identical

    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)

    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return

    if not args.no_train:
        trainer.train()


def make_deterministic():
    """Bit-identical GPU runs, at some speed (docs/RELIABILITY.md, "Determinism"): no cuDNN
    autotuning, deterministic cuDNN and torch kernels (an op without one raises), cuBLAS with a
    fixed workspace, and the math backend of scaled dot-product attention."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read at cuBLAS's first use
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_math_sdp(True)


def build_parser():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument(
        "--resume", type=str, default="", help="checkpoint directory (from which the training resumes)"
    )
    parser.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument(
        "--dataset-config-file", type=str, default="", help="path to config file for dataset setup"
    )
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir", type=str, default="", help="load model from this directory for eval-only mode"
    )
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-identical GPU runs (slower): docs/RELIABILITY.md, Determinism")
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


# Errors that mean "fix your input" (or, for FloatingPointError, "your settings made the loss
# diverge"): shown as one line instead of a traceback (set TRAIN_DEBUG=1 to see the traceback
# anyway). UserError is what the code raises on purpose for bad input (dassl/utils/errors.py); a
# ValueError or KeyError from anywhere else is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, PermissionError, FloatingPointError)


def one_line(err):
    """The message of a user error on one line. An error raised in a DataLoader worker comes
    back with the worker's traceback in its message: keep its last line, the original one."""
    message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
    if "Traceback (most recent call last)" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split())


def run_reporting_user_errors(fn, *args):
    """fn(*args); a user error ends the program with one line and exit status 2 (train.py and
    the tools/ command lines)."""
    try:
        return fn(*args)
    except USER_ERRORS as err:
        if os.environ.get("TRAIN_DEBUG"):
            raise
        rank = f"[rank {get_rank()}] " if get_rank() else ""
        print(f"{rank}error: {one_line(err)}\n(TRAIN_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)


def run_command_line(argv=None):
    """train.py: parse CoOp's flags, run `main`, report a user error on one line."""
    try:
        run_reporting_user_errors(main, build_parser().parse_args(argv))
    finally:
        cleanup_distributed()
