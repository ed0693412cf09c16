"""Shared fixtures: the project root on sys.path, a tiny CLIP, and trainers built the way
train.py builds them (tiny config, generated SyntheticShapes data).

Comparing floats. CPUs differ (Intel, AMD) in the matrix kernels they choose for a shape, so a
computation's last bits can depend on the batch size or on how a sum is split. Bit equality
(`torch.equal`, `==`) is asserted only where both sides run the same operations on the same
shapes: a resumed run against an uninterrupted one, a cache hit against what was stored, the
same call twice. Where the shapes differ (one batch against chunks, one process against two),
the test asserts a tolerance and says why it is enough.
"""
import contextlib
import io
import os
import runpy
import sys
import traceback
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Parallel tests (pytest.ini: pytest-xdist, one worker per core, a test file per worker).
MAX_TEST_WORKERS = 8  # as the main job's JOBS: each worker holds its own torch (~0.5 GB)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per usable core, at most MAX_TEST_WORKERS."""
    return max(1, min(MAX_TEST_WORKERS, usable_cpus()))


def pytest_configure(config):
    """In a worker, torch gets the worker's share of the cores: N workers with torch's default
    of one thread per core would oversubscribe them (measured on 2 cores: 3 min 56 s against
    2 min 12 s). Tests never depend on the thread count (see "Comparing floats")."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, usable_cpus() // workers))


def make_cfg(root, trainer, config_file, output_dir, opts=()):
    """A frozen cfg as launch.setup_cfg makes it (dataset: SyntheticShapes)."""
    from dassl.config import get_cfg_default
    from launch import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs/datasets/synthetic_shapes.yaml"))
    cfg.merge_from_file(os.path.join(ROOT, config_file))
    cfg.DATASET.ROOT = str(root)
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.TRAINER.NAME = trainer
    cfg.SEED = 1
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def run_train_py(args, env=None):
    """(exit status, stdout, stderr) of `python train.py ARGS` run as __main__ in this process:
    the same code path as the command (argument parsing, the one-line user errors and their exit
    status 2), without starting an interpreter per run. env: variables set for the run. The log
    files train.py tees its output into are closed after the run."""
    saved_argv, saved_cwd, saved_env = sys.argv, os.getcwd(), dict(os.environ)
    os.environ.pop("TRAIN_DEBUG", None)
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    out, err = io.StringIO(), io.StringIO()
    status = 0
    sys.argv = ["train.py", *map(str, args)]
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                runpy.run_path(os.path.join(ROOT, "train.py"), run_name="__main__")
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:  # noqa: BLE001 - an uncaught error is what a user would see as a traceback
                traceback.print_exc(file=err)
                status = 1
            finally:
                for stream in (sys.stdout, sys.stderr):  # setup_logger's tees
                    if stream not in (out, err) and hasattr(stream, "close"):
                        stream.close()
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return status, out.getvalue(), err.getvalue()


def fixed_batch(trainer, n=8):
    """The first n images and labels of the trainer's training loader, on its device."""
    batch = next(iter(trainer.train_loader_x))
    return batch["img"][:n].to(trainer.device), batch["label"][:n].to(trainer.device)


def assert_gradients_reach_only(trainer, learned, images, labels):
    """One backward of the training loss: every parameter named in `learned` gets a nonzero
    gradient and every other parameter none."""
    trainer.model_zero_grad()
    trainer.compute_loss(images, labels)[0].backward()
    for name, p in trainer.model.named_parameters():
        if name in learned:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """One generated SyntheticShapes folder for every test of the session."""
    return tmp_path_factory.mktemp("synthetic_data")


@pytest.fixture(scope="session")
def build_tiny_trainer(synthetic_root, tmp_path_factory):
    """build_tiny_trainer(name, config_file, *opts) -> a dassl trainer on the tiny CLIP."""
    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    def build(name, config_file, *opts, output_dir=None):
        set_random_seed(1)
        out = output_dir or tmp_path_factory.mktemp(f"out_{name}")
        return build_trainer(make_cfg(synthetic_root, name, config_file, out, opts))

    return build


@pytest.fixture(scope="session")
def tiny_clip():
    """The deterministic tiny CLIP in fp32, eval mode."""
    from trainers.clip_backbone import build_local_clip

    return build_local_clip("tiny-vit")
