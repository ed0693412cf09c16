"""Read a train.py output folder ("run folder"): its config, and the trained model rebuilt as
`train.py --eval-only --model-dir RUN` does, for the analysis and table tools. The one reader of
a run's config: every tool goes through read_config_dump / load_run_config / config_value.

A run folder holds config.yaml (train.py writes cfg.dump() there; a later run of another config
in the same folder writes config.yaml-<time> and leaves it alone), log.txt (train.py also prints
the full config there, between "** Config **" and "Collecting env info": the only record of runs
made before config.yaml existed, read as a fallback) and, for trained methods,
<model name>/model.pth.tar-<epoch> with a `checkpoint` pointer to the last one. ZeroshotCLIP's
folder (from --eval-only) has no checkpoint.
"""
import os.path as osp
from typing import Optional, Sequence

import yaml
from yacs.config import CfgNode as CN

from dassl.utils import UserValueError

CONFIG_FILE = "config.yaml"  # launch.CONFIG_FILE
LOG_FILE = "log.txt"
CONFIG_START = "** Config **"
CONFIG_END = "Collecting env info"


class NotARunDirError(UserValueError):
    """The folder was not written by train.py (or its checkpoints are missing)."""


def read_config_dump(run_dir: str) -> dict:
    """The config of a run as a nested dict: RUN/config.yaml, or for a run made before train.py
    wrote config.yaml the config it printed into RUN/log.txt (empty strings then read as None)."""
    if not osp.isdir(run_dir):
        raise NotARunDirError(f"{run_dir} is not a folder")
    config_path = osp.join(run_dir, CONFIG_FILE)
    if osp.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            return _checked_dump(f.read(), config_path, "")
    log_path = osp.join(run_dir, LOG_FILE)
    if not osp.isfile(log_path):
        raise NotARunDirError(
            f"{run_dir} is not a train.py output folder: it has no {CONFIG_FILE} and no {LOG_FILE} "
            "(pass the --output-dir of a run)"
        )
    return _checked_dump(config_from_log(log_path), log_path, "the config dump in ")


def config_from_log(log_path: str) -> str:
    """The text of the config train.py printed into a log (print_args), as YAML."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    start = text.find(CONFIG_START)
    end = text.find(CONFIG_END, start)
    if start < 0 or end < 0:
        raise NotARunDirError(f"{log_path} holds no config dump ('{CONFIG_START}' block); was it written by train.py?")
    block = text[start:end].split("\n")
    # Skip the "** Config **" line and the row of asterisks under it.
    return "\n".join(line for line in block[1:] if not line.startswith("****"))


def _checked_dump(text: str, path: str, what: str) -> dict:
    try:
        dump = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise NotARunDirError(f"cannot parse {what}{path}: {err}") from None
    if not isinstance(dump, dict) or "TRAINER" not in dump:
        raise NotARunDirError(f"{what}{path} has no TRAINER node")
    return dump


def key_names(dotted_key: str) -> list:
    """The key and its old names (trainers.empl_config.RENAMED_KEYS), which configs, opts and
    saved runs written before a rename still use."""
    from trainers.empl_config import RENAMED_KEYS

    return [dotted_key] + [old for old, new in RENAMED_KEYS.items() if new == dotted_key]


def config_value(dump: dict, dotted_key: str):
    """The value of e.g. TRAINER.EMPL.OPEN_LOSS_WEIGHT in a read_config_dump dict, or under the
    key's old name in a run made before it was renamed; None if absent."""
    for key in key_names(dotted_key):
        node = dump
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def _fill_empty_strings(dump: dict, defaults: CN, prefix: str = "") -> dict:
    """yacs prints '' as nothing, which YAML reads as None: give such keys their '' back."""
    fixed = {}
    for key, value in dump.items():
        default = defaults.get(key) if isinstance(defaults, CN) else None
        if isinstance(value, dict):
            fixed[key] = _fill_empty_strings(value, default if isinstance(default, CN) else CN(), f"{prefix}{key}.")
        elif value is None and isinstance(default, str):
            fixed[key] = ""
        else:
            fixed[key] = value
    return fixed


def load_run_config(run_dir: str, root: Optional[str] = None, opts: Sequence[str] = ()):
    """The frozen config of a run: train.py's defaults + the run's dump + opts (KEY VALUE ...).

    root replaces DATASET.ROOT (the dump holds the path as given at training time).
    """
    from dassl.config import get_cfg_default
    from launch import extend_cfg

    dump = read_config_dump(run_dir)
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_other_cfg(CN(_fill_empty_strings(dump, cfg)))
    if root:
        cfg.DATASET.ROOT = root
    cfg.OUTPUT_DIR = run_dir
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def last_saved_epoch(run_dir: str, model_name: str) -> int:
    """Epoch of RUN/<model_name>/checkpoint's pointer (model.pth.tar-<epoch>)."""
    pointer = osp.join(run_dir, model_name, "checkpoint")
    if not osp.isfile(pointer):
        raise NotARunDirError(
            f"{run_dir} has no {model_name}/checkpoint: the run saved no model (did it finish training?)"
        )
    with open(pointer) as f:
        name = f.readline().strip()
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        raise NotARunDirError(f"{pointer} names {name!r}, not model.pth.tar-<epoch>") from None


def build_trainer_from_run(
    run_dir: str, root: Optional[str] = None, opts: Sequence[str] = (), epoch: Optional[int] = None
):
    """The run's trainer with its weights loaded, in eval mode.

    epoch: which model.pth.tar-<epoch> to load; default: model-best.pth.tar when the run kept
    one (TEST.FINAL_MODEL best_val), else the last saved epoch. Trainers with nothing to load
    (ZeroshotCLIP) are returned as built.
    """
    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    cfg = load_run_config(run_dir, root, opts)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    model_names = trainer.get_model_names()
    if model_names:
        best = all(osp.isfile(osp.join(run_dir, n, "model-best.pth.tar")) for n in model_names)
        if epoch is None and not (best and cfg.TEST.FINAL_MODEL == "best_val"):
            epoch = last_saved_epoch(run_dir, model_names[0])
        trainer.load_model(run_dir, epoch=epoch)
        trainer.set_model_mode("eval")
    return trainer
