"""The parity harness: reference trainer files imported from a checkout (with our dassl, and
the reference's own forked clip package where it has one), both sides built from the same
random-init CLIP, the reference's learnable parameters set to ours, and each case's largest
difference tabulated (tools/check_reference_parity.py is the command; docs/PARITY.md).
"""
import importlib.util
import os
import sys
import types
from contextlib import contextmanager

import torch

from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY
from launch import extend_cfg
from trainers.clip_backbone import LOCAL_CLIP_CONFIGS, build_local_clip
from tools.reporting.tables import md_table


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


# ------------------------------------------------------------------ KgCoOp
@contextmanager
def cuda_calls_stay_on_cpu():
    """Module.cuda() and Tensor.cuda() return their object unchanged inside the block: the
    reference KgCoOp's PromptLearner moves its second CLIP and the template tokens to the GPU."""
    module_cuda, tensor_cuda = torch.nn.Module.cuda, torch.Tensor.cuda
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.nn.Module.cuda, torch.Tensor.cuda = module_cuda, tensor_cuda
# ------------------------------------------------------------------ MaPLe
def import_forked_clip(repo: str, package: str, repo_name: str) -> types.ModuleType:
    """A reference repository's own clip package (MaPLe's, PromptSRC's), imported as `package`
    (it uses relative imports only), so that clip-anytorch keeps the name `clip`."""
    clip_dir = os.path.join(repo, "clip")
    if not os.path.isfile(os.path.join(clip_dir, "model.py")):
        raise SystemExit(f"error: {clip_dir}/model.py not found (pass the root of a {repo_name} checkout)")
    if package in sys.modules:
        return sys.modules[package]
    return import_package(package, clip_dir)


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


def import_reference_with_forked_clip(repo: str, module: str, repo_name: str):
    """(the repository's trainers/<module>.py, its forked clip package): the fork is imported as
    `reference_<module>_clip` and seen as `clip` only while the trainer file is imported."""
    forked_clip = import_forked_clip(repo, f"reference_{module}_clip", repo_name)
    pkg = import_reference_trainers(repo, package=f"reference_{module}_trainers")
    with clip_name_bound_to(forked_clip):
        reference = reference_module(pkg, module)
    import clip  # noqa: F401  (clip-anytorch again)

    assert sys.modules["clip"] is not forked_clip
    return reference, forked_clip


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


# ------------------------------------------------------------------ PromptSRC
def forked_ivlp_clip(forked_clip, backbone: str, state_dict, cfg, zero_shot: bool = False):
    """The fork's CLIP with the IVLP design of cfg (zero_shot: without prompts, as the reference's
    frozen CLIP), in fp32, holding the weights of our CLIP; its prompts stay random-init."""
    src = cfg.TRAINER.PROMPTSRC
    design = {"trainer": "IVLP", "vision_depth": src.PROMPT_DEPTH_VISION, "language_depth": src.PROMPT_DEPTH_TEXT,
              "vision_ctx": src.N_CTX_VISION, "language_ctx": src.N_CTX_TEXT}
    if zero_shot:
        design.update(vision_depth=0, language_depth=0, vision_ctx=0, language_ctx=0)
    model = forked_clip.model.CLIP(**LOCAL_CLIP_CONFIGS[backbone], design_details=design)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert not unexpected and all("VPT" in key for key in missing), (missing, unexpected)
    return model.float().eval()


def locals_at_return(method, *args):
    """Call method(*args); return its frame's local variables at its return (the reference's
    forward_backward keeps each loss term in a local and returns only the total)."""
    code, captured = method.__func__.__code__, {}

    def profile(frame, event, arg):
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)

    sys.setprofile(profile)
    try:
        method(*args)
    finally:
        sys.setprofile(None)
    return captured


class ParametersSetTo:
    """An optimizer stand-in: zero_grad() does nothing, step() sets `param` to the next of `values`
    (none left: leaves it). The loss comparison reads the gradients; the GPA one feeds snapshots."""

    def __init__(self, param=None, values=()):
        self.param, self.values = param, iter(values)

    def zero_grad(self):
        pass

    def step(self):
        value = next(self.values, None)
        if value is not None:
            with torch.no_grad():
                self.param.copy_(value)


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
    header = ["case", "max abs diff", "ok"] + (["reference as is (fp16 prompt casts)"] if extra else [])
    failed, table = 0, []
    for row in rows:
        name, diff = row[0], row[1]
        ok = diff <= tol
        failed += not ok
        table.append([name, f"{diff:.2e}", "yes" if ok else "NO"] + ([f"{row[2]:.2e}"] if extra else []))
    print(md_table(header, table))
    print(f"{len(rows) - failed} of {len(rows)} cases within {tol:g} ({title})")
    return failed
