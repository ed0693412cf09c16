"""Check that our prompt learners give the reference implementations' logits.

    python tools/check_reference_parity.py --coop-repo /path/to/KaiyangZhou/CoOp

The reference trainer files are imported from that checkout (never copied into this project);
they import `dassl` (ours) and `clip` (the clip-anytorch package). Both sides are built from the
same random-init CLIP in fp32, the reference's learnable parameters are overwritten with ours,
and the logits of the same image batch are compared. Exit status 1 if any case differs by more
than --tol (default 1e-4).
"""
import argparse
import copy
import importlib.util
import os
import sys
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dassl.config import get_cfg_default  # noqa: E402
from dassl.engine import TRAINER_REGISTRY  # noqa: E402
from train import extend_cfg  # noqa: E402
from trainers import cocoop, coop, zsclip  # noqa: E402
from trainers.clip_backbone import build_local_clip  # noqa: E402

CLASSNAMES = ["circle", "square", "sea_lion", "hexagon shape", "red traffic light"]


def import_reference_trainers(repo: str, package: str = "reference_trainers") -> types.ModuleType:
    """Import <repo>/trainers as a package under another name; its @register() calls are
    made no-ops so the reference classes do not collide with ours in TRAINER_REGISTRY."""
    trainers_dir = os.path.join(repo, "trainers")
    if not os.path.isdir(trainers_dir):
        raise SystemExit(f"error: {trainers_dir} not found (pass the root of a CoOp/MaPLe checkout)")
    original = TRAINER_REGISTRY.register
    TRAINER_REGISTRY.register = lambda obj=None, **kw: (obj if obj is not None else (lambda o: o))
    try:
        spec = importlib.util.spec_from_file_location(
            package, os.path.join(trainers_dir, "__init__.py"), submodule_search_locations=[trainers_dir]
        )
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[package] = pkg
        spec.loader.exec_module(pkg)
        return pkg
    finally:
        TRAINER_REGISTRY.register = original


def reference_module(pkg, name):
    spec = importlib.util.find_spec(f"{pkg.__name__}.{name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    original = TRAINER_REGISTRY.register
    TRAINER_REGISTRY.register = lambda obj=None, **kw: (obj if obj is not None else (lambda o: o))
    try:
        spec.loader.exec_module(module)
    finally:
        TRAINER_REGISTRY.register = original
    return module


def make_cfg(clip_model, opts=()):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    size = clip_model.visual.input_resolution
    cfg.INPUT.SIZE = (size, size)
    cfg.TRAINER.COOP.PREC = cfg.TRAINER.COCOOP.PREC = "fp32"
    cfg.merge_from_list(list(opts))
    return cfg


def copy_learned(ours, reference):
    """Overwrite the reference prompt learner's parameters with ours (same names for ctx and
    meta_net; our frozen token buffers live under .classes and are not parameters)."""
    ours_params = dict(ours.prompt_learner.named_parameters())
    with torch.no_grad():
        for name, param in reference.prompt_learner.named_parameters():
            param.copy_(ours_params[name])


def compare(ours, reference, images):
    ours.eval(), reference.eval()
    with torch.no_grad():
        a, b = ours(images), reference(images)
    return (a - b).abs().max().item()


def coop_cases(ref_coop, clip_model, images):
    for position in ("end", "middle", "front"):
        for csc in (False, True):
            for init in ("", "a photo of a"):
                if init and csc:
                    continue  # CoOp ignores CSC with words: the same case as csc=False
                cfg = make_cfg(clip_model, ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CSC", csc,
                                            "TRAINER.COOP.CLASS_TOKEN_POSITION", position,
                                            "TRAINER.COOP.CTX_INIT", init])
                torch.manual_seed(0)
                ours = coop.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
                reference = ref_coop.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
                with torch.no_grad():  # move the context away from its init
                    ours.prompt_learner.ctx.add_(0.1 * torch.randn_like(ours.prompt_learner.ctx))
                copy_learned(ours, reference)
                yield f"CoOp position={position} csc={csc} init={init!r}", compare(ours, reference, images)


def cocoop_cases(ref_cocoop, clip_model, images):
    for init in ("", "a photo of a"):
        cfg = make_cfg(clip_model, ["TRAINER.COCOOP.N_CTX", 4, "TRAINER.COCOOP.CTX_INIT", init])
        torch.manual_seed(0)
        ours = cocoop.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
        reference = ref_cocoop.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
        with torch.no_grad():
            for p in ours.prompt_learner.parameters():
                p.add_(0.1 * torch.randn_like(p))
        copy_learned(ours, reference)
        yield f"CoCoOp init={init!r}", compare(ours, reference, images)


def zeroshot_cases(ref_zsclip, clip_model, images):
    """Run both ZeroshotCLIP trainers' build_model + model_inference without data loaders."""
    for ours_cls, ref_cls, dataset in (
        (zsclip.ZeroshotCLIP, ref_zsclip.ZeroshotCLIP, "EuroSAT"),
        (zsclip.ZeroshotCLIP2, ref_zsclip.ZeroshotCLIP2, "OxfordPets"),
    ):
        logits = []
        for cls in (ours_cls, ref_cls):
            trainer = cls.__new__(cls)
            trainer.cfg = make_cfg(clip_model, ["DATASET.NAME", dataset])
            trainer.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=CLASSNAMES))
            trainer.device = torch.device("cpu")
            if cls is ref_cls:
                ref_zsclip.load_clip_to_cpu = lambda cfg: copy.deepcopy(clip_model)
                if hasattr(cls, "templates"):  # ZeroshotCLIP2 appends to this class attribute
                    cls.templates = list(cls.templates)
            else:
                zsclip.load_clip = lambda cfg: copy.deepcopy(clip_model)
            trainer.build_model()
            with torch.no_grad():
                logits.append(trainer.model_inference(images))
        yield f"{ours_cls.__name__} dataset={dataset}", (logits[0] - logits[1]).abs().max().item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coop-repo", required=True, help="root of a KaiyangZhou/CoOp checkout")
    parser.add_argument("--backbone", default="tiny-vit", help="random-init CLIP configuration")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)

    clip_model = build_local_clip(args.backbone).float()
    # Randomise everything (LayerNorm gains included) so no weight is at a trivial value.
    torch.manual_seed(123)
    with torch.no_grad():
        for p in clip_model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    size = clip_model.visual.input_resolution
    images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(7))

    pkg = import_reference_trainers(args.coop_repo)
    ref_coop = reference_module(pkg, "coop")
    ref_cocoop = reference_module(pkg, "cocoop")
    ref_zsclip = reference_module(pkg, "zsclip")

    rows = list(coop_cases(ref_coop, clip_model, images))
    rows += list(cocoop_cases(ref_cocoop, clip_model, images))
    rows += list(zeroshot_cases(ref_zsclip, clip_model, images))
    width = max(len(name) for name, _ in rows)
    print(f"| {'case'.ljust(width)} | max abs logit diff | ok |")
    print(f"|{'-' * (width + 2)}|---|---|")
    failed = 0
    for name, diff in rows:
        ok = diff <= args.tol
        failed += not ok
        print(f"| {name.ljust(width)} | {diff:.2e} | {'yes' if ok else 'NO'} |")
    print(f"{len(rows) - failed} of {len(rows)} cases within {args.tol:g} (fp32, backbone {args.backbone})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
