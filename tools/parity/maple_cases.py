"""Parity cases of the deep-prompt methods against their repositories' trainer files and forked
clip packages: MaPLe (logits) and PromptSRC (templates, frozen features, logits, loss terms,
prompt gradients, Gaussian prompt aggregation).
"""
import copy

import torch

from trainers import maple
from trainers.clip_backbone import build_local_clip
from tools.parity.harness import (
    CLASSNAMES, ParametersSetTo, compare, copy_learned, cuda_calls_stay_on_cpu, forked_clip_model, forked_ivlp_clip,
    half_casts_disabled, locals_at_return, make_cfg,
)


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
