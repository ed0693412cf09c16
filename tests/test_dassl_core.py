"""Tests of dassl.utils, dassl.config, dassl.optim, dassl.evaluation and dassl.metrics."""
import io
import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.config import ConfigKeyError, clean_cfg, get_cfg_default
from dassl.evaluation import build_evaluator, macro_f1_score
from dassl.metrics import compute_accuracy
from dassl.optim import ConstantWarmupScheduler, build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    Registry,
    check_availability,
    count_num_param,
    listdir_nohidden,
    load_checkpoint,
    load_pretrained_weights,
    open_specified_layers,
    read_image,
    read_json,
    resume_from_checkpoint,
    save_checkpoint,
    setup_logger,
    tolist_if_not,
    write_json,
)


def _no_tmp_files(root):
    return [f for _, _, files in os.walk(root) for f in files if f.endswith(".tmp")] == []


# ----------------------------------------------------------------------------- utils
def test_registry_errors():
    reg = Registry("THING")

    @reg.register()
    class Alpha:
        pass

    with pytest.raises(KeyError, match='"Alpha" was already registered in "THING"'):
        reg.register(Alpha)
    reg.register(Alpha, force=True)  # force overrides silently
    with pytest.raises(KeyError, match='"Alpah" does not exist in "THING".*did you mean "Alpha"'):
        reg.get("Alpah")
    assert reg.get("Alpha") is Alpha and reg.registered_names() == ["Alpha"]


def test_small_tools(tmp_path):
    with pytest.raises(ValueError, match=r"but got \[sdg\] \(do you mean \[sgd\]\?\)"):
        check_availability("sdg", ["adam", "sgd"])
    check_availability("sgd", ["adam", "sgd"])
    assert tolist_if_not(3) == [3] and tolist_if_not([3]) == [3]
    for name in ["b", "a", ".hidden"]:
        (tmp_path / name).mkdir()
    assert listdir_nohidden(tmp_path, sort=True) == ["a", "b"]

    path = str(tmp_path / "sub" / "x.json")
    write_json({"a": [1, 2]}, path)
    assert read_json(path) == {"a": [1, 2]} and _no_tmp_files(tmp_path)

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(IOError, match="broken.jpg"):
        read_image(str(bad))


def test_write_json_failure_keeps_old_file(tmp_path):
    path = str(tmp_path / "x.json")
    write_json({"v": 1}, path)
    with pytest.raises(TypeError):
        write_json({"v": object()}, path)  # not serialisable: fails mid-write
    assert read_json(path) == {"v": 1} and _no_tmp_files(tmp_path)


def test_write_without_overwrite_never_replaces_a_file(tmp_path, monkeypatch):
    path = str(tmp_path / "split.json")
    assert write_json({"v": 1}, path, overwrite=False) is True and read_json(path) == {"v": 1}
    assert write_json({"v": 2}, path, overwrite=False) is False  # the existing file wins
    assert read_json(path) == {"v": 1} and _no_tmp_files(tmp_path)
    # A file system without hard links: checked, then renamed; still never over a file.
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(PermissionError("no links")))
    assert write_json({"v": 3}, path, overwrite=False) is False and read_json(path) == {"v": 1}
    other = str(tmp_path / "other.json")
    assert write_json({"v": 4}, other, overwrite=False) is True and read_json(other) == {"v": 4}
    assert _no_tmp_files(tmp_path)


def test_meters():
    m = AverageMeter()
    m.update(1.0, n=1)
    m.update(torch.tensor(4.0), n=2)
    assert m.val == 4.0 and m.avg == pytest.approx(3.0)
    mm = MetricMeter()
    mm.update({"loss": 2.0, "acc": 50.0})
    mm.update({"loss": torch.tensor(1.0), "acc": 100.0})
    assert str(mm) == "loss 1.0000 (1.5000) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError):
        mm.update([1.0])


def test_setup_logger_tees_stdout_and_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    out = tmp_path / "run"
    first = setup_logger(str(out))
    assert first == str(out / "log.txt")
    print("hello stdout")
    print("hello stderr", file=sys.stderr)
    second = setup_logger(str(out))  # existing log is kept, new one gets a time suffix
    print("second run")
    sys.stdout.flush()
    assert second.startswith(first + "-") and second != first
    assert open(first).read() == "hello stdout\nhello stderr\n"
    assert open(second).read() == "second run\n"
    third = setup_logger(str(tmp_path / "custom.log"))
    assert third == str(tmp_path / "custom.log")
    sys.stdout.close()  # closes the log file only, not the console


def test_checkpoint_roundtrip(tmp_path):
    model = nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(optim, 1, gamma=0.5)
    model(torch.ones(1, 3)).sum().backward()
    optim.step()
    sched.step()
    state = {
        "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        "epoch": 4, "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
    }
    save_checkpoint(state, str(tmp_path), is_best=True)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-4"]
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-4\n"
    ckpt = load_checkpoint(str(tmp_path / "model-best.pth.tar"))
    assert list(ckpt["state_dict"]) == ["weight", "bias"]  # "module." stripped

    model2 = nn.Linear(3, 2)
    optim2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.StepLR(optim2, 1, gamma=0.5)
    assert resume_from_checkpoint(str(tmp_path), model2, optim2, sched2) == 4
    assert torch.equal(model2.weight, model.weight)
    assert optim2.param_groups[0]["lr"] == pytest.approx(0.05) and sched2.last_epoch == 1
    assert "momentum_buffer" in optim2.state_dict()["state"][0]
    with pytest.raises(FileNotFoundError, match="nope"):
        load_checkpoint(str(tmp_path / "nope"))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, str(tmp_path), model_name="m.pth")

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt  # e.g. the job is killed mid-write

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 2}, str(tmp_path), model_name="m.pth")
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(str(tmp_path / "m.pth"))["state_dict"]["w"], torch.ones(2))
    assert _no_tmp_files(tmp_path)


def test_layer_helpers(tmp_path, capsys):
    net = nn.Sequential()
    net.add_module("backbone", nn.Linear(4, 3))
    net.add_module("head", nn.Linear(3, 2))
    assert count_num_param(net) == 4 * 3 + 3 + 3 * 2 + 2
    assert count_num_param(params=[{"params": net.head.weight}, net.head.bias]) == 8
    open_specified_layers(net, "head")
    assert not net.backbone.weight.requires_grad and net.head.weight.requires_grad
    assert not net.backbone.training and net.head.training
    with pytest.raises(AttributeError, match="neck"):
        open_specified_layers(net, ["neck"])

    other = nn.Sequential()
    other.add_module("backbone", nn.Linear(4, 3))
    other.add_module("head", nn.Linear(3, 5))  # size mismatch: must be skipped
    torch.save({"state_dict": other.state_dict()}, tmp_path / "w.pth")
    load_pretrained_weights(net, str(tmp_path / "w.pth"))
    assert torch.equal(net.backbone.weight, other.backbone.weight)
    assert "Layers discarded" in capsys.readouterr().out


# ----------------------------------------------------------------------------- config
COOP_EXTRA = {"TRAINER.COOP": dict(N_CTX=16, CSC=False, CTX_INIT="", PREC="fp16", CLASS_TOKEN_POSITION="end"),
              "TRAINER.COCOOP": dict(N_CTX=16, CTX_INIT="", PREC="fp16")}
MAPLE_EXTRA = dict(COOP_EXTRA, **{"TRAINER.MAPLE": dict(N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)})


def _extended_cfg(extra):
    """get_cfg_default() + an extend_cfg like CoOp's / MaPLe's train.py."""
    cfg = get_cfg_default()
    for node, values in extra.items():
        cfg.TRAINER[node.split(".")[1]] = CN(values)
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    return cfg


DATASET_YAML = 'DATASET:\n  NAME: "OxfordPets"\n'
COOP_YAML = """
DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 32
  TEST:
    BATCH_SIZE: 100
  NUM_WORKERS: 8
INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]
OPTIM:
  NAME: "sgd"
  LR: 0.002
  MAX_EPOCH: 50
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5
TRAIN:
  PRINT_FREQ: 5
MODEL:
  BACKBONE:
    NAME: "ViT-B/16"
TRAINER:
  COCOOP:
    N_CTX: 4
    CTX_INIT: "a photo of a"
"""
MAPLE_YAML = COOP_YAML.replace("TRAINER:\n  COCOOP:", "TRAINER:\n  MAPLE:\n    PROMPT_DEPTH: 9\n  COCOOP:")


@pytest.mark.parametrize("extra,yaml_text", [(COOP_EXTRA, COOP_YAML), (MAPLE_EXTRA, MAPLE_YAML)])
def test_config_merge(tmp_path, extra, yaml_text):
    (tmp_path / "data.yaml").write_text(DATASET_YAML)
    (tmp_path / "method.yaml").write_text(yaml_text)
    cfg = _extended_cfg(extra)
    cfg.merge_from_file(str(tmp_path / "data.yaml"))
    cfg.merge_from_file(str(tmp_path / "method.yaml"))
    cfg.merge_from_list(["TRAINER.COOP.N_CTX", "4", "DATASET.NUM_SHOTS", "16",
                         "DATASET.SUBSAMPLE_CLASSES", "base", "SEED", "1"])
    cfg.freeze()
    assert cfg.DATASET.NAME == "OxfordPets" and cfg.INPUT.SIZE == (224, 224)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)
    assert cfg.INPUT.TRANSFORMS == ("random_resized_crop", "random_flip", "normalize")
    assert cfg.TRAINER.COCOOP.N_CTX == 4 and cfg.TRAINER.COOP.N_CTX == 4 and cfg.SEED == 1
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base" and cfg.DATASET.NUM_SHOTS == 16
    if "TRAINER.MAPLE" in extra:
        assert cfg.TRAINER.MAPLE.PROMPT_DEPTH == 9


def test_config_defaults_match_dassl():
    cfg = get_cfg_default()
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.STEPSIZE) == ("adam", 0.0003, "single_step", (-1,))
    assert (cfg.OUTPUT_DIR, cfg.SEED, cfg.USE_CUDA, cfg.TEST.FINAL_MODEL) == ("./output", -1, True, "last_step")
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.DATALOADER.NUM_WORKERS == 4
    assert cfg.INPUT.PIXEL_MEAN == [0.485, 0.456, 0.406] and cfg.TRAIN.PRINT_FREQ == 10
    assert get_cfg_default() is not get_cfg_default()  # fresh copies
    cfg.TRAINER.COOP, cfg.TRAINER.COCOOP = CN(), CN()
    clean_cfg(cfg, "cocoop")
    assert sorted(cfg.TRAINER.keys()) == ["COCOOP", "NAME"]


def test_config_unknown_key_errors(tmp_path):
    cfg = _extended_cfg(COOP_EXTRA)
    (tmp_path / "bad.yaml").write_text("OPTIM:\n  LRR: 0.1\n")
    with pytest.raises(KeyError) as e:
        cfg.merge_from_file(str(tmp_path / "bad.yaml"))
    msg = str(e.value)
    assert isinstance(e.value, ConfigKeyError)
    assert msg.startswith("Non-existent config key: OPTIM.LRR (in ") and "bad.yaml" in msg
    assert "Did you mean OPTIM.LR?" in msg
    with pytest.raises(KeyError, match="Non-existent config key: TRAINER.COOP.NCTX .*command-line.*TRAINER.COOP.N_CTX"):
        cfg.merge_from_list(["TRAINER.COOP.NCTX", "4"])
    with pytest.raises(KeyError, match="Non-existent config key: TRAINER.MAPLE.N_CTX"):
        cfg.merge_from_list(["TRAINER.MAPLE.N_CTX", "4"])  # MaPLe keys not declared
    with pytest.raises(ValueError, match="odd number"):
        cfg.merge_from_list(["SEED"])


def test_config_file_builds_on_its_base(tmp_path):
    """_BASE_ (as detectron2): the base file, a path relative to the file, is read first and the
    file's own keys override it; bases chain; a missing base or a cycle is one clear error."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "root.yaml").write_text("OPTIM:\n  LR: 0.5\n  MAX_EPOCH: 7\nSEED: 3\n")
    (tmp_path / "configs" / "base.yaml").write_text("_BASE_: ../root.yaml\nOPTIM:\n  MAX_EPOCH: 9\n")
    (tmp_path / "configs" / "run.yaml").write_text("_BASE_: base.yaml\nOPTIM:\n  LR: 0.25\n")
    cfg = _extended_cfg(COOP_EXTRA)
    cfg.merge_from_file(str(tmp_path / "configs" / "run.yaml"))
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.SEED) == (0.25, 9, 3)
    assert "_BASE_" not in cfg.dump()
    (tmp_path / "orphan.yaml").write_text("_BASE_: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="_BASE_ missing.yaml of config file .*orphan.yaml not found"):
        _extended_cfg(COOP_EXTRA).merge_from_file(str(tmp_path / "orphan.yaml"))
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ValueError, match="leads back to"):
        _extended_cfg(COOP_EXTRA).merge_from_file(str(tmp_path / "a.yaml"))


def test_config_mistyped_value_says_the_type_and_the_fix(tmp_path):
    cfg = _extended_cfg(COOP_EXTRA)
    with pytest.raises(ValueError, match=r"^OPTIM.LR takes a float \(default .*\), got int 1 in command-line opts: "
                                         r"give a float \(write 1.0\)$"):
        cfg.merge_from_list(["OPTIM.LR", "1"])
    (tmp_path / "bad.yaml").write_text("OPTIM:\n  MAX_EPOCH: 2.5\n")
    with pytest.raises(ValueError, match=r"^OPTIM.MAX_EPOCH takes an int .* got float 2.5 in .*bad.yaml: give an int$"):
        cfg.merge_from_file(str(tmp_path / "bad.yaml"))


# ----------------------------------------------------------------------------- optim
def _optim_cfg(**kw):
    cfg = get_cfg_default().OPTIM
    cfg.update(kw)
    return cfg


def _lrs(optim_cfg, n_epochs):
    """LR used in each epoch when stepping the scheduler once per epoch (as the trainers do)."""
    optim = build_optimizer(nn.Linear(2, 2), optim_cfg)
    sched = build_lr_scheduler(optim, optim_cfg)
    lrs = []
    for _ in range(n_epochs):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return lrs


def test_lr_cosine_constant_warmup_coop():
    # CoOp vit_b16.yaml: epoch 0 at WARMUP_CONS_LR, then cosine(e - 1) over MAX_EPOCH epochs.
    cfg = _optim_cfg(NAME="sgd", LR=0.002, MAX_EPOCH=10, LR_SCHEDULER="cosine",
                     WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    expected = [1e-5] + [0.001 * (1 + math.cos(math.pi * (e - 1) / 10)) for e in range(1, 10)]
    assert _lrs(cfg, 10) == pytest.approx(expected, rel=1e-12)


def test_lr_linear_warmup_single_step():
    cfg = _optim_cfg(NAME="sgd", LR=0.1, MAX_EPOCH=10, LR_SCHEDULER="single_step", STEPSIZE=(4,),
                     GAMMA=0.1, WARMUP_EPOCH=3, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5)
    # warmup: min_lr, LR*1/3, LR*2/3; then StepLR counted from 0: drop after 4 epochs.
    expected = [1e-5, 0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    assert _lrs(cfg, 10) == pytest.approx(expected, rel=1e-12)


def test_lr_warmup_no_recount():
    # WARMUP_RECOUNT=False: the cosine counter is preset to WARMUP_EPOCH, so after warmup
    # torch's recursive cosine update starts from LR at epoch 2 -> LR * c(e) / c(2).
    c = lambda e: 1 + math.cos(math.pi * e / 10)  # noqa: E731
    cfg = _optim_cfg(NAME="sgd", LR=0.01, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2,
                     WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-4, WARMUP_RECOUNT=False)
    expected = [1e-4, 1e-4] + [0.01 * c(e) / c(2) for e in range(2, 8)]
    assert _lrs(cfg, 8) == pytest.approx(expected, rel=1e-12)


def test_lr_multi_step_and_errors():
    cfg = _optim_cfg(NAME="sgd", LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(2, 4), GAMMA=0.5)
    assert _lrs(cfg, 6) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    cfg = _optim_cfg(NAME="sgd", LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(-1,), MAX_EPOCH=3)
    assert _lrs(cfg, 4) == pytest.approx([1, 1, 1, 0.1])  # stepsize <= 0 -> MAX_EPOCH
    with pytest.raises(ValueError, match="LR_SCHEDULER must be one of"):
        _lrs(_optim_cfg(LR_SCHEDULER="poly"), 1)
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        _lrs(_optim_cfg(WARMUP_EPOCH=1, WARMUP_TYPE="exp"), 1)


def test_warmup_scheduler_state_dict_resume():
    """Resuming a warmup scheduler must keep driving the *live* optimizer's LR."""
    cfg = _optim_cfg(NAME="sgd", LR=0.002, MAX_EPOCH=6, LR_SCHEDULER="cosine",
                     WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    full = _lrs(cfg, 6)
    optim = build_optimizer(nn.Linear(2, 2), cfg)
    sched = build_lr_scheduler(optim, cfg)
    for _ in range(2):
        optim.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"optim": optim.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    optim2 = build_optimizer(nn.Linear(2, 2), cfg)
    sched2 = build_lr_scheduler(optim2, cfg)
    assert isinstance(sched2, ConstantWarmupScheduler)
    optim2.load_state_dict(state["optim"])
    sched2.load_state_dict(state["sched"])
    resumed = []
    for _ in range(4):
        resumed.append(optim2.param_groups[0]["lr"])
        optim2.step()
        sched2.step()
    assert resumed == pytest.approx(full[2:], rel=1e-12)


def test_build_optimizer_variants():
    net = nn.Sequential()
    net.add_module("backbone", nn.Linear(2, 2))
    net.add_module("head", nn.Linear(2, 2))
    expected = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "amsgrad": torch.optim.Adam,
                "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "radam": torch.optim.RAdam}
    for name, cls in expected.items():
        opt = build_optimizer(net, _optim_cfg(NAME=name, LR=0.1, WEIGHT_DECAY=0.01))
        assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 0.01
    sgd = build_optimizer(net.parameters(), _optim_cfg(NAME="sgd", MOMENTUM=0.8, SGD_NESTEROV=True))
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]
    staged = build_optimizer(net, _optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1))
    assert [g["lr"] for g in staged.param_groups] == pytest.approx([0.01, 0.1])
    assert staged.param_groups[1]["params"][0] is net.head.weight
    with pytest.raises(ValueError, match="OPTIM.NAME must be one of"):
        build_optimizer(net, _optim_cfg(NAME="lamb"))


# ----------------------------------------------------------------------------- evaluation / metrics
def _logits(preds, n_classes):
    return torch.nn.functional.one_hot(torch.tensor(preds), n_classes).float()


def test_classification_evaluator(tmp_path, capsys):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.PER_CLASS_RESULT = True
    cfg.TEST.COMPUTE_CMAT = True
    ev = build_evaluator(cfg, lab2cname={0: "cat", 1: "dog", 2: "fox"})
    y_true, y_pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    ev.process(_logits(y_pred[:4], 3), torch.tensor(y_true[:4]))  # two batches
    ev.process(_logits(y_pred[4:], 3), torch.tensor(y_true[4:]))
    res = ev.evaluate()
    # F1 per class = 2TP/(2TP+FP+FN): 4/5, 2/4, 2/3
    f1 = (0.8 + 0.5 + 2 / 3) / 3 * 100
    assert list(res) == ["accuracy", "error_rate", "macro_f1", "perclass_accuracy"]
    assert res["accuracy"] == pytest.approx(400 / 6) and res["error_rate"] == pytest.approx(200 / 6)
    assert res["macro_f1"] == pytest.approx(f1)
    assert res["perclass_accuracy"] == pytest.approx((200 / 3 + 50 + 100) / 3)
    out = capsys.readouterr().out
    assert ("=> result\n* total: 6\n* correct: 4\n* accuracy: 66.7%\n* error: 33.3%\n"
            f"* macro_f1: {f1:.1f}%\n") in out
    assert "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%" in out and "* average: 72.2%" in out
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=False)
    np.testing.assert_allclose(cmat, [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]])
    ev.reset()
    ev.process(_logits([1], 3), torch.tensor([1]))
    assert ev.evaluate()["accuracy"] == 100.0


def test_macro_f1_ignores_classes_absent_from_targets():
    assert macro_f1_score([0, 1], [3, 1]) == pytest.approx(0.5)  # class 3 only predicted
    assert macro_f1_score([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0


def test_compute_accuracy_topk():
    out = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.5, 0.2, 0.3]])
    top1, top2 = compute_accuracy(out, torch.tensor([2, 0, 2, 1]), topk=(1, 2))
    assert top1.item() == pytest.approx(50.0) and top2.item() == pytest.approx(75.0)
