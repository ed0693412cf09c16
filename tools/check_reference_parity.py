"""Check that our prompt learners give the reference implementations' logits.

    python tools/check_reference_parity.py --coop-repo /path/to/KaiyangZhou/CoOp
    python tools/check_reference_parity.py --maple-repo /path/to/muzairkhattak/multimodal-prompt-learning

The reference trainer files are imported from that checkout (never copied into this project);
they import `dassl` (ours) and `clip`: the clip-anytorch package for CoOp's files, the MaPLe
repository's own forked clip package for its maple.py (loaded under another module name, and
seen as `clip` only while the reference trainer is imported). Both sides are built from the
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
from contextlib import contextmanager

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dassl.config import get_cfg_default  # noqa: E402
from dassl.engine import TRAINER_REGISTRY  # noqa: E402
from train import extend_cfg  # noqa: E402
from trainers import cocoop, coop, maple, zsclip  # noqa: E402
from trainers.clip_backbone import LOCAL_CLIP_CONFIGS, build_local_clip  # noqa: E402
from tools.make_tables import md_table  # noqa: E402

CLASSNAMES = ["circle", "square", "sea_lion", "hexagon shape", "red traffic light"]


@contextmanager
def registrations_ignored():
    """Make TRAINER_REGISTRY.register a no-op, so reference classes imported meanwhile do not
    collide with ours."""
    original = TRAINER_REGISTRY.register
    TRAINER_REGISTRY.register = lambda obj=None, **kw: (obj if obj is not None else (lambda o: o))
    try:
        yield
    finally:
        TRAINER_REGISTRY.register = original


def import_package(name: str, directory: str) -> types.ModuleType:
    """Import the package in `directory` under the module name `name`."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(directory, "__init__.py"), submodule_search_locations=[directory]
    )
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return pkg


def import_reference_trainers(repo: str, package: str = "reference_trainers") -> types.ModuleType:
    """Import <repo>/trainers as a package under another name, its registrations ignored."""
    trainers_dir = os.path.join(repo, "trainers")
    if not os.path.isdir(trainers_dir):
        raise SystemExit(f"error: {trainers_dir} not found (pass the root of a CoOp/MaPLe checkout)")
    with registrations_ignored():
        return import_package(package, trainers_dir)


def reference_module(pkg, name):
    spec = importlib.util.find_spec(f"{pkg.__name__}.{name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    with registrations_ignored():
        spec.loader.exec_module(module)
    return module


def make_cfg(clip_model, opts=()):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    size = clip_model.visual.input_resolution
    cfg.INPUT.SIZE = (size, size)
    cfg.TRAINER.COOP.PREC = cfg.TRAINER.COCOOP.PREC = cfg.TRAINER.MAPLE.PREC = "fp32"
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


# ------------------------------------------------------------------ MaPLe
FORKED_CLIP_PACKAGE = "reference_maple_clip"


def import_forked_clip(repo: str) -> types.ModuleType:
    """The MaPLe repository's clip package, imported as `reference_maple_clip` (it uses relative
    imports only), so that clip-anytorch keeps the name `clip`."""
    clip_dir = os.path.join(repo, "clip")
    if not os.path.isfile(os.path.join(clip_dir, "model.py")):
        raise SystemExit(f"error: {clip_dir}/model.py not found (pass the root of a MaPLe checkout)")
    if FORKED_CLIP_PACKAGE in sys.modules:
        return sys.modules[FORKED_CLIP_PACKAGE]
    return import_package(FORKED_CLIP_PACKAGE, clip_dir)


@contextmanager
def clip_name_bound_to(pkg: types.ModuleType):
    """`import clip`, `from clip import clip`, `clip.model`, `clip.simple_tokenizer` resolve to
    pkg and its submodules inside the block; the previous sys.modules entries come back after."""
    names = ("clip", "clip.clip", "clip.model", "clip.simple_tokenizer")
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules["clip"] = pkg
    for sub in names[1:]:
        sys.modules[sub] = sys.modules[f"{pkg.__name__}.{sub.split('.')[1]}"]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_reference_maple(repo: str):
    """(reference trainers/maple.py, the forked clip package it was imported with)."""
    forked_clip = import_forked_clip(repo)
    pkg = import_reference_trainers(repo, package="reference_maple_trainers")
    with clip_name_bound_to(forked_clip):
        ref_maple = reference_module(pkg, "maple")
    import clip  # noqa: F401  (clip-anytorch again)

    assert sys.modules["clip"] is not forked_clip
    return ref_maple, forked_clip


@contextmanager
def half_casts_disabled():
    """Tensor.half() returns the tensor unchanged inside the block.

    The forked clip casts MaPLe's prompt tokens with .half() in every precision (model.py:
    `visual_ctx ... .half()`, `textual_context ... .half()`), so in an fp32 run the reference
    rounds its prompts to fp16 and then concatenates them with fp32 hidden states. Our
    implementation keeps fp32; this lets the two be compared at fp32 tolerance.
    """
    original = torch.Tensor.half
    torch.Tensor.half = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.half = original


def forked_clip_model(forked_clip, backbone: str, state_dict, n_ctx: int):
    """The fork's CLIP with MaPLe's design, in fp32, holding the weights of our CLIP."""
    design = {"trainer": "MaPLe", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
              "language_ctx": 0, "maple_length": n_ctx}
    model = forked_clip.model.CLIP(**LOCAL_CLIP_CONFIGS[backbone], design_details=design)
    model.load_state_dict(state_dict)  # strict: every weight comes from our CLIP
    return model.float().eval()


MAPLE_CASES = (  # (PROMPT_DEPTH, N_CTX, CTX_INIT)
    (9, 2, "a photo of a"),  # the base-to-new config
    (3, 2, "a photo of a"),  # the cross-dataset config
    (1, 2, "a photo of a"),  # shallow MaPLe
    (2, 2, ""),
    (9, 4, ""),
    (12, 3, "a photo of a"),  # every block prompted
)


def maple_cases(ref_maple, forked_clip, clip_model, backbone, images, cases=MAPLE_CASES):
    """Per case: (name, max diff with the reference's fp16 prompt casts disabled, max diff
    with the reference as it is)."""
    for depth, n_ctx, init in cases:
        cfg = make_cfg(clip_model, ["TRAINER.MAPLE.PROMPT_DEPTH", depth, "TRAINER.MAPLE.N_CTX", n_ctx,
                                    "TRAINER.MAPLE.CTX_INIT", init])
        torch.manual_seed(0)
        ours = maple.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
        ref_clip = forked_clip_model(forked_clip, backbone, clip_model.state_dict(), n_ctx)
        reference = ref_maple.CustomCLIP(cfg, CLASSNAMES, ref_clip).float()  # its proj is made .half()
        with torch.no_grad():  # move every learned tensor away from its init
            for p in ours.prompt_learner.parameters():
                p.add_(0.05 * torch.randn_like(p))
        copy_learned(ours, reference)
        with half_casts_disabled():
            diff = compare(ours, reference, images)
        diff_as_is = compare(ours, reference, images)
        yield f"MaPLe depth={depth} n_ctx={n_ctx} init={init!r}", diff, diff_as_is


def perturbed_clip(backbone: str):
    clip_model = build_local_clip(backbone).float()
    # Randomise everything (LayerNorm gains included) so no weight is at a trivial value.
    torch.manual_seed(123)
    with torch.no_grad():
        for p in clip_model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    size = clip_model.visual.input_resolution
    images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(7))
    return clip_model, images


def print_table(rows, tol, title):
    """rows: (case, diff[, diff of the reference as it is]). Returns the number of failures."""
    extra = len(rows[0]) > 2
    header = ["case", "max abs logit diff", "ok"] + (["reference as is (fp16 prompt casts)"] if extra else [])
    failed, table = 0, []
    for row in rows:
        name, diff = row[0], row[1]
        ok = diff <= tol
        failed += not ok
        table.append([name, f"{diff:.2e}", "yes" if ok else "NO"] + ([f"{row[2]:.2e}"] if extra else []))
    print(md_table(header, table))
    print(f"{len(rows) - failed} of {len(rows)} cases within {tol:g} ({title})")
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coop-repo", help="root of a KaiyangZhou/CoOp checkout (CoOp, CoCoOp, ZeroshotCLIP)")
    parser.add_argument("--maple-repo", help="root of a muzairkhattak/multimodal-prompt-learning checkout (MaPLe)")
    parser.add_argument("--backbone", default="tiny-vit", help="random-init CLIP configuration for CoOp's trainers")
    parser.add_argument(
        "--maple-backbone", default="random-vit-b16",
        help="random-init CLIP configuration for MaPLe (the reference hard-codes text width 512 and vision width 768)",
    )
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if not args.coop_repo and not args.maple_repo:
        parser.error("pass --coop-repo and/or --maple-repo")

    failed = 0
    if args.coop_repo:
        clip_model, images = perturbed_clip(args.backbone)
        pkg = import_reference_trainers(args.coop_repo)
        ref_coop = reference_module(pkg, "coop")
        ref_cocoop = reference_module(pkg, "cocoop")
        ref_zsclip = reference_module(pkg, "zsclip")

        rows = list(coop_cases(ref_coop, clip_model, images))
        rows += list(cocoop_cases(ref_cocoop, clip_model, images))
        rows += list(zeroshot_cases(ref_zsclip, clip_model, images))
        failed += print_table(rows, args.tol, f"fp32, backbone {args.backbone}")

    if args.maple_repo:
        config = LOCAL_CLIP_CONFIGS.get(args.maple_backbone)
        if config is None or (config["transformer_width"], config["vision_width"]) != (512, 768):
            raise SystemExit(
                f"error: --maple-backbone {args.maple_backbone}: the reference MaPLe hard-codes text width 512 and "
                "vision width 768 (ViT-B/16 shapes); use random-vit-b16"
            )
        clip_model, images = perturbed_clip(args.maple_backbone)
        ref_maple, forked_clip = import_reference_maple(args.maple_repo)
        rows = list(maple_cases(ref_maple, forked_clip, clip_model, args.maple_backbone, images))
        failed += print_table(rows, args.tol, f"fp32, backbone {args.maple_backbone}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
