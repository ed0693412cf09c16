"""How much a task's frozen image features hold beyond zero-shot: the linear-probe ceiling.

    python -m tools.probe_bundled                     # the bundled tasks, seeds 1 2 3
    python -m tools.probe_bundled --tasks world_aerial --seeds 1

For each base-to-new task of the bundled benchmark (and the cross-dataset source) it prints
zero-shot accuracy on the base and new test classes, with CoOp's initial prompt "a photo of a {}."
and with the task's own template (ZeroshotCLIP's, e.g. "a photo of a {} pattern."), and
the accuracy of a 16-shot logistic-regression probe on the base classes' image features: the
most a method that keeps the image encoder frozen (CoOp, CoCoOp, ProDA, EMPL) can reach there,
up to what 16 shots allow. The probe's L2 weight is chosen on the base classes' val split
(never on test). A task earns its place when that ceiling is well above zero-shot.

    python -m tools.probe_bundled --validation --checkpoint world-vit-candidate.pt   # designing a task

--validation reads no test image: the base classes' val split is halved by position, the probe's
L2 weight is chosen on one half, and zero-shot (task template) and the probe are both measured on
the other. --checkpoint: a world CLIP's weight file (MODEL.BACKBONE.CHECKPOINT), such as a
candidate from tools/pretrain_world_clip.py.
"""
import argparse
import os
import statistics
import sys
from typing import Dict, List

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
PROBE_STEPS = 300


def task_cfg(task: str, root: str, seed: int, subsample: str, shots: int, checkpoint: str = ""):
    from launch import extend_cfg

    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "datasets", f"{task}.yaml"))
    cfg.merge_from_file(os.path.join(ROOT, "configs", "trainers", "CoOp", "bundled.yaml"))
    cfg.DATASET.ROOT, cfg.SEED = root, seed
    cfg.merge_from_list(["DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.NUM_SHOTS", shots,
                         "MODEL.BACKBONE.CHECKPOINT", checkpoint])
    cfg.freeze()
    return cfg


@torch.no_grad()
def encode(model, cfg, items) -> torch.Tensor:
    """Normalised image features [N, D] of a list of Datum (the test transform of the configs)."""
    from dassl.data.transforms import build_transform
    from dassl.utils import read_image

    transform = build_transform(cfg, is_train=False)
    images = torch.stack([transform(read_image(x.impath)) for x in items])
    feats = torch.cat([model.encode_image(images[i:i + 500]) for i in range(0, len(images), 500)])
    return F.normalize(feats.float(), dim=-1)


def labelled(model, cfg, items):
    """(normalised image features [N, D], labels [N]) of a list of Datum."""
    return encode(model, cfg, items), torch.tensor([x.label for x in items])


def zero_shot(model, classnames, feats, labels, template: str = "a photo of a {}.") -> float:
    from trainers.clip_backbone import tokenize

    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenize([template.format(c) for c in classnames])).float(), dim=-1)
    return 100.0 * ((feats @ text.t()).argmax(1) == labels).float().mean().item()


def linear_probe(train, val, test, n_classes: int, scale: float) -> float:
    """Test accuracy of multinomial logistic regression on (features, labels) pairs, its L2 weight
    chosen on val."""
    best = None
    for l2 in L2_GRID:
        torch.manual_seed(0)
        weight = torch.zeros(train[0].shape[1], n_classes, requires_grad=True)
        bias = torch.zeros(n_classes, requires_grad=True)
        optimizer = torch.optim.Adam([weight, bias], lr=0.01)
        for _ in range(PROBE_STEPS):
            optimizer.zero_grad()
            loss = F.cross_entropy(scale * train[0] @ weight + bias, train[1]) + l2 * weight.pow(2).sum()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            def acc(split):
                return 100.0 * ((scale * split[0] @ weight + bias).argmax(1) == split[1]).float().mean().item()

            score = (acc(val), acc(test))
        if best is None or score[0] > best[0]:
            best = score
    return best[1]


def probe_task(task: str, root: str, seeds, shots: int, checkpoint: str = "") -> Dict[str, List[float]]:
    from dassl.data.datasets import build_dataset
    from trainers.clip_backbone import load_clip

    out = {"zs_base": [], "zs_new": [], "task_zs_base": [], "task_zs_new": [], "lp_base": []}
    model = None
    for seed in seeds:
        cfg = task_cfg(task, root, seed, "base", shots, checkpoint)
        base = build_dataset(cfg)
        base_full = build_dataset(task_cfg(task, root, seed, "base", 0, checkpoint))  # the whole val split
        model = model or load_clip(cfg).eval()
        scale = model.logit_scale.exp().item()
        train, val, test = (labelled(model, cfg, items) for items in (base.train_x, base_full.val, base.test))
        out["lp_base"].append(linear_probe(train, val, test, len(base.classnames), scale))
        if seed == seeds[0]:  # zero-shot does not depend on the seed
            new_cfg = task_cfg(task, root, seed, "new", 0, checkpoint)
            new = build_dataset(new_cfg)
            new_test = labelled(model, new_cfg, new.test)
            template = getattr(new, "zero_shot_template", "a photo of a {}.")
            out["zs_base"].append(zero_shot(model, base.classnames, *test))
            out["zs_new"].append(zero_shot(model, new.classnames, *new_test))
            out["task_zs_base"].append(zero_shot(model, base.classnames, *test, template=template))
            out["task_zs_new"].append(zero_shot(model, new.classnames, *new_test, template=template))
    return out


def probe_task_on_validation(task: str, root: str, seeds, shots: int, checkpoint: str = "") -> Dict[str, List[float]]:
    """Per seed, zero-shot (task template) and the probe on the base classes' val split only:
    the probe's L2 weight chosen on the even positions of val, both measured on the odd ones."""
    from dassl.data.datasets import build_dataset
    from trainers.clip_backbone import load_clip

    out = {"task_zs_base": [], "lp_base": []}
    model = None
    for seed in seeds:
        cfg = task_cfg(task, root, seed, "base", shots, checkpoint)
        base = build_dataset(cfg)
        model = model or load_clip(cfg).eval()
        val = build_dataset(task_cfg(task, root, seed, "base", 0, checkpoint)).val
        train, choose, measure = (labelled(model, cfg, items) for items in (base.train_x, val[0::2], val[1::2]))
        template = getattr(base, "zero_shot_template", "a photo of a {}.")
        out["task_zs_base"].append(zero_shot(model, base.classnames, *measure, template=template))
        out["lp_base"].append(linear_probe(train, choose, measure, len(base.classnames), model.logit_scale.exp().item()))
    return out


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    import benchmark
    from tools import protocols
    from tools.reporting.tables import md_table

    parser = argparse.ArgumentParser(prog="python -m tools.probe_bundled", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(protocols.BUNDLED_BASE2NEW) + [protocols.BUNDLED["source"]])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--root", default=protocols.BUNDLED["root"])
    parser.add_argument("--checkpoint", default="", help="a world CLIP weight file (default: the shipped one)")
    parser.add_argument("--validation", action="store_true",
                        help="read no test image: zero-shot and the probe on half of the val split")
    args = parser.parse_args(argv)
    benchmark.register()
    if args.validation:
        return print_validation_table(args, out)
    rows = []
    for task in args.tasks:
        r = probe_task(task, args.root, args.seeds, args.shots, args.checkpoint)
        lp = r["lp_base"]
        spread = f" ± {statistics.pstdev(lp):.2f}" if len(lp) > 1 else ""
        zs_base = r["zs_base"][0]
        rows.append([task, f"{zs_base:.2f} / {r['zs_new'][0]:.2f}",
                     f"{r['task_zs_base'][0]:.2f} / {r['task_zs_new'][0]:.2f}", f"{statistics.fmean(lp):.2f}{spread}",
                     f"{statistics.fmean(lp) - zs_base:+.2f}"])
    print(f"## Linear-probe ceiling ({args.shots} shots, seeds {' '.join(map(str, args.seeds))})\n", file=out)
    print(md_table(["Task", "Zero-shot base / new (a photo of a {}.)", "Zero-shot base / new (task template)",
                                "Linear probe base", "Probe - zero-shot (a photo of a {}.)"],
                               rows), file=out)
    return 0


def print_validation_table(args, out) -> int:
    from tools.reporting.tables import md_table

    rows = []
    for task in args.tasks:
        r = probe_task_on_validation(task, args.root, args.seeds, args.shots, args.checkpoint)
        zs, lp = statistics.fmean(r["task_zs_base"]), statistics.fmean(r["lp_base"])
        spread = f" ± {statistics.pstdev(r['lp_base']):.2f}" if len(args.seeds) > 1 else ""
        rows.append([task, f"{zs:.2f}", f"{lp:.2f}{spread}", f"{lp - zs:+.2f}"])
    print(f"## Linear-probe room on validation ({args.shots} shots, seeds {' '.join(map(str, args.seeds))}, "
          f"world CLIP {args.checkpoint or 'shipped'}; half of val chooses the probe, the other half measures)\n",
          file=out)
    print(md_table(["Task", "Zero-shot val base (task template)", "Linear probe val base", "Probe - zero-shot"], rows),
          file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
