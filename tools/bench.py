"""Speed and memory of every trainer: training step, peak memory, evaluation throughput.

    python -m tools.bench --device cuda --backbone random-vit-b16 --classes 10 100 1000 --prec amp fp16 \
        --json bench.json [--reference-coop /path/to/KaiyangZhou/CoOp]
    python -m tools.bench --device cpu --backbone tiny-vit --classes 10 100      # the CPU table
    python -m tools.bench --device cpu --backbone random-vit-b16 --classes 100 --count-flops \
        --warmup 0 --steps 1 --eval-batches 1     # FLOPs per step at ViT-B/16 shapes, any machine

Inputs are synthetic tensors (no data loading, no disk), so the numbers measure the trainers.
Each trainer is built from its ViT-B/16 config (batch size and method keys), with the backbone,
precision and class count given here. A training step is the trainer's own forward_backward
(loss, backward, optimizer step); the figure is the median after warm-up. An evaluation is
--eval-batches batches of --eval-batch-size images through model_inference, including the
once-per-evaluation work (class text features, EMPL's cache). With --reference-coop, the
reference CoOp and CoCoOp models of that checkout are timed in the same run on the same CLIP;
their code is imported from there, never copied. --count-flops adds the FLOPs of one training
step and of evaluation, split into the once-per-evaluation part (class text features, EMPL's
amortized cache) and the part per batch (torch's FLOP counter, attention through the math
kernel): machine-independent figures, the cost a compute-bound GPU run approaches. --opts KEY VALUE ...
sets config keys for every trainer (e.g. TRAINER.EMPL.SGLD_GRADIENT anchor).
"""
import argparse
import copy
from contextlib import nullcontext
import json
import math
import os
import statistics
import sys
import tempfile
import time
import types

import torch
import torch.nn.functional as F

import trainers  # noqa: F401  (registers the trainers)
from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY
from launch import extend_cfg
from trainers import clip_backbone
from trainers.empl_config import INFERENCE_MODES
from trainers.open_vocab import clip_bpe_words
from tools.reporting.tables import md_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# trainer -> (its ViT-B/16 config: batch size and method keys, the node holding PREC). The
# tiny backbone uses tiny.yaml of the same folder (MaPLe's depth 9 does not fit a 2-block ViT).
# Every EMPL trainer is timed with its host's prompt (HOST_PROMPT_OPTS), so that its ratio to
# the host measures EMPL's own cost: EMPL_CoOp's configs use 4 context words, CoOp's 16.
HOST_PROMPT_OPTS = {"EMPL_CoOp": ["TRAINER.COOP.N_CTX", 16, "TRAINER.COOP.CTX_INIT", ""]}
TRAINER_CONFIGS = {
    "ZeroshotCLIP": ("configs/trainers/CoOp/vit_b16.yaml", None),
    "CoOp": ("configs/trainers/CoOp/vit_b16.yaml", "COOP"),
    "CoCoOp": ("configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "COCOOP"),
    # ProDA(x4), EMPL_ProDA's host (the paper's ProDA, vit_b16_ep50.yaml, draws 4 of 32 prompts
    # per step and evaluates all 32: --trainers ProDA --opts can select it).
    "ProDA": ("configs/trainers/ProDA/vit_b16_ep50_x4.yaml", "PRODA"),
    "MaPLe": ("configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE"),
    "EMPL_CoOp": ("configs/trainers/EMPL_CoOp/vit_b16_ep50_ctxv1.yaml", "COOP"),
    "EMPL_ProDA": ("configs/trainers/EMPL_ProDA/vit_b16_ep50.yaml", "PRODA"),
    "EMPL_MaPLe": ("configs/trainers/EMPL_MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE"),
}


def class_names(n, seed=0):
    """n distinct two-word names (ImageNet names are mostly 2-4 tokens)."""
    words = clip_bpe_words()
    g = torch.Generator().manual_seed(seed)
    names = set()
    while len(names) < n:
        i, j = torch.randint(len(words), (2,), generator=g).tolist()
        names.add(f"{words[i]} {words[j]}")
    return sorted(names)


def transformer_flops(tokens: int, width: int, layers: int, seq_len: int) -> float:
    """Forward FLOPs of `layers` CLIP residual blocks over `tokens` tokens in sequences of
    seq_len: 24 width^2 per token (qkv, out, 4x MLP; 2 FLOPs per multiply-add) plus the
    attention products, 4 seq_len width per token."""
    return layers * tokens * (24 * width**2 + 4 * seq_len * width)


def coop_step_flops(backbone: str, n_classes: int, batch: int, text_len: int) -> float:
    """FLOPs of one CoOp training step: the text encoder's forward and input-gradient backward
    (about the forward again; no weight gradients) over n_classes prompts of text_len tokens,
    plus the image encoder's forward over the batch (no gradient)."""
    c = clip_backbone.LOCAL_CLIP_CONFIGS[backbone]
    text = 2 * transformer_flops(n_classes * text_len, c["transformer_width"], c["transformer_layers"], text_len)
    patches = (c["image_resolution"] // c["vision_patch_size"]) ** 2 + 1
    image = transformer_flops(batch * patches, c["vision_width"], c["vision_layers"], patches)
    return text + image


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def config_file(trainer, backbone):
    config = TRAINER_CONFIGS[trainer][0]
    if backbone.startswith("tiny"):
        config = os.path.join(os.path.dirname(config), "tiny.yaml")
    return os.path.join(ROOT, config)


def make_cfg(trainer, args, n_classes, output_dir, batch_size=None):
    node = TRAINER_CONFIGS[trainer][1]
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(config_file(trainer, args.backbone))
    size = clip_backbone.LOCAL_CLIP_CONFIGS[args.backbone]["image_resolution"]
    cfg.MODEL.BACKBONE.NAME = args.backbone
    cfg.INPUT.SIZE = (size, size)
    cfg.TRAINER.NAME = trainer
    cfg.OUTPUT_DIR = output_dir
    cfg.USE_CUDA = args.device == "cuda"
    cfg.DATALOADER.TEST.BATCH_SIZE = args.eval_batch_size
    if batch_size:
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch_size
    if node:
        cfg.TRAINER[node].PREC = args.prec_now
    cfg.merge_from_list(HOST_PROMPT_OPTS.get(trainer, []) + list(args.opts))
    cfg.freeze()
    return cfg


def synthetic_trainer_class(cls, names, batch_size, image_size, device):
    """cls with build_data_loader replaced by one synthetic batch (no DataManager, no disk)."""

    def build_data_loader(self):
        g = torch.Generator().manual_seed(0)
        batch = {
            "img": torch.randn(batch_size, 3, image_size, image_size, generator=g).to(device),
            "label": torch.randint(len(names), (batch_size,), generator=g).to(device),
        }
        dataset = types.SimpleNamespace(classnames=names)
        self.dm = types.SimpleNamespace(dataset=dataset, num_classes=len(names))
        self.train_loader_x = [batch]  # EMPL's amortized mode calibrates on it
        self.train_loader_u = self.val_loader = self.test_loader = None
        self.num_classes, self.num_source_domains = len(names), 1
        self.lab2cname = dict(enumerate(names))

    return type(cls.__name__, (cls,), {"build_data_loader": build_data_loader})


def measure_training(step, device, warmup, steps):
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(step, device) for _ in range(steps)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return 1000 * statistics.median(times), peak


def run_evaluation(reset, infer, images, n_batches):
    """One evaluation: the trainer's per-evaluation reset, then n_batches batches."""
    reset()
    with torch.no_grad():
        for _ in range(n_batches):
            infer(images)


def measure_evaluation(reset, infer, images, device, n_batches):
    """Seconds per batch over one evaluation of n_batches batches (one-time work included)."""
    run_evaluation(reset, infer, images, n_batches)  # warm-up
    return timed(lambda: run_evaluation(reset, infer, images, n_batches), device) / n_batches


def evaluation_flops(reset, infer, images):
    """(FLOPs once per evaluation, FLOPs per batch), from counted evaluations of 1 and 2 batches:
    the class text features (and EMPL's amortized cache) are the once-per-evaluation part."""
    one, two = (count_flops(lambda n=n: run_evaluation(reset, infer, images, n)) for n in (1, 2))
    return 2 * one - two, two - one


def count_flops(fn):
    """FLOPs of fn() (forward and backward) by torch's counter, attention as matmuls."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_ours(trainer_name, n_classes, args, device):
    names = class_names(n_classes)
    size = clip_backbone.LOCAL_CLIP_CONFIGS[args.backbone]["image_resolution"]
    with tempfile.TemporaryDirectory() as out:
        batch_size = make_cfg(trainer_name, args, n_classes, out).DATALOADER.TRAIN_X.BATCH_SIZE
        cls = synthetic_trainer_class(TRAINER_REGISTRY.get(trainer_name), names, batch_size, size, device)
        trainer = cls(make_cfg(trainer_name, args, n_classes, out))  # loads the backbone by name
        if hasattr(trainer, "refresh_calibration"):
            trainer.refresh_calibration()  # EMPL's amortized mode: what a training run would save
        rows = []
        batch = trainer.train_loader_x[0]
        images = torch.randn(args.eval_batch_size, 3, size, size, device=device)
        train_ms, peak, train_gflop = float("nan"), float("nan"), float("nan")
        if hasattr(trainer, "forward_backward") and trainer_name != "ZeroshotCLIP" and not args.skip_training:
            # Never step the LR schedule (num_batches is huge). A trainer that logs extra work on
            # PRINT_FREQ batches (EMPL's SGLD diagnostics, batch_idx % PRINT_FREQ == 0) is measured
            # on a plain batch and on a logged one, and charged the logged one's extra work once
            # per PRINT_FREQ steps, as a training run pays it.
            trainer.num_batches = 10**9
            trainer.set_model_mode("train")

            def step(batch_idx):
                trainer.batch_idx = batch_idx
                return trainer.forward_backward(batch)

            every = max(1, int(trainer.cfg.TRAIN.PRINT_FREQ))
            train_ms, peak = measure_training(lambda: step(1), device, args.warmup, args.steps)
            logged_ms, _ = measure_training(lambda: step(0), device, min(args.warmup, 1), max(1, args.steps // 2))
            train_ms += max(logged_ms - train_ms, 0.0) / every
            if args.count_flops:
                plain, logged = count_flops(lambda: step(1)), count_flops(lambda: step(0))
                train_gflop = (plain + (logged - plain) / every) / 1e9
        if hasattr(trainer, "set_model_mode") and trainer_name != "ZeroshotCLIP":
            trainer.set_model_mode("eval")
        modes = list(args.inference) if trainer_name.startswith("EMPL") else [None]
        for mode in modes:
            if mode:
                trainer.cfg.defrost()
                trainer.cfg.TRAINER.EMPL.INFERENCE = mode
                trainer.cfg.freeze()

            reset = getattr(trainer, "clear_eval_cache", lambda: None)
            eval_s = measure_evaluation(reset, trainer.model_inference, images, device, args.eval_batches)
            eval_once_gflop = eval_gflop = float("nan")
            if args.count_flops:
                once, per_batch = evaluation_flops(reset, trainer.model_inference, images)
                eval_once_gflop, eval_gflop = once / 1e9, per_batch / 1e9
            rows.append(dict(
                trainer=trainer_name + (f" ({mode})" if mode else ""), code="ours", classes=n_classes,
                batch=batch_size, prec=args.prec_now, train_ms=train_ms, train_img_s=batch_size / train_ms * 1000,
                peak_gib=peak, eval_ms_per_batch=1000 * eval_s, eval_img_s=args.eval_batch_size / eval_s,
                train_gflop=train_gflop, eval_gflop_once=eval_once_gflop, eval_gflop_per_batch=eval_gflop,
            ))
        trainer = None  # free it before the next size (the closures above hold the name, not a copy)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return rows


def amp_for(prec: str, device: torch.device):
    """(a factory of the autocast context, a GradScaler or None) for PREC on the run's device, as
    the reference trainers use them under amp (on a CPU: CPU autocast, clip_backbone.autocast_dtype)."""
    if prec != "amp":
        return nullcontext, None
    dtype = clip_backbone.autocast_dtype(device.type)
    return (lambda: torch.autocast(device.type, dtype=dtype)), torch.amp.GradScaler(device.type)


def bench_reference(repo, trainer_name, n_classes, args, device, clip_model):
    """Time the reference CoOp / CoCoOp CustomCLIP as its trainer drives it."""
    from tools.parity.harness import import_reference_trainers, reference_module

    pkg = import_reference_trainers(repo)
    module = reference_module(pkg, {"CoOp": "coop", "CoCoOp": "cocoop"}[trainer_name])
    names = class_names(n_classes)
    size = clip_backbone.LOCAL_CLIP_CONFIGS[args.backbone]["image_resolution"]
    with tempfile.TemporaryDirectory() as out:
        cfg = make_cfg(trainer_name, args, n_classes, out)
    batch_size = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    model_clip = copy.deepcopy(clip_model)
    prec = args.prec_now
    if prec == "fp16":
        from clip.model import convert_weights

        convert_weights(model_clip)
    model = module.CustomCLIP(cfg, names, model_clip)
    for name, p in model.named_parameters():
        p.requires_grad_("prompt_learner" in name)
    model.to(device)
    optim = torch.optim.SGD(model.prompt_learner.parameters(), lr=0.002, momentum=0.9)
    autocast, scaler = amp_for(prec, device)
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch_size, 3, size, size, generator=g).to(device)
    label = torch.randint(n_classes, (batch_size,), generator=g).to(device)

    def step():  # the reference trainers' forward_backward
        with autocast():
            if trainer_name == "CoCoOp":
                loss = model(image, label)
            else:
                loss = F.cross_entropy(model(image), label)
        optim.zero_grad()
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
        else:
            loss.backward()
            optim.step()

    model.train()
    train_ms, peak = measure_training(step, device, args.warmup, args.steps)
    model.eval()
    images = torch.randn(args.eval_batch_size, 3, size, size, device=device)
    with autocast():
        eval_s = measure_evaluation(lambda: None, model, images, device, args.eval_batches)
    model = None  # free it before the caller's next measurement
    return [dict(
        trainer=trainer_name, code="reference", classes=n_classes, batch=batch_size, prec=prec,
        train_ms=train_ms, train_img_s=batch_size / train_ms * 1000, peak_gib=peak,
        eval_ms_per_batch=1000 * eval_s, eval_img_s=args.eval_batch_size / eval_s,
        train_gflop=float("nan"), eval_gflop_once=float("nan"), eval_gflop_per_batch=float("nan"),
    )]


def print_table(rows, with_flops=False):
    """One markdown row per measurement; ratios against our CoOp of the same class count and
    precision, by time and (with_flops) by counted FLOPs."""
    header = ["trainer", "code", "classes", "batch", "prec", "train ms/step", "train img/s", "peak GiB",
              "eval ms/batch", "eval img/s", "train x our CoOp"]
    if with_flops:
        header += ["train GFLOP", "eval GFLOP once", "eval GFLOP/batch", "train FLOP x our CoOp",
                   "eval FLOP/batch x our CoOp"]
    coop = {(r["classes"], r["prec"]): r for r in rows if r["trainer"] == "CoOp" and r["code"] == "ours"}
    nan_row = dict(train_ms=float("nan"), train_gflop=float("nan"), eval_gflop_per_batch=float("nan"))
    table = []
    for r in rows:
        base = coop.get((r["classes"], r["prec"]), nan_row)
        cells = [
            r["trainer"], r["code"], r["classes"], r["batch"], r["prec"], f"{r['train_ms']:.1f}",
            f"{r['train_img_s']:.0f}", f"{r['peak_gib']:.2f}", f"{r['eval_ms_per_batch']:.1f}",
            f"{r['eval_img_s']:.0f}", f"{r['train_ms'] / base['train_ms']:.2f}",
        ]
        if with_flops:
            cells += [
                f"{r['train_gflop']:.4g}", f"{r['eval_gflop_once']:.4g}", f"{r['eval_gflop_per_batch']:.4g}",
                f"{r['train_gflop'] / base['train_gflop']:.2f}",
                f"{r['eval_gflop_per_batch'] / base['eval_gflop_per_batch']:.2f}",
            ]
        table.append(cells)
    print(md_table(header, table))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="random-vit-b16", choices=sorted(clip_backbone.LOCAL_CLIP_CONFIGS))
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--trainers", nargs="+", default=list(TRAINER_CONFIGS))
    parser.add_argument("--prec", nargs="+", default=["amp"], help="fp16, fp32 and/or amp (CPU: fp32)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eval-batches", type=int, default=5)
    parser.add_argument("--eval-batch-size", type=int, default=100)
    parser.add_argument("--reference-coop", default="", help="a KaiyangZhou/CoOp checkout to time beside ours")
    parser.add_argument("--json", default="", help="write the rows here")
    parser.add_argument("--count-flops", action="store_true",
                        help="also count the FLOPs of one training step and one evaluation batch")
    parser.add_argument("--opts", nargs="+", default=[], help="config KEY VALUE pairs for every trainer")
    parser.add_argument("--inference", nargs="+", default=list(INFERENCE_MODES), choices=INFERENCE_MODES,
                        help="the EMPL trainers' inference modes to measure")
    parser.add_argument("--skip-training", action="store_true",
                        help="measure evaluation only (the training columns are left empty)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the device's dense fp16 rate for the FLOP-bound line (H100 SXM: 989)")
    parser.add_argument("--flops-text-len", type=int, default=24,
                        help="prompt length after truncation for the FLOP-bound line (16 ctx + name + . + SOS/EOS)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    clip_model = clip_backbone.build_local_clip(args.backbone) if args.reference_coop else None
    present = [t for t in args.trainers if t in TRAINER_REGISTRY.registered_names() and os.path.isfile(config_file(t, args.backbone))]
    for missing in sorted(set(args.trainers) - set(present)):
        print(f"skip {missing}: not implemented here yet")
    rows = []
    for prec in args.prec if device.type == "cuda" else ["fp32"]:
        args.prec_now = prec
        for n_classes in args.classes:
            for trainer_name in present:
                rows += bench_ours(trainer_name, n_classes, args, device)
                print(f"done {trainer_name} {n_classes} classes {prec}", file=sys.stderr, flush=True)
            if args.reference_coop:
                for trainer_name in ("CoOp", "CoCoOp"):
                    rows += bench_reference(args.reference_coop, trainer_name, n_classes, args, device, clip_model)
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"backbone {args.backbone}, {args.steps} timed steps after {args.warmup} warm-up"
          + (f", opts {' '.join(args.opts)}" if args.opts else ""))
    print_table(rows, with_flops=args.count_flops)
    for n_classes in args.classes:
        full, cut = (coop_step_flops(args.backbone, n_classes, 32, n) for n in (77, args.flops_text_len))
        print(f"CoOp step, {n_classes} classes, batch 32: {full / 1e9:.1f} GFLOP with 77-token prompts, "
              f"{cut / 1e9:.1f} GFLOP cut to {args.flops_text_len} tokens; at {args.peak_tflops:.0f} TFLOP/s: "
              f"{1000 * full / args.peak_tflops / 1e12:.3f} / {1000 * cut / args.peak_tflops / 1e12:.3f} ms")
    if args.json:
        with open(args.json, "w") as f:
            # NaN (no training step, no CUDA memory counter) is written as null: valid JSON.
            clean = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]
            json.dump({"device": str(device), "backbone": args.backbone, "opts": args.opts, "rows": clean}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
