"""End-to-end tests of dassl.engine with a tiny linear model on synthetic tensors.

The data loaders are built in ``build_data_loader`` (no DataManager), so these
tests only exercise the engine: training loop, logging, checkpoints, resume, test.
"""
import os
import re
import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, set_random_seed


class _Blobs(Dataset):
    """Three Gaussian blobs in 4-D; items are dicts like DatasetWrapper's."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        centers = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
        self.x = centers[self.y] + torch.randn(n, 4, generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"img": self.x[i], "label": self.y[i], "domain": 0, "impath": ""}


@TRAINER_REGISTRY.register(force=True)
class ToyTrainer(TrainerX):
    def build_data_loader(self):
        self.train_loader_x = DataLoader(_Blobs(48, 0), batch_size=8, shuffle=True)
        self.train_loader_u = None
        self.val_loader = DataLoader(_Blobs(30, 1), batch_size=16)
        self.test_loader = DataLoader(_Blobs(60, 2), batch_size=16)
        self.num_classes, self.num_source_domains = 3, 1
        self.lab2cname = {0: "a", 1: "b", 2: "c"}
        self.dm = None

    def build_model(self):
        self.model = nn.Linear(4, 3).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch):  # same structure as CoOp's
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary


def _cfg(out, **opts):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "ToyTrainer"
    cfg.OUTPUT_DIR = str(out)
    cfg.USE_CUDA = False
    cfg.OPTIM.update(NAME="sgd", LR=0.5, MAX_EPOCH=4, LR_SCHEDULER="cosine",
                     WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    cfg.TRAIN.CHECKPOINT_FREQ = 1
    cfg.TRAIN.PRINT_FREQ = 2
    for k, v in opts.items():
        node, key = k.split("__")
        cfg[node][key] = v
    return cfg


def _run(cfg, seed=1):
    set_random_seed(seed)
    trainer = build_trainer(cfg)
    trainer.train()
    return trainer


def test_train_writes_dassl_layout_and_logs(tmp_path, capsys):
    trainer = _run(_cfg(tmp_path / "out"))
    out = capsys.readouterr().out
    model_dir = tmp_path / "out" / "model"
    assert sorted(os.listdir(model_dir)) == ["checkpoint"] + [f"model.pth.tar-{e}" for e in range(1, 5)]
    assert (model_dir / "checkpoint").read_text() == "model.pth.tar-4\n"
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "out" / "tensorboard"))
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tmp")]

    ckpt = load_checkpoint(str(model_dir / "model.pth.tar-4"))
    assert ckpt["epoch"] == 4 and ckpt["val_result"] is None
    assert set(ckpt) >= {"state_dict", "optimizer", "scheduler", "rng_state"}
    assert torch.equal(ckpt["state_dict"]["weight"], trainer.model.weight)

    line = re.compile(r"epoch \[1/4\] batch \[2/6\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
                      r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr 1\.0000e-05 eta \d+:\d\d:\d\d")
    assert line.search(out), out
    assert "epoch [2/4] batch [6/6]" in out and "lr 5.0000e-01" in out
    assert "Deploy the last-epoch model" in out and "* accuracy:" in out
    assert re.search(r"Elapsed: \d+:\d\d:\d\d\nCPU time: \d+\.\d s\n", out)
    assert re.search(r"Evaluation time: \d+\.\d\d s for \d+ images \(CPU \d+\.\d\d s\)\n", out)
    acc = trainer.test()
    assert acc > 90.0  # separable blobs
    assert trainer.test(split="val") == pytest.approx(
        100.0 * sum(int(trainer.model(b["img"]).argmax(1).eq(b["label"]).sum()) for b in trainer.val_loader) / 30
    )


def test_resume_reproduces_uninterrupted_run(tmp_path, capsys):
    full = _run(_cfg(tmp_path / "a"), seed=1)
    # Simulate a run killed after epoch 2: keep only that checkpoint.
    ckpt_dir = tmp_path / "killed" / "model"
    ckpt_dir.mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "model" / "model.pth.tar-2", ckpt_dir)
    (ckpt_dir / "checkpoint").write_text("model.pth.tar-2\n")
    capsys.readouterr()
    cfg = _cfg(tmp_path / "b")
    cfg.RESUME = str(tmp_path / "killed")
    resumed = _run(cfg, seed=123)  # different seed: RNG state must come from the checkpoint
    out = capsys.readouterr().out
    assert "Previous epoch: 2" in out and "epoch [1/4]" not in out and "epoch [3/4] batch [1/6]" not in out
    assert "epoch [3/4] batch [2/6]" in out
    assert torch.equal(resumed.model.weight, full.model.weight)
    assert torch.equal(resumed.model.bias, full.model.bias)
    assert sorted(os.listdir(tmp_path / "b" / "model")) == ["checkpoint", "model.pth.tar-3", "model.pth.tar-4"]
    # Resuming into the same OUTPUT_DIR (no RESUME set) after training finished: nothing left to do.
    again = _run(_cfg(tmp_path / "b"))
    assert torch.equal(again.model.weight, full.model.weight)


def test_best_val_and_load_model(tmp_path, capsys):
    cfg = _cfg(tmp_path / "out", TEST__FINAL_MODEL="best_val", TRAIN__CHECKPOINT_FREQ=0)
    trainer = _run(cfg)
    out = capsys.readouterr().out
    model_dir = tmp_path / "out" / "model"
    assert set(os.listdir(model_dir)) == {"checkpoint", "model-best.pth.tar", "model.pth.tar-4"}
    assert "Evaluate on the *val* set" in out and "Deploy the model with the best val performance" in out
    best = load_checkpoint(str(model_dir / "model-best.pth.tar"))
    assert best["val_result"] == pytest.approx(trainer.best_result)

    fresh = build_trainer(_cfg(tmp_path / "other"))
    fresh.load_model(str(tmp_path / "out"))
    assert torch.equal(fresh.model.weight, best["state_dict"]["weight"])
    fresh.load_model(str(tmp_path / "out"), epoch=4)
    last = load_checkpoint(str(model_dir / "model.pth.tar-4"))
    assert torch.equal(fresh.model.weight, last["state_dict"]["weight"])
    assert torch.equal(trainer.model.weight, best["state_dict"]["weight"])  # best deployed after training
    assert "val_result=None" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="model.pth.tar-9"):
        fresh.load_model(str(tmp_path / "out"), epoch=9)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Trainer \"ToyTrainr\" is not registered.*ToyTrainer"):
        build_trainer(_cfg(tmp_path, TRAINER__NAME="ToyTrainr"))

    class NoModel(ToyTrainer):
        build_model = TrainerX.build_model

    with pytest.raises(NotImplementedError, match="must implement build_model"):
        NoModel(_cfg(tmp_path))

    trainer = build_trainer(_cfg(tmp_path))
    with pytest.raises(FloatingPointError):
        trainer.model_backward(torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(KeyError, match="already registered"):
        trainer.register_model("model", trainer.model)
    with pytest.raises(KeyError, match="No registered model"):
        trainer.get_model_names("head")
    assert trainer.get_current_lr() == pytest.approx(1e-5) and trainer.device.type == "cpu"


def test_trainer_on_datamanager(tmp_path, capsys):
    """Default build_data_loader(): DataManager on the generated SyntheticShapes dataset."""
    pytest.importorskip("datasets.synthetic_shapes")

    @TRAINER_REGISTRY.register(force=True)
    class ToyImageTrainer(ToyTrainer):
        build_data_loader = TrainerX.build_data_loader

        def build_model(self):
            self.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, self.num_classes))
            self.optim = build_optimizer(self.model, self.cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
            self.register_model("model", self.model, self.optim, self.sched)

    cfg = _cfg(tmp_path / "out", TRAINER__NAME="ToyImageTrainer")
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # launch.extend_cfg adds this key
    cfg.DATASET.update(ROOT=str(tmp_path / "data"), NAME="SyntheticShapes", NUM_SHOTS=2)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.INPUT.SIZE = (32, 32)
    cfg.OPTIM.MAX_EPOCH = 2
    trainer = _run(cfg)
    assert trainer.num_classes == 10 and trainer.lab2cname[0] == "circle"
    assert len(trainer.train_loader_x) == 5 and trainer.dm is not None
    assert "epoch [2/2] batch [4/5]" in capsys.readouterr().out
    assert 0.0 <= trainer.test() <= 100.0
    assert os.path.isfile(tmp_path / "out" / "model" / "model.pth.tar-2")


class _Draws(Dataset):
    """Item i: (i, a draw from the global torch RNG), as an augmentation would draw."""

    def __len__(self):
        return 22

    def __getitem__(self, i):
        return torch.tensor([float(i), float(torch.rand(()))])


def test_resume_epoch_loader_skips_finished_batches_in_the_epochs_order():
    """The rest of an epoch from the RNG states of its start: same order, the finished batches
    skipped (never loaded), the interrupted run's RNG states restored before the next batch is
    loaded. For a new iterator (no or non-persistent workers), one that persistent workers keep
    (a later epoch: no base seed drawn), and DistributedSampler (order from (seed, epoch))."""
    from torch.utils.data import DistributedSampler, RandomSampler

    from dassl.data.data_manager import resume_epoch_loader
    from dassl.data.samplers import SkipSampler
    from dassl.engine.checkpoint import creates_iterator
    from dassl.utils import get_rng_state, set_rng_state

    def epoch(loader):
        """(RNG states before the epoch, new iterator?, batches, RNG states after each batch)."""
        start, fresh = get_rng_state(), creates_iterator(loader)
        batches, states = [], []
        for batch in loader:
            batches.append(batch)
            states.append(get_rng_state())
        return start, fresh, batches, states

    set_random_seed(3)
    data = _Draws()
    plain = DataLoader(data, batch_size=4, sampler=RandomSampler(data), drop_last=True)
    persistent = DataLoader(data, batch_size=4, sampler=RandomSampler(data), drop_last=True, num_workers=2,
                            persistent_workers=True)
    dist = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, num_replicas=2, rank=1, seed=5))
    dist.sampler.set_epoch(3)
    for loader, done, exact_values in ((plain, 2, True), (persistent, 3, False), (dist, 4, True)):
        epoch(loader)  # epoch 0: a persistent loader's iterator exists from here on
        start, fresh, batches, states = epoch(loader)
        assert fresh == (loader is not persistent)
        set_rng_state(start)
        rest = resume_epoch_loader(loader, done, fresh, on_start=lambda: set_rng_state(states[done - 1]))
        resumed = list(rest)
        assert len(rest) == len(loader) - done == len(resumed)
        order = [b[:, 0].tolist() for b in batches[done:]]
        assert [b[:, 0].tolist() for b in resumed] == order  # same items, same order
        if exact_values:  # loaded in this process: the same RNG draws too
            assert all(torch.equal(a, b) for a, b in zip(resumed, batches[done:]))
    # The skipped items are never read.
    sampler = SkipSampler(list(range(10)), 4, on_start=lambda: calls.append("start"))
    calls = []
    assert list(sampler) == [4, 5, 6, 7, 8, 9] and len(sampler) == 6 and calls == ["start"]


class _Interrupt(Exception):
    pass


@TRAINER_REGISTRY.register(force=True)
class InterruptedToyTrainer(ToyTrainer):
    """ToyTrainer stopping just before global iteration STOP_AT (as DASSL_FAULT_INJECT=kill@N)."""

    STOP_AT = None

    def forward_backward(self, batch):
        if self.epoch * self.num_batches + self.batch_idx == self.STOP_AT:
            raise _Interrupt
        return super().forward_backward(batch)


def test_mid_epoch_checkpoints_resume_exactly(tmp_path, capsys):
    """TRAIN.CHECKPOINT_ITERS 4 (6 batches per epoch): the files, and an interrupted run resumed
    from a mid-epoch checkpoint with another seed equals an uninterrupted run with
    CHECKPOINT_ITERS 0 (loss lines, weights, layout)."""
    def lines(text):
        return [re.sub(r" (time|data) \S+ \(\S+\)| eta \S+", "", l) for l in text.splitlines() if l.startswith("epoch [")]

    full = _run(_cfg(tmp_path / "full", TRAIN__PRINT_FREQ=1), seed=1)
    full_lines = lines(capsys.readouterr().out)
    InterruptedToyTrainer.STOP_AT = 2 * 6 + 5  # epoch 3, after 5 batches (mid-epoch file after 4)
    cfg = _cfg(tmp_path / "cut", TRAINER__NAME="InterruptedToyTrainer", TRAIN__CHECKPOINT_ITERS=4, TRAIN__PRINT_FREQ=1)
    with pytest.raises(_Interrupt):
        _run(cfg, seed=1)
    cut_lines = lines(capsys.readouterr().out)
    model_dir = tmp_path / "cut" / "model"
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2", "model.pth.tar-3-iter4"]
    assert (model_dir / "checkpoint").read_text() == "model.pth.tar-3-iter4\n"
    ckpt = load_checkpoint(str(model_dir / "model.pth.tar-3-iter4"))
    assert ckpt["epoch"] == 2 and ckpt["mid_epoch"]["batches_done"] == 4
    assert cut_lines == full_lines[:17]
    # Other data or batch size cannot continue the epoch: one error, before anything is written.
    other = tmp_path / "other" / "model"
    shutil.copytree(model_dir, other)
    ckpt["mid_epoch"]["num_batches"] = 7
    torch.save(ckpt, other / "model.pth.tar-3-iter4")
    with pytest.raises(ValueError, match=r"model.pth.tar-3-iter4: it was written with 7 batches of 8 per epoch, "
                                         r"and this run has 6 of 8"):
        _run(_cfg(tmp_path / "other", TRAIN__CHECKPOINT_ITERS=4))
    assert not (tmp_path / "other" / "tensorboard").exists()
    capsys.readouterr()
    InterruptedToyTrainer.STOP_AT = None
    resumed = _run(cfg, seed=123)  # the RNG states come from the checkpoint
    out = capsys.readouterr().out
    assert "Previous epoch: 2\nResuming epoch 3 at batch 5/6 (TRAIN.CHECKPOINT_ITERS)" in out
    assert lines(out) == full_lines[16:]
    assert torch.equal(resumed.model.weight, full.model.weight) and torch.equal(resumed.model.bias, full.model.bias)
    assert sorted(os.listdir(model_dir)) == sorted(os.listdir(tmp_path / "full" / "model"))
