"""train.py end to end, as a user runs it: subprocesses, the tiny CLIP, generated data."""
import os
import subprocess
import sys

import pytest

import parse_test_res
from conftest import run_train_py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_train(*args, home=None, expect_ok=True, process=False):
    """train.py ARGS: in this process as __main__ (conftest.run_train_py), or with process=True in
    its own interpreter, as a user starts it. -> (exit status, stdout, stderr)."""
    env = {}
    if home:  # an empty home: no CLIP download cache
        env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    if process:
        proc = subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONWARNINGS="ignore", **env), timeout=300)
        result = proc.returncode, proc.stdout, proc.stderr
    else:
        result = run_train_py(args, env)
    if expect_ok and result[0] != 0:
        raise AssertionError(f"train.py failed ({result[0]}):\n{result[1][-3000:]}\n{result[2][-3000:]}")
    return result


TINY = ["--config-file", "configs/trainers/CoOp/tiny.yaml", "--dataset-config-file", "configs/datasets/synthetic_shapes.yaml"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def base_run_args(data_root, out):
    return ["--root", data_root, "--seed", 1, "--trainer", "CoOp", *TINY, "--output-dir", out,
            "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", 2]


@pytest.fixture(scope="module")
def base_run(data_root, tmp_path_factory):
    """CoOp base-to-new step 1: train on the base classes for 2 epochs (as a user does: its own
    process; the other runs of this module run train.py in the test process)."""
    out = tmp_path_factory.mktemp("out") / "train_base" / "seed1"
    run_train(*base_run_args(data_root, out), process=True)
    return out


def test_training_writes_log_checkpoints_and_result_block(base_run):
    log = (base_run / "log.txt").read_text()
    assert "epoch [2/2]" in log and "Finish training" in log
    assert (base_run / "prompt_learner" / "model.pth.tar-2").is_file()
    assert (base_run / "tensorboard").is_dir()
    accuracy = parse_test_res.read_metric(str(base_run / "log.txt"))
    assert accuracy is not None and 0.0 <= accuracy <= 100.0
    # 5 base classes of SyntheticShapes' 10, 20 test images each.
    assert "* total: 100" in log


def test_training_writes_its_config_as_config_yaml(base_run, data_root):
    """OUTPUT_DIR/config.yaml is the run's cfg.dump(): merged into a fresh config (train.py's
    defaults) it gives back the run's config, and tools/run_loading.py reads the run from it."""
    import launch
    from dassl.config import get_cfg_default
    from tools.run_loading import load_run_config

    run_cfg = launch.config_from_argv(map(str, base_run_args(data_root, base_run)))
    path = base_run / "config.yaml"
    assert path.read_text() == run_cfg.dump()
    fresh = get_cfg_default()
    launch.extend_cfg(fresh)
    fresh.merge_from_file(str(path))
    assert fresh == run_cfg and fresh.OPTIM.MAX_EPOCH == 2 and fresh.DATASET.SUBSAMPLE_CLASSES == "base"
    assert load_run_config(str(base_run)) == run_cfg
    assert not [p for p in os.listdir(base_run) if p.startswith("config.yaml-") or p.endswith(".tmp")]


def test_a_rerun_keeps_config_yaml_and_another_config_goes_next_to_it(tmp_path):
    """The same command again (a resume) leaves config.yaml as it is; a run of another config in
    the same folder keeps it too and writes config.yaml-<time> (as the log: log.txt-<time>)."""
    import launch

    def cfg(*opts):
        return launch.config_from_argv(["--trainer", "CoOp", *TINY, "--output-dir", str(tmp_path), *opts])

    first = cfg("OPTIM.MAX_EPOCH", "2")
    path = launch.save_config(first)
    assert path == str(tmp_path / "config.yaml")
    os.utime(path, (0, 0))
    assert launch.save_config(cfg("OPTIM.MAX_EPOCH", "2")) == path and os.stat(path).st_mtime == 0  # not rewritten
    other = cfg("OPTIM.MAX_EPOCH", "3")
    second = launch.save_config(other)
    assert os.path.basename(second).startswith("config.yaml-")
    assert open(path).read() == first.dump() and open(second).read() == other.dump()
    assert sorted(os.listdir(tmp_path)) == sorted(["config.yaml", os.path.basename(second)])  # no temp file


def test_eval_only_on_new_classes_loads_the_trained_prompt(base_run, data_root, tmp_path):
    out = tmp_path / "test_new" / "seed1"
    run_train(
        "--root", data_root, "--seed", 1, "--trainer", "CoOp", *TINY, "--output-dir", out,
        "--model-dir", base_run, "--load-epoch", 2, "--eval-only",
        "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new",
    )
    log = (out / "log.txt").read_text()
    assert "Loading weights to prompt_learner" in log and "model.pth.tar-2" in log
    assert parse_test_res.read_metric(str(out / "log.txt"), end_signal="=> result") is not None


def test_real_clip_without_weights_stops_with_instructions(tmp_path):
    """ViT-B/16 config on a EuroSAT-layout folder: gets as far as loading CLIP, then says what to place."""
    eurosat = tmp_path / "data" / "eurosat"
    from PIL import Image

    for cls in ("AnnualCrop", "Forest"):
        (eurosat / "2750" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 90, 30)).save(eurosat / "2750" / cls / f"{cls}_{i}.jpg")
    status, stdout, stderr = run_train(
        "--root", tmp_path / "data", "--trainer", "CoOp", "--output-dir", tmp_path / "out",
        "--config-file", "configs/trainers/CoOp/vit_b16.yaml", "--dataset-config-file", "configs/datasets/eurosat.yaml",
        home=tmp_path / "home", expect_ok=False,
    )
    assert status == 2, stderr[-3000:]
    assert "ViT-B-16.pt" in stderr and "MODEL.BACKBONE.CHECKPOINT" in stderr
    assert "Traceback" not in stderr
    assert "Loading CLIP" in stdout  # the dataset loaded; it stopped at the weights


MULTI_PROMPT_TRAINERS = ("EMPL_CoOp", "ProDA", "EMPL_ProDA", "MaPLe", "EMPL_MaPLe", "KgCoOp", "PromptSRC")


@pytest.fixture(scope="module")
def multi_prompt_runs(data_root, tmp_path_factory):
    """EMPL_CoOp, ProDA, EMPL_ProDA, MaPLe and EMPL_MaPLe: train on base classes (EMPL evaluated
    with the config's inference mode, sample), one epoch each."""
    runs = {}
    for trainer in MULTI_PROMPT_TRAINERS:
        out = tmp_path_factory.mktemp(trainer) / "seed1"
        run_train(
            "--root", data_root, "--seed", 1, "--trainer", trainer,
            "--config-file", f"configs/trainers/{trainer}/tiny.yaml",
            "--dataset-config-file", "configs/datasets/synthetic_shapes.yaml", "--output-dir", out,
            "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", 1,
        )
        runs[trainer] = out
    return runs


@pytest.mark.parametrize("trainer", MULTI_PROMPT_TRAINERS)
def test_multi_prompt_trainers_train_and_evaluate(multi_prompt_runs, trainer):
    log = (multi_prompt_runs[trainer] / "log.txt").read_text()
    assert "Finish training" in log and parse_test_res.read_metric(str(multi_prompt_runs[trainer] / "log.txt")) is not None
    if trainer.startswith("EMPL"):  # the SGLD diagnostics are logged
        for key in ("loss_in", "loss_out", "sgld_energy_before", "sgld_energy_after", "sgld_diversity", "sgld_rejected_steps"):
            assert key in log


@pytest.mark.parametrize("trainer", ["EMPL_CoOp", "EMPL_ProDA", "EMPL_MaPLe"])
@pytest.mark.parametrize("mode", ["amortized", "anchor"])
def test_empl_inference_modes_on_new_classes(multi_prompt_runs, data_root, tmp_path, trainer, mode):
    out = tmp_path / "test_new"
    run_train(
        "--root", data_root, "--seed", 1, "--trainer", trainer,
        "--config-file", f"configs/trainers/{trainer}/tiny.yaml",
        "--dataset-config-file", "configs/datasets/synthetic_shapes.yaml", "--output-dir", out,
        "--model-dir", multi_prompt_runs[trainer], "--load-epoch", 1, "--eval-only",
        "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new", "TRAINER.EMPL.INFERENCE", mode,
    )
    log = (out / "log.txt").read_text()
    assert "model.pth.tar-1" in log and "* total: 100" in log
    assert parse_test_res.read_metric(str(out / "log.txt"), end_signal="=> result") is not None


def test_maple_eval_only_on_new_classes(multi_prompt_runs, data_root, tmp_path):
    """MaPLe trained on base classes loads onto the new classes (token buffers dropped)."""
    out = tmp_path / "test_new"
    run_train(
        "--root", data_root, "--seed", 1, "--trainer", "MaPLe",
        "--config-file", "configs/trainers/MaPLe/tiny.yaml",
        "--dataset-config-file", "configs/datasets/synthetic_shapes.yaml", "--output-dir", out,
        "--model-dir", multi_prompt_runs["MaPLe"], "--load-epoch", 1, "--eval-only",
        "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new",
    )
    log = (out / "log.txt").read_text()
    assert "Loading weights to prompt_learner" in log and "model.pth.tar-1" in log and "* total: 100" in log
    assert parse_test_res.read_metric(str(out / "log.txt"), end_signal="=> result") is not None
