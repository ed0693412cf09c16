"""Check that our prompt learners give the reference implementations' logits.

    python -m tools.check_reference_parity --coop-repo /path/to/KaiyangZhou/CoOp
    python -m tools.check_reference_parity --maple-repo /path/to/muzairkhattak/multimodal-prompt-learning
    python -m tools.check_reference_parity --kgcoop-repo /path/to/htyao89/KgCoOp   # also loss and ctx gradient

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

from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY
from launch import extend_cfg
from trainers import cocoop, coop, maple, zsclip
from trainers.clip_backbone import LOCAL_CLIP_CONFIGS, build_local_clip
from tools.make_tables import md_table

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


KGCOOP_CASES = (  # (CTX_INIT, CSC, DATASET.NAME); N_CTX 4, W 8.0, class name at the end (the only
    # position the reference builds)
    ("a photo of a", False, "OxfordPets"),  # the reference's configs (CTX_INIT True) and scripts
    ("a photo of a", False, "DescribableTextures"),  # the one template that is not CoOp's
    ("", False, "EuroSAT"),
    ("", True, "Caltech101"),
)


def kgcoop_cases(ref_kgcoop, clip_model, images, cases=KGCOOP_CASES, weight=8.0):
    """Per case: the frozen template features, the logits, the training loss (CE + W * kg, the
    reference's forward_backward run with its backward step captured) and the gradient of ctx.

    The reference builds its frozen features with a second CLIP from load_clip_to_cpu; here that
    is a copy of the same random-init CLIP, on the CPU.
    """
    from trainers import kgcoop

    labels = torch.arange(len(images)) % len(CLASSNAMES)
    ref_kgcoop.load_clip_to_cpu = lambda cfg: copy.deepcopy(clip_model)
    for init, csc, dataset in cases:
        cfg = make_cfg(clip_model, ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CSC", csc, "TRAINER.COOP.CTX_INIT", init,
                                    "TRAINER.COOP.W", weight, "DATASET.NAME", dataset])
        torch.manual_seed(0)
        ours = kgcoop.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model), kgcoop.kgcoop_template(dataset))
        with cuda_calls_stay_on_cpu():
            reference = ref_kgcoop.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
        with torch.no_grad():  # move the context away from its init (and the kg term from 0)
            ours.prompt_learner.ctx.add_(0.1 * torch.randn_like(ours.prompt_learner.ctx))
            reference.prompt_learner.ctx.copy_(ours.prompt_learner.ctx)  # its other parameters are unused
        ours.eval(), reference.eval()
        name = f"KgCoOp init={init!r} csc={csc} {dataset}"

        ref_frozen = reference.ori_embedding / reference.ori_embedding.norm(dim=-1, keepdim=True)
        yield f"{name}: frozen template features", (ours.frozen_text_features() - ref_frozen).abs().max().item()
        with torch.no_grad():
            yield f"{name}: logits", (ours(images) - reference(images)[0]).abs().max().item()

        trainer = kgcoop.KgCoOp.__new__(kgcoop.KgCoOp)  # compute_loss needs cfg and model only
        trainer.cfg, trainer.model = cfg, ours
        loss, _, _ = trainer.compute_loss(images, labels)
        loss.backward()

        ref_trainer = ref_kgcoop.KgCoOp.__new__(ref_kgcoop.KgCoOp)
        ref_trainer.cfg, ref_trainer.model, ref_trainer.w = cfg, reference, cfg.TRAINER.COOP.W
        ref_trainer.device, ref_trainer.batch_idx, ref_trainer.num_batches = torch.device("cpu"), 0, 2
        ref_losses = []
        ref_trainer.model_backward_and_update = lambda loss: (ref_losses.append(loss), loss.backward())
        ref_trainer.forward_backward({"img": images, "label": labels})
        yield f"{name}: loss (CE + {weight:g} kg)", abs(loss.item() - ref_losses[0].item())
        grad_diff = ours.prompt_learner.ctx.grad - reference.prompt_learner.ctx.grad
        yield f"{name}: gradient of ctx", grad_diff.abs().max().item()


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


def reference_promptsrc_trainer(ref_promptsrc, cfg, model, optim):
    """The reference PromptSRC trainer without data or build_model: what its forward_backward reads."""
    trainer = ref_promptsrc.PromptSRC.__new__(ref_promptsrc.PromptSRC)
    trainer.cfg, trainer.model, trainer.optim, trainer.scaler = cfg, model, optim, None
    trainer.device, trainer.batch_idx, trainer.num_batches = torch.device("cpu"), 0, 2
    trainer.step_counter, trainer.previous_model_gpa = 1, None
    trainer.update_lr = lambda: None
    return trainer


PROMPTSRC_CASES = (  # (PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION, N_CTX_TEXT, N_CTX_VISION, CTX_INIT)
    (9, 9, 4, 4, "a photo of a"),  # the base-to-new and few-shot configs
    (3, 3, 4, 4, "a photo of a"),  # the cross-dataset config
    (1, 1, 4, 4, "a photo of a"),  # shallow: prompts at each encoder's input only
    (9, 9, 2, 3, ""),  # random init; text and vision prompts of other lengths
    (12, 0, 4, 4, "a photo of a"),  # every text block, no vision prompts
)
# (our training_losses key, the local variable of the reference's forward_backward)
PROMPTSRC_LOSS_TERMS = (("loss_ce", "loss_ce"), ("loss_scl_text", "loss_scl_text"),
                        ("loss_scl_image", "loss_scl_image"), ("loss_scl_logits", "L_SCL_logits"))


def promptsrc_cases(ref_promptsrc, forked_clip, clip_model, backbone, images, cases=PROMPTSRC_CASES):
    """Per case: (row, max abs diff with the reference's fp16 casts disabled, the same with the
    reference as it is; nan where it cannot run on fp32) for the frozen template features, the
    logits (eval mode), each training-loss term and the total on one batch (training mode: the
    reference's CustomCLIP forward and PromptSRC.forward_backward, with an optimizer that does not
    step), and the gradients of the prompts (max over them). The reference's second and third
    CLIPs (frozen text and image encoders) come from load_clip_to_cpu: copies of the same CLIP."""
    from trainers import promptsrc

    labels = torch.arange(len(images)) % len(CLASSNAMES)
    state = clip_model.state_dict()
    ref_promptsrc.load_clip_to_cpu = lambda cfg, zero_shot_model=False: forked_ivlp_clip(
        forked_clip, backbone, state, cfg, zero_shot_model)
    for text_depth, vision_depth, n_text, n_vision, init in cases:
        src = "TRAINER.PROMPTSRC."
        cfg = make_cfg(clip_model, [f"{src}PREC", "fp32", f"{src}PROMPT_DEPTH_TEXT", text_depth,
                                    f"{src}PROMPT_DEPTH_VISION", vision_depth, f"{src}N_CTX_TEXT", n_text,
                                    f"{src}N_CTX_VISION", n_vision, f"{src}CTX_INIT", init])
        name = f"PromptSRC depth={text_depth}/{vision_depth} n_ctx={n_text}+{n_vision} init={init!r}"
        torch.manual_seed(0)
        ours = promptsrc.CustomCLIP(cfg, CLASSNAMES, copy.deepcopy(clip_model))
        with cuda_calls_stay_on_cpu():
            reference = ref_promptsrc.CustomCLIP(cfg, CLASSNAMES, ref_promptsrc.load_clip_to_cpu(cfg))
        # Our parameters into the reference's (reference_name: the names its checkpoints hold).
        ref_params = dict(reference.named_parameters())
        mapped = {promptsrc.reference_name(n): p for n, p in ours.prompt_learner.named_parameters()}
        ref_prompts = {n for n in ref_params if n == "prompt_learner.ctx" or n.split(".")[-1] in ("VPT", "VPT_shallow")}
        assert set(mapped) == ref_prompts, (sorted(mapped), sorted(ref_prompts))
        with torch.no_grad():  # move every learned tensor away from its init
            for p in ours.prompt_learner.parameters():
                p.add_(0.05 * torch.randn_like(p))
            for n, p in ref_params.items():
                p.requires_grad_(n in mapped)
                if n in mapped:
                    p.copy_(mapped[n])

        ref_frozen = reference.prompt_learner.fixed_embeddings
        ref_frozen = ref_frozen / ref_frozen.norm(dim=-1, keepdim=True)
        diff = (ours.frozen_text_features - ref_frozen).abs().max().item()
        yield f"{name}: frozen template features", diff, diff

        ours.eval(), reference.eval()
        with half_casts_disabled():
            diff = compare(ours, reference, images)
        yield f"{name}: logits", diff, compare(ours, reference, images)

        logits, losses = ours.training_losses(images, labels)
        total = sum(losses.values())
        total.backward()
        reference.train()
        batch = {"img": images, "label": labels}
        with cuda_calls_stay_on_cpu(), half_casts_disabled():
            ref_locals = locals_at_return(
                reference_promptsrc_trainer(ref_promptsrc, cfg, reference, ParametersSetTo()).forward_backward, batch)
        grad_diff = max((p.grad - ref_params[promptsrc.reference_name(n)].grad).abs().max().item()
                        for n, p in ours.prompt_learner.named_parameters())
        reference.zero_grad()
        try:  # as it is: its frozen logits multiply fp32 features by .half() text features
            with cuda_calls_stay_on_cpu():
                as_is = locals_at_return(
                    reference_promptsrc_trainer(ref_promptsrc, cfg, reference, ParametersSetTo()).forward_backward, batch)
        except RuntimeError:
            as_is = {}
        nan = float("nan")
        for ours_key, ref_key in PROMPTSRC_LOSS_TERMS + (("total", "loss"),):
            value = total if ours_key == "total" else losses[ours_key]
            yield (f"{name}: loss {ours_key}", abs(value.item() - ref_locals[ref_key].item()),
                   abs(value.item() - as_is[ref_key].item()) if ref_key in as_is else nan)
        yield f"{name}: gradient of the prompts", grad_diff, nan


class GPAStandIn(torch.nn.Module):
    """Stands in for the reference's CustomCLIP in its forward_backward to run its GPA code: one
    prompt tensor, and the seven outputs of its training forward computed from it."""

    def __init__(self, total_epochs: int, shape=(4, 8)):
        super().__init__()
        self.prompt_learner = torch.nn.Module()
        self.prompt_learner.ctx = torch.nn.Parameter(torch.zeros(shape))
        self.total_epochs = total_epochs

    def forward(self, image, label):
        features = self.prompt_learner.ctx / self.prompt_learner.ctx.norm(dim=-1, keepdim=True)
        logits = features @ features.t()
        frozen = features.detach()
        return 0 * logits.sum(), features, frozen, frozen, features, logits.detach(), logits


PROMPTSRC_GPA_SCHEDULES = (  # (OPTIM.MAX_EPOCH, GPA_MEAN, GPA_STD)
    (20, 15, 1),  # base-to-new
    (20, 6, 10),  # cross-dataset
    (50, 30, 30),  # few-shot (ImageNet, Caltech101, OxfordPets, Food101, UCF101, SUN397)
    (50, 45, 5),  # few-shot (the other five datasets)
    (5, 4, 1),  # bundled.yaml, tiny.yaml
    (2, 1, 1),  # bundled_xd.yaml
)


def promptsrc_gpa_cases(ref_promptsrc, schedules=PROMPTSRC_GPA_SCHEDULES):
    """Per schedule: our GPA weights against the reference's (its get_gauss at epochs 1..N, divided
    by their sum), and the aggregate of random per-epoch prompt snapshots against what the
    reference's forward_backward loads into its model after the last epoch (one batch per epoch;
    its optimizer step sets the prompt to the epoch's snapshot)."""
    import numpy as np

    from trainers import promptsrc

    cfg = make_cfg(build_local_clip("tiny-vit"), ["TRAINER.PROMPTSRC.PREC", "fp32"])  # read for PREC and weights
    for n_epochs, mean, std in schedules:
        name = f"PromptSRC GPA MAX_EPOCH={n_epochs} GPA_MEAN={mean} GPA_STD={std}"
        gauss = ref_promptsrc.PromptSRC.get_gauss(None, mean, std)
        ref_weights = np.array([gauss(a) for a in range(1, n_epochs + 1)])
        ref_weights = ref_weights / sum(ref_weights)
        weights = promptsrc.gpa_weights(n_epochs, mean, std)
        diff = float(np.abs(np.array(weights) - ref_weights).max())
        yield f"{name}: weights", diff, diff

        snapshots = torch.randn(n_epochs, 4, 8, generator=torch.Generator().manual_seed(n_epochs))
        stand_in = GPAStandIn(n_epochs)
        trainer = reference_promptsrc_trainer(ref_promptsrc, cfg, stand_in,
                                              ParametersSetTo(stand_in.prompt_learner.ctx, snapshots))
        trainer.gauss, trainer.num_batches = ref_weights, 1  # every batch ends an epoch
        images, labels = torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
        with cuda_calls_stay_on_cpu():
            for _ in range(n_epochs):
                trainer.forward_backward({"img": images, "label": labels})
        gpa = promptsrc.GaussianPromptAggregation(weights)
        for epoch in range(n_epochs):
            gpa.add(epoch, {"ctx": snapshots[epoch]})
        diff = (gpa.aggregate()["ctx"] - stand_in.prompt_learner.ctx).abs().max().item()
        yield f"{name}: aggregate of {n_epochs} snapshots", diff, diff


def promptsrc_template_case(ref_promptsrc):
    """The frozen text features' templates: ours (PROMPTSRC_TEMPLATES) and the reference's list,
    in order; diff 0 when they are the same list, 1 otherwise."""
    from trainers import promptsrc

    same = list(promptsrc.PROMPTSRC_TEMPLATES) == list(ref_promptsrc.IMAGENET_TEMPLATES)
    yield f"PromptSRC templates ({len(ref_promptsrc.IMAGENET_TEMPLATES)}, same order)", 0.0 if same else 1.0, 0.0


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coop-repo", help="root of a KaiyangZhou/CoOp checkout (CoOp, CoCoOp, ZeroshotCLIP)")
    parser.add_argument("--maple-repo", help="root of a muzairkhattak/multimodal-prompt-learning checkout (MaPLe)")
    parser.add_argument("--kgcoop-repo", help="root of a htyao89/KgCoOp checkout (KgCoOp; uses --backbone)")
    parser.add_argument("--backbone", default="tiny-vit", help="random-init CLIP configuration for CoOp's trainers")
    parser.add_argument(
        "--maple-backbone", default="random-vit-b16",
        help="random-init CLIP configuration for MaPLe (the reference hard-codes text width 512 and vision width 768)",
    )
    parser.add_argument("--promptsrc-repo", help="root of a muzairkhattak/PromptSRC checkout (PromptSRC)")
    parser.add_argument("--promptsrc-backbone", default="random-vit-b16",
                        help="random-init CLIP configuration for PromptSRC (its depths need >= 12 blocks per encoder)")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if not args.coop_repo and not args.maple_repo and not args.kgcoop_repo and not args.promptsrc_repo:
        parser.error("pass --coop-repo, --maple-repo, --kgcoop-repo and/or --promptsrc-repo")

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
        ref_maple, forked_clip = import_reference_with_forked_clip(args.maple_repo, "maple", "MaPLe")
        rows = list(maple_cases(ref_maple, forked_clip, clip_model, args.maple_backbone, images))
        failed += print_table(rows, args.tol, f"fp32, backbone {args.maple_backbone}")

    if args.kgcoop_repo:
        clip_model, images = perturbed_clip(args.backbone)
        ref_kgcoop = reference_module(import_reference_trainers(args.kgcoop_repo, "reference_kgcoop_trainers"), "kgcoop")
        rows = list(kgcoop_cases(ref_kgcoop, clip_model, images))
        failed += print_table(rows, args.tol, f"KgCoOp: frozen features, logits, loss, ctx gradient; fp32, backbone "
                                              f"{args.backbone}")

    if args.promptsrc_repo:
        clip_model, images = perturbed_clip(args.promptsrc_backbone)
        ref_promptsrc, forked_clip = import_reference_with_forked_clip(args.promptsrc_repo, "promptsrc", "PromptSRC")
        rows = list(promptsrc_template_case(ref_promptsrc))
        rows += list(promptsrc_cases(ref_promptsrc, forked_clip, clip_model, args.promptsrc_backbone, images))
        rows += list(promptsrc_gpa_cases(ref_promptsrc))
        failed += print_table(rows, args.tol, f"PromptSRC: templates, frozen features, logits, training loss and its "
                                              f"terms, prompt gradients, GPA; fp32, backbone {args.promptsrc_backbone}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
