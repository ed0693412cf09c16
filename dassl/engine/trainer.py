"""Trainer templates mirroring Dassl's ``dassl.engine.trainer``.

Call order of ``train()``::

    before_train()                      # resume, tensorboard writer, timer
    for epoch in [start_epoch, max_epoch):
        before_epoch(); run_epoch(); after_epoch()   # after_epoch: checkpoints
    after_train()                       # final test, elapsed time

Subclasses (e.g. CoOp) implement ``build_model`` (create the model(s),
optimizer(s), scheduler(s) and ``register_model`` them) and
``forward_backward(batch)`` (one optimization step returning a dict of scalars).
``load_model`` checks each file before loading it; a trainer that loads only part of a
checkpoint sets ``load_model_skip`` / ``load_model_partial`` and overrides ``load_model_state``.
The checkpoint files' names, reading, checks and resume helpers are in checkpoint.py.
"""
from __future__ import annotations

import datetime
import math
import os
import os.path as osp
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from dassl.evaluation import build_evaluator
from dassl.engine.checkpoint import (
    check_mid_epoch_resume,
    check_resumable,
    check_state_dict,
    creates_iterator,
    find_model_file,
    global_batch_size,
    load_meter_states,
    meter_states,
    mid_epoch_checkpoint_name,
    pointed_checkpoint,
    read_checkpoint,
    resume_path,
    resumed_rng_state,
    reuse_persistent_workers,
    superseded_checkpoints,
)
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    UserKeyError,
    UserValueError,
    all_gather_object,
    all_reduce_mean_dict,
    average_gradients_on_backward,
    barrier,
    broadcast_module,
    get_rank,
    get_rng_state,
    get_world_size,
    is_distributed,
    is_main_process,
    mkdir_if_missing,
    save_checkpoint,
    set_random_seed,
    set_rng_state,
    training_seed,
    tolist_if_not,
)

Names = Optional[Union[str, List[str]]]


def _progress(iterable, enabled: bool = True, desc: str = ""):
    """tqdm bar on the real console: setup_logger tees stderr into log.txt and
    progress bars would flood it. Only on rank 0 and when that console is a terminal (not a
    pipe or a batch job's log), unless ``enabled`` is False (TEST.PROGRESS_BAR). Plain
    iteration otherwise, or if tqdm is missing."""
    console = getattr(sys.stderr, "console", sys.stderr)
    if not (enabled and is_main_process() and getattr(console, "isatty", lambda: False)()):
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, file=console, desc=desc, leave=False)


class TrainerBase:
    """Model bookkeeping, checkpointing, tensorboard and the generic epoch loop."""

    def __init__(self):
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Optional[torch.optim.Optimizer]]" = OrderedDict()
        self._scheds: OrderedDict = OrderedDict()
        self._writer = None

    # ------------------------------------------------------------- models
    def register_model(self, name: str = "model", model: Optional[nn.Module] = None, optim=None, sched=None):
        """Track ``model`` (and its optimizer/scheduler) for mode switching,
        LR updates and checkpointing; ``name`` is its checkpoint sub-folder."""
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot register a model before super().__init__() is called")
        if name in self._models:
            raise KeyError(f'A model named "{name}" is already registered')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Names = None) -> List[str]:
        real = list(self._models.keys())
        if names is None:
            return real
        names = tolist_if_not(names)
        for name in names:
            if name not in real:
                raise UserKeyError(f'No registered model named "{name}" (registered: {real})')
        return names

    def set_model_mode(self, mode: str = "train", names: Names = None) -> None:
        if mode not in ("train", "test", "eval"):
            raise KeyError(f"mode must be 'train', 'test' or 'eval', got '{mode}'")
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            else:
                self._models[name].eval()

    # ------------------------------------------------------------- checkpoints
    def save_model(self, epoch: int, directory: str, is_best: bool = False,
                   val_result: Optional[float] = None, model_name: str = "",
                   rng_state: Optional[dict] = None, mid_epoch: Optional[dict] = None) -> None:
        """Save every registered model to ``directory/<name>/model.pth.tar-<epoch+1>``
        (or ``model_name``). The file also holds the optimizer and scheduler
        states, ``val_result`` and the global RNG states (for exact resume): this process's
        current ones, or ``rng_state`` when given (a mid-epoch checkpoint passes the states of
        the moment it was asked for, before an override of save_model drew anything).
        ``mid_epoch``: how to resume within an epoch (TRAIN.CHECKPOINT_ITERS)."""
        rng_state = get_rng_state() if rng_state is None else rng_state
        if self.__dict__.get("_writer") is not None:
            self._writer.flush()  # what a resume from this checkpoint keeps is on disk
        # Every rank's RNG states (a collective: all ranks call save_model); rank 0 writes.
        rng_states = all_gather_object(rng_state)
        if is_main_process():
            extra = self.resume_state()
            for name in self.get_model_names():
                optim, sched = self._optims[name], self._scheds[name]
                save_checkpoint(
                    {
                        "state_dict": self._models[name].state_dict(),
                        "epoch": epoch + 1,
                        "optimizer": optim.state_dict() if optim is not None else None,
                        "scheduler": sched.state_dict() if sched is not None else None,
                        "val_result": val_result,
                        "rng_state": rng_state,
                        "rng_states_per_rank": rng_states,
                        "best_result": getattr(self, "best_result", None),
                        "trainer_state": extra,
                        **({"mid_epoch": mid_epoch} if mid_epoch is not None else {}),
                    },
                    osp.join(directory, name),
                    is_best=is_best,
                    model_name=model_name,
                )
        barrier()

    def resume_state(self) -> dict:
        """Trainer state beyond models/optimizers/schedulers/global RNGs that an exact resume
        needs (e.g. a private random generator); saved in every checkpoint."""
        return {}

    def load_resume_state(self, state: dict) -> None:
        """Restore what :meth:`resume_state` returned."""

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every model from ``directory/<name>/checkpoint``; return the start epoch
        (0 when there is nothing to resume from). A checkpoint that cannot be resumed from is
        one ValueError line naming it (check_checkpoint), raised before anything is written."""
        names = self.get_model_names()
        if not names or not all(osp.isfile(osp.join(directory, n, "checkpoint")) for n in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch, checkpoint, fpath = 0, None, None
        for name in names:
            fpath, fix = resume_path(osp.join(directory, name))
            checkpoint = self.read_checked_checkpoint(fpath, name, fix)
            check_resumable(checkpoint, fpath, fix)
            self._models[name].load_state_dict(checkpoint["state_dict"])
            optim, sched = self._optims[name], self._scheds[name]
            if optim is not None and checkpoint.get("optimizer") is not None:
                optim.load_state_dict(checkpoint["optimizer"])
            if sched is not None and checkpoint.get("scheduler") is not None:
                sched.load_state_dict(checkpoint["scheduler"])
            start_epoch = checkpoint["epoch"]
        restored = resumed_rng_state(checkpoint)
        mid_epoch = checkpoint.get("mid_epoch")
        if mid_epoch is not None:  # checked before anything is restored or written
            self.prepare_mid_epoch_resume(mid_epoch, fpath, restored)
        if restored is not None:
            set_rng_state(restored)
        if checkpoint.get("best_result") is not None:
            self.best_result = checkpoint["best_result"]
        if checkpoint.get("trainer_state"):
            self.load_resume_state(checkpoint["trainer_state"])
        print("Loaded model weights, optimizer, scheduler and RNG states")
        print(f"Previous epoch: {start_epoch}")  # Dassl's line
        if mid_epoch is not None:
            print(f"Resuming epoch {start_epoch + 1} at batch {mid_epoch['batches_done'] + 1}/"
                  f"{mid_epoch['num_batches']} (TRAIN.CHECKPOINT_ITERS)")
        return start_epoch

    def prepare_mid_epoch_resume(self, mid_epoch: dict, fpath: str, rng_state: Optional[dict]) -> None:
        """Remember how to resume within an epoch (SimpleTrainer implements it)."""
        raise UserValueError(f"{fpath} is a mid-epoch checkpoint (TRAIN.CHECKPOINT_ITERS), which "
                         f"{type(self).__name__} cannot resume from; point 'checkpoint' at a model.pth.tar-N")

    def check_checkpoint(self, fpath: str, checkpoint: dict, name: str, fix: str,
                         skip: Sequence[str] = (), partial: bool = False) -> None:
        """Raise one ValueError line, naming ``fpath`` and ending with ``fix``, when the
        checkpoint's state_dict cannot go into the registered model ``name``:
        - tensor names differ: written by another trainer or model;
        - shapes differ: another number of classes (when the differing size is this run's class
          count) or other settings (N_CTX, CSC, backbone, another trainer);
        - a learnable tensor (a parameter of the model) holds NaN or inf.
        ``skip``: tensor names (last component) left out of the name and shape checks, e.g.
        class-dependent buffers the caller drops before loading. ``partial``: missing buffers
        are fine, only a missing parameter is an error (load_state_dict(strict=False) loads)."""
        check_state_dict(fpath, checkpoint["state_dict"], self._models[name], f"{type(self).__name__}'s {name}",
                         getattr(self, "num_classes", None), fix, skip=skip, partial=partial)

    def read_checked_checkpoint(self, fpath: str, name: str, fix: str, skip: Sequence[str] = (),
                                partial: bool = False) -> dict:
        """read_checkpoint + check_checkpoint: the checkpoint at ``fpath`` for model ``name``, or
        one error line naming the file, what is wrong with it and ``fix``."""
        checkpoint = read_checkpoint(fpath, fix)
        self.check_checkpoint(fpath, checkpoint, name, fix, skip=skip, partial=partial)
        return checkpoint

    def model_dir_fix(self) -> str:
        """The fix an error about a checkpoint load_model was given ends with."""
        return f"pass the --model-dir of a training run with this trainer ({type(self).__name__}) and the same settings"

    def find_model_file(self, directory: str, name: str, epoch: Optional[int] = None) -> str:
        """``directory/<name>/model-best.pth.tar`` (epoch None) or ``model.pth.tar-<epoch>``;
        a one-line FileNotFoundError listing the saved epochs when it is not there."""
        return find_model_file(directory, name, epoch, type(self).__name__)

    # What load_model's check of each file (check_checkpoint) leaves out: tensor names (last
    # component) the file may hold or lack, and whether missing buffers are fine. The defaults
    # (check every tensor, load strictly) are Dassl's; a trainer that adapts the state_dict in
    # load_model_state (drops or resizes tensors) names those tensors here.
    load_model_skip: Sequence[str] = ()
    load_model_partial: bool = False

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load weights from ``directory/<name>/model-best.pth.tar`` (or ``model.pth.tar-<epoch>``)
        of every registered model: find_model_file, read_checked_checkpoint (skip and partial
        from load_model_skip / load_model_partial), then load_model_state."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given "
                  "(ignore this if it's done on purpose)")
            return
        fix = self.model_dir_fix()
        for name in self.get_model_names():
            model_path = self.find_model_file(directory, name, epoch)
            checkpoint = self.read_checked_checkpoint(model_path, name, fix, skip=self.load_model_skip,
                                                      partial=self.load_model_partial)
            self.load_model_state(name, model_path, checkpoint)

    def load_model_state(self, name: str, model_path: str, checkpoint: dict) -> None:
        """Put the checked ``checkpoint`` (read from ``model_path``) into the registered model
        ``name``: Dassl's message and a strict load_state_dict. Override to adapt the state_dict
        first (the tensors named in load_model_skip)."""
        val = checkpoint.get("val_result")
        val_str = f"{val:.1f}" if isinstance(val, (int, float)) else str(val)
        print(f"Load {model_path} to {name} (epoch={checkpoint.get('epoch')}, val_result={val_str})")
        self._models[name].load_state_dict(checkpoint["state_dict"])

    # ------------------------------------------------------------- optimization
    def update_lr(self, names: Names = None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError(self.non_finite_message(loss.detach().float().mean().item()))

    def non_finite_message(self, value) -> str:
        """One line: where the loss turned non-finite, what is kept, what to do."""
        where = ""
        if hasattr(self, "batch_idx"):
            where = f" at epoch {getattr(self, 'epoch', 0) + 1} batch {self.batch_idx + 1}"
        last = None
        directory = getattr(self, "output_dir", None)
        names = self.get_model_names()
        if directory and names:
            fdir = osp.join(directory, names[0])
            if osp.isfile(osp.join(fdir, "checkpoint")):
                last = osp.join(fdir, pointed_checkpoint(fdir))
        kept = (f"the last good checkpoint {last} is kept as it was" if last
                else "no checkpoint had been written yet")
        return (f"Loss is infinite or NaN! (loss = {value}){where}; training stopped and {kept}. "
                "Lower OPTIM.LR (or check the data and PREC), then run the same command again "
                "to resume from the last good checkpoint")

    def model_zero_grad(self, names: Names = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: Names = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names: Names = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    # ------------------------------------------------------------- tensorboard
    def init_writer(self, log_dir: str, purge_step: Optional[int] = None) -> None:
        """Open the tensorboard writer. ``purge_step``: the first global step a resumed run
        writes; TensorBoard hides what an interrupted run wrote from there on, so the repeated
        batches are not shown twice."""
        if self.__dict__.get("_writer") is not None or not is_main_process():
            return  # only rank 0 writes tensorboard
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: scalars are then dropped
            print("tensorboard is not installed: training curves will not be logged")
            self._writer = None
            return
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir, purge_step=purge_step)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value, global_step: Optional[int] = None) -> None:
        # No-op until init_writer() (the writer only exists while training).
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # ------------------------------------------------------------- loop
    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic training loop."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError(f"{type(self).__name__} must implement forward_backward(batch)")

    def model_inference(self, input):
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """Builds data, model and evaluator from ``cfg``; implements the epoch hooks and ``test``."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        use_cuda = cfg.USE_CUDA and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        seed = training_seed(cfg)
        if seed != cfg.SEED:  # a re-run on SEED's data (TRAIN.SEED_OFFSET)
            print(f"TRAIN.SEED_OFFSET {cfg.TRAIN.SEED_OFFSET}: training randomness from seed {seed}, "
                  f"data (few-shot draw) from seed {cfg.SEED}")
            set_random_seed(seed)
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf
        self._grad_sync_handles = []
        self._mid_epoch_resume = None  # set by resume_model_if_exist from a mid-epoch checkpoint
        self._epoch_start = None  # the epoch's RNG states before its order was drawn
        if self._checkpoint_iters() < 0:
            raise UserValueError(f"TRAIN.CHECKPOINT_ITERS must be >= 0 (0 = off), got {self._checkpoint_iters()}")
        if is_distributed():
            self.setup_distributed()

    def setup_distributed(self) -> None:
        """Data parallel over the torchrun processes: rank 0's learnable modules are copied to
        every rank, their gradients are averaged after each backward (the frozen backbone has
        no trainable parameter and is not synchronised), and each rank then draws its own
        random numbers (seed SEED + rank) for augmentation and sampling."""
        for name in self.get_model_names():
            broadcast_module(self._models[name])
            self._grad_sync_handles += average_gradients_on_backward(self._models[name])
        if self.cfg.SEED >= 0:
            set_random_seed(training_seed(self.cfg) + get_rank())
        print(f"Distributed data parallel: {get_world_size()} processes; global train batch "
              f"{self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE} split across them")

    def check_cfg(self, cfg) -> None:
        """Optional hook to validate trainer-specific settings."""

    def build_data_loader(self) -> None:
        """Create the data attributes every trainer relies on (via DataManager)."""
        from dassl.data import DataManager  # lazy: keeps the engine importable on its own

        # Under torchrun rank 0 builds the data first (it may generate files and caches); the
        # others wait, then read them.
        if not is_main_process():
            barrier()
        dm = DataManager(self.cfg)
        if is_main_process():
            barrier()
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u  # optional, can be None
        self.val_loader = dm.val_loader  # optional, can be None
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname  # {label: classname}
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement build_model(): create self.model, its "
            "optimizer/scheduler (dassl.optim) and call self.register_model(name, model, optim, sched)"
        )

    def train(self, start_epoch: Optional[int] = None, max_epoch: Optional[int] = None) -> None:
        super().train(
            self.start_epoch if start_epoch is None else start_epoch,
            self.max_epoch if max_epoch is None else max_epoch,
        )

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        writer_dir = osp.join(self.output_dir, "tensorboard")
        if is_main_process():
            mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir, purge_step=self._resumed_step())
        self.time_start = time.time()
        self.cpu_start = time.process_time()

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        # The process's CPU time: the cost of the run, which other processes on the machine do
        # not inflate as they do the wall time above (tools/tune_bundled.py weighs it).
        print(f"CPU time: {time.process_time() - self.cpu_start:.1f} s")
        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0

        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result,
                                model_name="model-best.pth.tar")

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        elif self.cfg.TRAIN.get("RESUME_CHECKPOINTS", True):
            self.save_model(self.epoch, self.output_dir)  # for resume only; removed when superseded
        self._remove_superseded_checkpoints()

    def _resumed_step(self) -> Optional[int]:
        """The global iteration a resumed run starts at (None for a fresh run)."""
        batches_done = (self._mid_epoch_resume or {}).get("batches_done", 0)
        if self.start_epoch == 0 and batches_done == 0:
            return None
        return self.start_epoch * len(self.train_loader_x) + batches_done

    # ------------------------------------------------------------- mid-epoch checkpoints
    def _checkpoint_iters(self) -> int:
        return int(self.cfg.TRAIN.get("CHECKPOINT_ITERS", 0) or 0)

    def prepare_mid_epoch_resume(self, mid_epoch: dict, fpath: str, rng_state: Optional[dict]) -> None:
        """Check that this run can continue the epoch the mid-epoch checkpoint ``fpath`` stopped
        in (same batches per epoch, same global batch size) and remember how; run_epoch then
        skips the finished batches (_epoch_loader)."""
        check_mid_epoch_resume(mid_epoch, fpath, self.train_loader_x, rng_state)
        self._mid_epoch_resume = dict(mid_epoch, rng_state=rng_state)

    def _epoch_loader(self, loader, meters):
        """(what to iterate this epoch, index of its first batch).

        Usually ``loader`` itself, from batch 0; with TRAIN.CHECKPOINT_ITERS > 0 the RNG states
        the epoch's order is drawn from are kept for the mid-epoch checkpoints. Resuming from one
        of those: a one-off loader over the rest of the epoch. The epoch's order is drawn from
        the saved epoch-start states, the finished batches are skipped without loading them,
        and the checkpoint's RNG states are restored just before the next batch is loaded, so
        the epoch goes on as if it had not been interrupted."""
        resume, self._mid_epoch_resume = self._mid_epoch_resume, None
        if resume is not None and resume["epoch"] == self.epoch:
            from dassl.data.data_manager import resume_epoch_loader  # lazy: the engine imports alone

            states = resume["epoch_rng_states_per_rank"]
            epoch_state = states[get_rank()] if len(states) == get_world_size() else states[0]
            batch_state = resume["rng_state"]
            self._epoch_start = {"rng_state": epoch_state, "fresh_iterator": resume["fresh_iterator"]}
            load_meter_states(meters, resume["meters"])
            set_rng_state(epoch_state)
            rest = resume_epoch_loader(loader, resume["batches_done"], resume["fresh_iterator"],
                                       on_start=lambda: set_rng_state(batch_state))
            return rest, resume["batches_done"]
        if self.epoch > 0:
            reuse_persistent_workers(loader)
        if self._checkpoint_iters() > 0:
            self._epoch_start = {"rng_state": get_rng_state(), "fresh_iterator": creates_iterator(loader)}
        return loader, 0

    def _checkpoint_mid_epoch(self, meters) -> None:
        """TRAIN.CHECKPOINT_ITERS N: after batch b of an epoch (b % N == 0, b not the epoch's
        last, which the epoch checkpoint covers) write model.pth.tar-<epoch>-iter<b>, point
        ``checkpoint`` at it and delete the checkpoint it supersedes. Consumes no randomness:
        the RNG states are those of before the save, and are restored after it."""
        every, done = self._checkpoint_iters(), self.batch_idx + 1
        if every <= 0 or done % every or done >= self.num_batches:
            return
        rng_state = get_rng_state()
        mid_epoch = {
            "epoch": self.epoch,  # 0-based, in progress
            "batches_done": done,
            "num_batches": self.num_batches,
            "batch_size": global_batch_size(self.train_loader_x),
            "fresh_iterator": self._epoch_start["fresh_iterator"],
            "epoch_rng_states_per_rank": all_gather_object(self._epoch_start["rng_state"]),
            "meters": meter_states(meters),
        }
        try:
            self.save_model(self.epoch - 1, self.output_dir, model_name=mid_epoch_checkpoint_name(self.epoch + 1, done),
                            rng_state=rng_state, mid_epoch=mid_epoch)
        finally:
            set_rng_state(rng_state)  # e.g. EMPL's save_model draws a calibration batch
        self._remove_superseded_checkpoints()

    def _is_kept_checkpoint(self, epoch: int) -> bool:
        """Whether model.pth.tar-<epoch> is one Dassl would keep (CHECKPOINT_FREQ or last)."""
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        return epoch == self.max_epoch or (freq > 0 and epoch % freq == 0)

    def _remove_superseded_checkpoints(self) -> None:
        """Delete the resume-only checkpoints older than the one ``checkpoint`` points at: the
        epochs Dassl would not keep (_is_kept_checkpoint) and every mid-epoch file. Called after
        the newer file was written, read back and pointed at."""
        if not is_main_process():
            return
        for name in self.get_model_names():
            fdir = osp.join(self.output_dir, name)
            for fname in superseded_checkpoints(fdir, self._is_kept_checkpoint):
                os.remove(osp.join(fdir, fname))

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` ('val' or 'test', default TEST.SPLIT; 'val' falls
        back to test if there is no val set); return the first metric (accuracy)."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split, data_loader = "test", self.test_loader
        print(f"Evaluate on the *{split}* set")
        bar = self.cfg.TEST.get("PROGRESS_BAR", True)
        start, cpu_start, n_images = time.time(), time.process_time(), 0
        for batch in _progress(data_loader, enabled=bar, desc=f"{split}"):
            input, label = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(input), label)
            n_images += len(label)
        if is_distributed():  # each rank evaluated a shard: merge them before the metrics
            self.evaluator.sync()
        print(f"Evaluation time: {time.time() - start:.2f} s for {n_images} images "  # before the result block
              f"(CPU {time.process_time() - cpu_start:.2f} s)")
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def _check_loss_summary(self, loss_summary):
        """Average the logged values over the ranks (the global batch's values) and stop on a
        non-finite loss, before anything is checkpointed (covers trainers that step their
        optimizer themselves, e.g. with a GradScaler, and so skip detect_anomaly)."""
        if not isinstance(loss_summary, dict):
            return loss_summary
        loss_summary = all_reduce_mean_dict(loss_summary)
        value = loss_summary.get("loss")
        if value is not None and not math.isfinite(float(value)):
            raise FloatingPointError(self.non_finite_message(value))
        return loss_summary

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: Names = None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    def _after_train_step(self, losses: MetricMeter, batch_time: AverageMeter, data_time: AverageMeter) -> None:
        """Print the progress line every PRINT_FREQ batches and log scalars."""
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        meet_freq = (self.batch_idx + 1) % print_freq == 0
        only_few_batches = self.num_batches < print_freq
        if meet_freq or only_few_batches:
            nb_remain = self.num_batches - self.batch_idx - 1
            nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
            eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
            print(" ".join([
                f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                f"{losses}",
                f"lr {self.get_current_lr():.4e}",
                f"eta {eta}",
            ]))
        n_iter = self.epoch * self.num_batches + self.batch_idx
        for name, meter in losses.meters.items():
            self.write_scalar("train/" + name, meter.avg, n_iter)
        self.write_scalar("train/lr", self.get_current_lr(), n_iter)


def set_sampler_epoch(loader, epoch: int) -> None:
    """DistributedSampler shuffles with (seed, epoch): tell it the epoch."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


class TrainerX(SimpleTrainer):
    """Trainer using labeled data (``train_loader_x``) only."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses, batch_time, data_time = MetricMeter(), AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        set_sampler_epoch(self.train_loader_x, self.epoch)
        meters = (losses, batch_time, data_time)
        loader, first = self._epoch_loader(self.train_loader_x, meters)
        end = time.time()
        for self.batch_idx, batch in enumerate(loader, first):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            loss_summary = self._check_loss_summary(loss_summary)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            self._after_train_step(losses, batch_time, data_time)
            self._checkpoint_mid_epoch(meters)
            end = time.time()

    def parse_batch_train(self, batch: Dict[str, torch.Tensor]):
        return batch["img"].to(self.device), batch["label"].to(self.device), batch["domain"].to(self.device)

