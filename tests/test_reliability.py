"""Interrupt/resume, determinism, bad input and progress reporting of train.py, run as a user
runs it (subprocesses, tiny CLIP, generated SyntheticShapes). docs/RELIABILITY.md."""
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch

import parse_test_res

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT_ENV = "DASSL_FAULT_INJECT"

# EMPL_CoOp exercises SGLD noise, the open vocabulary's own RNG and data order; 5 batches of 8
# per epoch, 2 epochs, every batch logged. Global iteration 7 = epoch 2, batch 3.
EMPL = ["--trainer", "EMPL_CoOp", "--config-file", "configs/trainers/EMPL_CoOp/tiny.yaml",
        "--dataset-config-file", "configs/datasets/synthetic_shapes.yaml"]
COOP = ["--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/tiny.yaml",
        "--dataset-config-file", "configs/datasets/synthetic_shapes.yaml"]
SMALL = ["DATASET.NUM_SHOTS", 4, "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "TRAIN.PRINT_FREQ", 1]


def train(*args, fault=None, expect=0):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.pop(FAULT_ENV, None)
    script = "train.py"
    if fault:  # test-only: tests/train_with_faults.py installs the fault, then runs train.py
        env[FAULT_ENV] = fault
        script = os.path.join("tests", "train_with_faults.py")
    proc = subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if expect is not None and proc.returncode != expect:
        raise AssertionError(f"train.py exited {proc.returncode}, expected {expect}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def ctx(out, epoch):
    ckpt = torch.load(os.path.join(out, "prompt_learner", f"model.pth.tar-{epoch}"), weights_only=False)
    return ckpt["state_dict"]["ctx"]


def loss_lines(text):
    """Training lines without their wall-clock fields (time, data, eta)."""
    lines = [l for l in text.splitlines() if l.startswith("epoch [")]
    return [re.sub(r" (time|data) \S+ \(\S+\)| eta \S+", "", l) for l in lines]


def tensorboard_scalars(out, tag):
    """[(step, value)] of a scalar as TensorBoard shows it (what a resume purged left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def result_block(text):
    return text[text.index("=> result"):].split("Elapsed")[0]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory):
    """The uninterrupted EMPL_CoOp run every interrupted one is compared with."""
    out = tmp_path_factory.mktemp("reference") / "seed1"
    train("--root", data_root, "--seed", 1, *EMPL, "--output-dir", out, *SMALL, "OPTIM.MAX_EPOCH", 2)
    return out


@pytest.fixture(scope="module")
def killed_then_rerun(data_root, tmp_path_factory):
    """The same command, SIGKILLed before global iteration 7 (mid epoch 2), then run again."""
    out = tmp_path_factory.mktemp("killed") / "seed1"
    cmd = ["--root", data_root, "--seed", 1, *EMPL, "--output-dir", out, *SMALL, "OPTIM.MAX_EPOCH", 2]
    killed = train(*cmd, fault="kill@7", expect=-signal.SIGKILL)
    state = {
        "files": sorted(os.listdir(out / "prompt_learner")),
        "pointer": (out / "prompt_learner" / "checkpoint").read_text(),
        "log": (out / "log.txt").read_text(),
        "stdout": killed.stdout,
    }
    rerun = train(*cmd)
    return out, state, rerun


def test_sigkill_mid_epoch_then_same_command_resumes_exactly(reference, killed_then_rerun):
    out, killed, rerun = killed_then_rerun
    # What the kill left: the complete epoch-1 checkpoint (written although CHECKPOINT_FREQ is 0),
    # no temporary file.
    assert killed["files"] == ["checkpoint", "model.pth.tar-1"] and killed["pointer"] == "model.pth.tar-1\n"
    assert "epoch [2/2] batch [2/5]" in killed["log"] and "epoch [2/2] batch [3/5]" not in killed["log"]
    # The re-run resumed from it and repeated the uninterrupted run exactly (CPU).
    assert "Previous epoch: 1" in rerun.stdout and "epoch [1/2]" not in rerun.stdout
    assert loss_lines(rerun.stdout) == loss_lines((reference / "log.txt").read_text())[5:]
    assert torch.equal(ctx(out, 2), ctx(reference, 2))
    assert result_block(rerun.stdout) == result_block((reference / "log.txt").read_text())
    # The resume-only epoch-1 file is gone once superseded: Dassl's final layout.
    assert sorted(os.listdir(out / "prompt_learner")) == sorted(os.listdir(reference / "prompt_learner")) \
        == ["checkpoint", "model.pth.tar-2"]
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    # The first log is kept; the re-run logs next to it (log.txt-<time>).
    logs = sorted(f for f in os.listdir(out) if f.startswith("log.txt"))
    assert len(logs) == 2 and (out / "log.txt").read_text() == killed["log"]


def test_sigkill_within_an_epoch_resumes_at_the_next_batch_exactly(reference, data_root, tmp_path):
    """TRAIN.CHECKPOINT_ITERS 2: checkpoints after batches 2 and 4 of every epoch (5 batches).
    SIGKILL before global iteration 8 (epoch 2, after 3 batches), then the same command again:
    it resumes at batch 3 of epoch 2 and ends exactly as the reference run, which has
    CHECKPOINT_ITERS 0 (so writing them changes no number either)."""
    out = tmp_path / "seed1"
    cmd = ["--root", data_root, "--seed", 1, *EMPL, "--output-dir", out, *SMALL, "OPTIM.MAX_EPOCH", 2,
           "TRAIN.CHECKPOINT_ITERS", 2]
    killed = train(*cmd, fault="kill@8", expect=-signal.SIGKILL)
    folder = out / "prompt_learner"
    # What the kill left: epoch 2's mid-epoch checkpoint, pointed at; epoch 1's resume-only
    # file went once that was written and read back; no temporary file.
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-2-iter2"]
    assert (folder / "checkpoint").read_text() == "model.pth.tar-2-iter2\n"
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    ref_log = (reference / "log.txt").read_text()
    ref_lines = loss_lines(ref_log)
    assert loss_lines(killed.stdout) == ref_lines[:8]  # up to epoch 2 batch 3

    rerun = train(*cmd)
    lines = rerun.stdout.splitlines()
    previous = lines.index("Previous epoch: 1")
    assert lines[previous + 1] == "Resuming epoch 2 at batch 3/5 (TRAIN.CHECKPOINT_ITERS)"
    assert loss_lines(rerun.stdout) == ref_lines[7:]  # epoch 2, batches 3-5, running averages too
    assert torch.equal(ctx(out, 2), ctx(reference, 2))
    assert result_block(rerun.stdout) == result_block(ref_log)
    assert sorted(os.listdir(folder)) == sorted(os.listdir(reference / "prompt_learner")) \
        == ["checkpoint", "model.pth.tar-2"]
    assert (folder / "checkpoint").read_text() == "model.pth.tar-2\n"
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    # TensorBoard: iteration 7, logged by the killed run and repeated, shows once.
    assert tensorboard_scalars(out, "train/loss") == tensorboard_scalars(reference, "train/loss")


EMPL_TINY, COOP_TINY = "configs/trainers/EMPL_CoOp/tiny.yaml", "configs/trainers/CoOp/tiny.yaml"


def _copy_run(reference, tmp_path, edit=None):
    """A copy of the reference run's output folder; ``edit(state_dict)`` changes its last checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    path = run / "prompt_learner" / "model.pth.tar-2"
    if edit is not None:
        ckpt = torch.load(path, weights_only=False)
        edit(ckpt["state_dict"])
        torch.save(ckpt, path)
    return run, path


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _make_nan(state_dict):
    state_dict["ctx"].view(-1)[3] = float("nan")


@pytest.mark.parametrize("case", ["corrupt", "other_trainer", "class_count", "nan"])
def test_resuming_from_a_bad_checkpoint_is_one_error_and_changes_nothing(case, reference, build_tiny_trainer,
                                                                         tmp_path):
    run, path = _copy_run(reference, tmp_path, _make_nan if case == "nan" else None)
    name, config, opts = "EMPL_CoOp", EMPL_TINY, []
    if case == "corrupt":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
        expected = "is unreadable, truncated or corrupt"
    elif case == "other_trainer":
        name, config = "CoOp", COOP_TINY
        expected = "was written by another trainer or model: it holds calibration_features, which CoOp's"
    elif case == "class_count":
        opts = ["DATASET.SUBSAMPLE_CLASSES", "base"]
        expected = "was written for 10 classes, and this run has 5"
    else:
        expected = "holds NaN/inf in the learnable tensor ctx (1 of"
    before = _files(run)
    trainer = build_tiny_trainer(name, config, *SMALL, "OPTIM.MAX_EPOCH", 3, *opts, output_dir=run)
    with pytest.raises(ValueError) as err:
        trainer.train()  # resumes in before_train, before anything is written
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"checkpoint {path} ") and expected in message, message
    assert f"delete {run / 'prompt_learner' / 'checkpoint'} to train from scratch" in message
    assert _files(run) == before  # no checkpoint, pointer or tensorboard file written or deleted


@pytest.mark.parametrize("case", ["corrupt", "class_count", "nan"])
def test_evaluating_a_bad_checkpoint_is_one_error(case, reference, build_tiny_trainer, tmp_path):
    edit = {"nan": _make_nan, "corrupt": None,
            # a class-specific context (CSC) of the 10 classes, evaluated on the 5 base ones
            "class_count": lambda sd: sd.update(ctx=sd["ctx"].unsqueeze(0).repeat(10, 1, 1))}[case]
    run, path = _copy_run(reference, tmp_path, edit)
    opts = ["TRAINER.COOP.CSC", True, "TRAINER.COOP.N_CTX", 4, "DATASET.SUBSAMPLE_CLASSES", "base"] \
        if case == "class_count" else []
    if case == "corrupt":
        path.write_bytes(b"PK\x03\x04 not a checkpoint")
    expected = {"corrupt": "is unreadable, truncated or corrupt",
                "class_count": "ctx has shape (10, 4, 64) there and (5, 4, 64) here, so it was written for 10 "
                               "classes, and this run has 5",
                "nan": "holds NaN/inf in the learnable tensor ctx"}[case]
    name, config = ("CoOp", COOP_TINY) if case == "class_count" else ("EMPL_CoOp", EMPL_TINY)
    trainer = build_tiny_trainer(name, config, *opts, output_dir=tmp_path / "eval")
    with pytest.raises(ValueError) as err:
        trainer.load_model(str(run), epoch=2)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"checkpoint {path} ") and expected in message, message
    assert message.endswith(f"pass the --model-dir of a training run with this trainer ({name}) and the same settings")


def test_evaluating_on_new_classes_still_loads_a_shared_context(reference, build_tiny_trainer, tmp_path):
    """Base-to-new: a context without a class dimension loads into a model of other classes (the
    class-dependent buffers are not loaded), and EMPL's calibration features take their saved size."""
    trainer = build_tiny_trainer("EMPL_CoOp", EMPL_TINY, "DATASET.SUBSAMPLE_CLASSES", "new",
                                 output_dir=tmp_path / "eval")
    trainer.load_model(str(reference), epoch=2)
    assert torch.equal(trainer.model.prompt_learner.ctx.detach(), ctx(reference, 2))
    assert trainer.model.prompt_learner.classes.n_cls == 5


def test_eval_only_without_the_model_lists_what_exists(reference, build_tiny_trainer, tmp_path):
    trainer = build_tiny_trainer("CoOp", COOP_TINY, output_dir=tmp_path / "eval")
    folder = reference / "prompt_learner"
    cases = [
        (tmp_path / "missing", 2, f"model folder {tmp_path / 'missing'} does not exist: --model-dir must be"),
        (tmp_path, 2, f"{tmp_path} has no prompt_learner/ folder"),
        (reference, 7, f"no model at {folder / 'model.pth.tar-7'}; the epochs saved there are 2: pass one of "
                       "them as --load-epoch"),
        (reference, None, f"no model at {folder / 'model-best.pth.tar'} (written only with TEST.FINAL_MODEL "
                          "best_val); the epochs saved there are 2"),
    ]
    for directory, epoch, expected in cases:
        with pytest.raises(FileNotFoundError) as err:
            trainer.load_model(str(directory), epoch=epoch)
        assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_bad_checkpoint_through_train_py_is_one_line_exit_2(reference, data_root, tmp_path):
    """Another trainer's checkpoint: load_state_dict's RuntimeError used to be a traceback and
    exit status 1."""
    run, path = _copy_run(reference, tmp_path)
    before = _files(run)
    proc = train("--root", data_root, "--seed", 1, *COOP, "--output-dir", run, *SMALL, "OPTIM.MAX_EPOCH", 3,
                 expect=2)
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error: checkpoint {path} was written by another trainer or model")
    assert "Traceback" not in proc.stderr
    after = _files(run)
    assert {f: after[f] for f in before} == before and all(f.startswith(("log.txt", "config.yaml")) for f in set(after) - set(before))


def test_same_seed_gives_identical_losses_and_accuracy(reference, killed_then_rerun):
    """Two processes with the same seed, data and machine: the killed run's 7 training lines
    (loss, acc, L_in, L_out and the SGLD diagnostics, printed to 4 decimals) equal the
    reference run's; the accuracy equality is checked on the resumed run above and here."""
    _, killed, rerun = killed_then_rerun
    ref_lines = loss_lines((reference / "log.txt").read_text())
    assert len(ref_lines) == 10
    assert loss_lines(killed["log"]) == ref_lines[:7]
    acc = parse_test_res.read_metric(str(reference / "log.txt"))
    assert acc is not None and f"* accuracy: {acc:.1f}%" in rerun.stdout


def test_tensorboard_has_losses_lr_accuracy_and_sgld_diagnostics(reference):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(reference / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/acc", "train/lr", "train/loss_in", "train/loss_out",
                "train/sgld_energy_before", "train/sgld_energy_after", "train/sgld_diversity",
                "train/sgld_distance_to_anchor", "train/sgld_rejected_steps", "train/sgld_data_energy_gain",
                "train/sgld_data_energy_z", "train/sgld_shift_ratio", "train/sgld_spread_ratio", "test/accuracy"):
        assert tag in tags, sorted(tags)
    assert len(acc.Scalars("train/loss")) == 10  # one per iteration
    final = parse_test_res.read_metric(str(reference / "log.txt"))
    assert acc.Scalars("test/accuracy")[-1].value == pytest.approx(final, abs=0.05)


def test_resumed_run_writes_each_step_to_tensorboard_once(reference, killed_then_rerun):
    """The killed run logged iterations 0-6 and the re-run repeats 5 and 6 (epoch 2 from its
    start): TensorBoard shows each iteration once, with the uninterrupted run's values."""
    out, _, _ = killed_then_rerun
    assert len(os.listdir(out / "tensorboard")) == 2  # one event file per process
    for tag in ("train/loss", "train/lr", "train/sgld_diversity"):
        assert tensorboard_scalars(out, tag) == tensorboard_scalars(reference, tag), tag
    assert [step for step, _ in tensorboard_scalars(out, "train/loss")] == list(range(10))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path):
    out = tmp_path / "nan"
    proc = train("--root", data_root, "--seed", 1, *COOP, "--output-dir", out, *SMALL,
                 "OPTIM.MAX_EPOCH", 2, fault="nan@7", expect=2)
    error = proc.stderr.strip().splitlines()
    assert error[0].startswith("error: Loss is infinite or NaN! (loss = nan) at epoch 2 batch 3")
    assert "model.pth.tar-1 is kept" in error[0] and "Traceback" not in proc.stderr
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model.pth.tar-1"]
    assert (out / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert torch.isfinite(ctx(out, 1)).all()


@pytest.mark.parametrize("fault, why", [("diskfull", "No space left on device"), ("corrupt", "did not read back")])
def test_checkpoint_that_cannot_be_written_is_one_error_and_keeps_the_last_good_one(data_root, tmp_path, fault, why):
    """From global iteration 7 (epoch 2) every checkpoint write fails: on a full disk, or on a
    failing one whose file does not read back. The run stops at epoch 2's checkpoint with one
    error line; epoch 1's checkpoint and the pointer to it are as they were."""
    out = tmp_path / fault
    proc = train("--root", data_root, "--seed", 1, *COOP, "--output-dir", out, *SMALL,
                 "OPTIM.MAX_EPOCH", 2, fault=f"{fault}@7", expect=2)
    error = proc.stderr.strip().splitlines()
    assert error[0].startswith(f"error: could not write {out / 'prompt_learner' / 'model.pth.tar-2'} (")
    assert why in error[0] and "model.pth.tar-1, which is kept" in error[0] and "Traceback" not in proc.stderr
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model.pth.tar-1"]
    assert (out / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert torch.isfinite(ctx(out, 1)).all()
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]


def _copy_dataset_with_corrupt_test_image(data_root, dst):
    src = os.path.join(data_root, "synthetic_shapes")
    shutil.copytree(src, dst / "synthetic_shapes", ignore=shutil.ignore_patterns("split_fewshot"))
    bad = dst / "synthetic_shapes" / "images" / "star" / "test_003.png"
    assert bad.is_file()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return bad


def test_corrupt_image_names_the_file_and_can_be_skipped(reference, data_root, tmp_path):
    bad = _copy_dataset_with_corrupt_test_image(data_root, tmp_path / "data")
    out = tmp_path / "out"
    # Default: the evaluation stops at the file (read in a DataLoader worker), one line, exit 2;
    # the checkpoint written before it is kept.
    proc = train("--root", tmp_path / "data", "--seed", 1, *COOP, "--output-dir", out, *SMALL,
                 "OPTIM.MAX_EPOCH", 1, "DATALOADER.NUM_WORKERS", 1, expect=2)
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and str(bad) in first and "SKIP_CORRUPT_IMAGES" in first
    assert "Traceback" not in proc.stderr
    assert (out / "prompt_learner" / "model.pth.tar-1").is_file()
    # DATALOADER.SKIP_CORRUPT_IMAGES True: skipped and counted; 199 of 200 test images evaluated.
    proc = train("--root", tmp_path / "data", "--seed", 1, *COOP, "--output-dir", tmp_path / "eval",
                 "--eval-only", "--model-dir", out, "--load-epoch", 1, *SMALL,
                 "DATALOADER.SKIP_CORRUPT_IMAGES", True)
    assert f"Skipped 1 unreadable image(s) in test (DATALOADER.SKIP_CORRUPT_IMAGES): {bad}" in proc.stdout
    assert "1 unreadable image(s) skipped in total" in proc.stdout and "* total: 199" in proc.stdout


def test_eval_progress_bar_only_on_a_terminal_and_rank_0(monkeypatch):
    from dassl.engine import trainer as engine

    class Console:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, s):
            pass

        def flush(self):
            pass

    data = [1, 2, 3]
    monkeypatch.setattr(sys, "stderr", Console(False))
    assert engine._progress(data) is data  # a pipe or a job log: no bar
    monkeypatch.setattr(sys, "stderr", Console(True))
    assert engine._progress(data, enabled=False) is data  # TEST.PROGRESS_BAR False
    bar = engine._progress(data)
    assert bar is not data and list(bar) == data
    monkeypatch.setattr(engine, "is_main_process", lambda: False)
    assert engine._progress(data) is data  # ranks other than 0


def test_deterministic_flag_sets_the_gpu_determinism_switches(monkeypatch):
    """train.py --deterministic: the switches docs/RELIABILITY.md lists, set before the trainer
    is built (checked here on CPU, where they are plain flags); restored after the test."""
    import launch

    assert launch.build_parser().parse_args(["--deterministic"]).deterministic
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.backends.cuda.flash_sdp_enabled(),
             torch.backends.cuda.mem_efficient_sdp_enabled(), torch.backends.cuda.cudnn_sdp_enabled())
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        launch.make_deterministic()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled() and not torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2])
        torch.backends.cuda.enable_flash_sdp(saved[3])
        torch.backends.cuda.enable_mem_efficient_sdp(saved[4])
        torch.backends.cuda.enable_cudnn_sdp(saved[5])
