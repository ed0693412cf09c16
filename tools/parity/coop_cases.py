"""Parity cases of the CoOp family against KaiyangZhou/CoOp's and htyao89/KgCoOp's trainer files:
CoOp, CoCoOp, zero-shot CLIP (logits) and KgCoOp (frozen features, logits, loss, ctx gradient).
"""
import copy
import types

import torch

from trainers import cocoop, coop, zsclip
from tools.parity.harness import CLASSNAMES, compare, copy_learned, cuda_calls_stay_on_cpu, make_cfg


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
