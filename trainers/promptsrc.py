"""PromptSRC: Self-regulating Prompts (Khattak et al., ICCV 2023).

Independent deep prompts on both encoders of a frozen CLIP (the reference's "IVLP" design),
trained with cross-entropy plus three self-regulating terms that keep the prompted model close to
the frozen one, and averaged over epochs at the end (Gaussian prompt aggregation, GPA).

- Text: "[SOS] ctx <rest of CTX_INIT> <class>." with ctx [M_t, d] (M_t = N_CTX_TEXT), and
  independent prompts [M_t, d] replacing the context tokens' hidden states at the input of text
  blocks 1 .. PROMPT_DEPTH_TEXT - 1.
- Vision: M_v = N_CTX_VISION prompt tokens [M_v, w] appended after the patch tokens before
  ln_pre, replaced by independent prompts at vision blocks 1 .. PROMPT_DEPTH_VISION - 1
  (PROMPT_DEPTH_VISION 0: no vision prompts). No coupling between the branches (unlike MaPLe).
- Loss (the reference's forward_backward): CE(logits, y) + L_SCL, L_SCL = TEXT_LOSS_WEIGHT *
  L1(text features, frozen template-averaged text features) + IMAGE_LOSS_WEIGHT * L1(image
  features, frozen image features) + KL(frozen logits || prompted logits) summed over the batch
  and classes and divided by B * C. `self_regulating_losses` has the exact forms.
- GPA: after each epoch e (1-based) the prompt learner's parameters are added with weight
  w_e = N(e; GPA_MEAN, GPA_STD) / sum_e' N(e'; ...); after the last epoch the model takes the
  aggregate, so the last checkpoint and the final evaluation are the aggregate (as in the
  reference). The running sum is saved with every checkpoint and restored on resume.

CLIP's blocks run from our code (trainers/clip_backbone.py); the clip package is not forked. The
frozen image features are the same CLIP's image encoder run without prompts (the reference keeps
a second copy of it); the frozen text features are computed once, in fp32, from the ImageNet
templates of the reference (PROMPTSRC_TEMPLATES). Parameter names and how a reference checkpoint
loads: `reference_name`.
"""
import copy
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .class_prompts import ClassPromptLearner, clean_classname, leading_words_context
from .clip_backbone import LEARNED_DTYPE, l2_normalize, tokenize
from .clip_encoders import TextEncoder
from .errors import UserValueError
from .prompted_clip import DeepPromptedCLIP, PromptedCLIP
from .imagenet_templates import IMAGENET_TEMPLATES
from .prompt_trainer import ClipPromptTrainer, declare_node, register_trainer


def add_config(cfg):
    """TRAINER.PROMPTSRC with the defaults of muzairkhattak/PromptSRC's train.py (a PromptSRC
    checkout declares it itself)."""
    declare_node(
        cfg, "PROMPTSRC",
        N_CTX_VISION=4,  # vision prompt tokens
        N_CTX_TEXT=4,  # text prompt tokens
        CTX_INIT="a photo of a",
        PREC="fp16",
        PROMPT_DEPTH_VISION=9,  # blocks with vision prompts (1 = shallow)
        PROMPT_DEPTH_TEXT=9,  # blocks with text prompts (1 = shallow)
        TEXT_LOSS_WEIGHT=25,  # L1 between learned and frozen text features
        IMAGE_LOSS_WEIGHT=10,  # L1 between learned and frozen image features
        GPA_MEAN=15,  # Gaussian prompt aggregation: mean epoch
        GPA_STD=1,  # ... and its standard deviation in epochs
    )


# The reference's trainers/imagenet_templates.py holds 60 of CLIP's 80 ImageNet templates: the
# first 60 of the list in trainers/imagenet_templates.py, with "a photo of a {}." moved first.
PROMPTSRC_TEMPLATES = ["a photo of a {}."] + [t for t in IMAGENET_TEMPLATES[:60] if t != "a photo of a {}."]
# Prompts per text-encoder call when computing the template features (memory bound on a GPU).
TEMPLATE_CHUNK = 1024
# The folder a reference PromptSRC run saves its whole CustomCLIP in (its register_model name).
REFERENCE_MODEL_NAME = "VLPromptLearner"


# --------------------------------------------------------------------------- prompts
def deep_prompts(depth: int, n_tokens: int, width: int) -> nn.ParameterDict:
    """{"i": [n_tokens, width] ~ N(0, 0.02)} for blocks i = 1 .. depth - 1 (the reference's init)."""
    return nn.ParameterDict({
        str(i): nn.Parameter(nn.init.normal_(torch.empty(n_tokens, width, dtype=LEARNED_DTYPE), std=0.02))
        for i in range(1, depth)
    })


class VLPromptLearner(ClassPromptLearner):
    """PromptSRC's learned tensors (all fp32).

    ctx [M_t, d]                       text context at block 0 (in the prompt embeddings)
    deep_text_prompts {"i": [M_t, d]}  text blocks i = 1 .. PROMPT_DEPTH_TEXT - 1
    vision_ctx [M_v, w]                appended to the image tokens (absent at depth 0)
    deep_vision_prompts {"i": [M_v, w]} vision blocks i = 1 .. PROMPT_DEPTH_VISION - 1
    forward() -> text prompt embeddings [C, 77, d].
    """

    def __init__(self, cfg, classnames, clip_model, vision_width: int, vision_layers: int):
        super().__init__()
        src = cfg.TRAINER.PROMPTSRC
        text_width = clip_model.ln_final.weight.shape[0]
        text_layers = len(clip_model.transformer.resblocks)
        check_depths(src.PROMPT_DEPTH_TEXT, src.PROMPT_DEPTH_VISION, text_layers, vision_layers)

        ctx, prompt_prefix = leading_words_context(clip_model, src.N_CTX_TEXT, src.CTX_INIT, "TRAINER.PROMPTSRC", "N_CTX_TEXT")
        n_ctx = ctx.shape[0]
        print("Independent V-L design (PromptSRC)")
        print(f'Initial text context: "{prompt_prefix}"')
        print(f"Number of context words (tokens) for Language prompting: {n_ctx}")
        print(f"Number of context words (tokens) for Vision prompting: {src.N_CTX_VISION}")
        self.ctx = nn.Parameter(ctx)
        self.deep_text_prompts = deep_prompts(src.PROMPT_DEPTH_TEXT, n_ctx, text_width)
        vision_ctx = None
        if src.PROMPT_DEPTH_VISION > 0:
            vision_ctx = nn.Parameter(
                nn.init.normal_(torch.empty(src.N_CTX_VISION, vision_width, dtype=LEARNED_DTYPE), std=0.02)
            )
        self.register_parameter("vision_ctx", vision_ctx)
        self.deep_vision_prompts = deep_prompts(src.PROMPT_DEPTH_VISION, src.N_CTX_VISION, vision_width)

        self.init_classes(clip_model, classnames, prompt_prefix, n_ctx)

    def text_deep_prompts(self) -> Dict[int, torch.Tensor]:
        """{text block i: [M_t, d]} for i = 1 .. PROMPT_DEPTH_TEXT - 1."""
        return {int(i): prompt for i, prompt in self.deep_text_prompts.items()}

    def vision_prompts(self) -> Tuple[Optional[torch.Tensor], Dict[int, torch.Tensor]]:
        """(appended vision prompts [M_v, w] or None, {vision block i: [M_v, w]})."""
        return self.vision_ctx, {int(i): prompt for i, prompt in self.deep_vision_prompts.items()}

    def forward(self) -> torch.Tensor:
        return self.classes.assemble(self.ctx)


def check_depths(text_depth: int, vision_depth: int, text_layers: int, vision_layers: int) -> None:
    if not 1 <= text_depth <= text_layers:
        raise UserValueError(
            f"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT must be in 1..{text_layers} for this CLIP ({text_layers} text "
            f"blocks), got {text_depth}"
        )
    if not 0 <= vision_depth <= vision_layers:
        raise UserValueError(
            f"TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION must be in 0..{vision_layers} for this CLIP ({vision_layers} "
            f"vision blocks), got {vision_depth}"
        )


def reference_name(name: str) -> str:
    """Our prompt learner's parameter name -> the name of the same tensor in the state dict of the
    reference's CustomCLIP (what its checkpoints hold, under VLPromptLearner/), where the deep
    prompts live in its forked CLIP's blocks:
        ctx                    prompt_learner.ctx
        deep_text_prompts.i    text_encoder.transformer.resblocks.i.VPT_shallow
        vision_ctx             image_encoder.VPT
        deep_vision_prompts.i  image_encoder.transformer.resblocks.i.VPT_shallow
    """
    group, _, block = name.partition(".")
    if group == "ctx":
        return "prompt_learner.ctx"
    if group == "vision_ctx":
        return "image_encoder.VPT"
    if group == "deep_text_prompts":
        return f"text_encoder.transformer.resblocks.{block}.VPT_shallow"
    if group == "deep_vision_prompts":
        return f"image_encoder.transformer.resblocks.{block}.VPT_shallow"
    raise KeyError(f"{name} is not a PromptSRC prompt-learner parameter")


def is_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return "prompt_learner.ctx" in state_dict


def learner_state_from_reference(state_dict: Mapping[str, torch.Tensor], learner: nn.Module) -> Dict[str, torch.Tensor]:
    """The learner's parameters taken from a reference CustomCLIP state dict (the frozen CLIP,
    its second image encoder and the token buffers in it are left out)."""
    return {name: state_dict[reference_name(name)] for name, _ in learner.named_parameters()
            if reference_name(name) in state_dict}


# --------------------------------------------------------------------------- frozen features
@torch.no_grad()
def template_text_features(clip_model, classnames: Sequence[str], templates: Sequence[str] = PROMPTSRC_TEMPLATES,
                           device=None) -> torch.Tensor:
    """The frozen CLIP's text features of each class averaged over the templates: [C, D], fp32.

    As the reference: an fp32 copy of the text encoder whatever PREC is, and the mean of the
    unnormalised features (normalise the result before use)."""
    encoder = copy.deepcopy(TextEncoder(clip_model)).float().to(device)
    encoder.dtype = torch.float32
    names = [clean_classname(c) for c in classnames]
    tokens = tokenize([template.replace("{}", name) for template in templates for name in names])  # [T*C, 77]
    features = []
    for chunk in tokens.split(TEMPLATE_CHUNK):
        embeddings = clip_model.token_embedding(chunk).float().to(device)
        features.append(encoder(embeddings, chunk.to(device)))
    return torch.cat(features).view(len(templates), len(names), -1).mean(dim=0).cpu()


# --------------------------------------------------------------------------- losses
def self_regulating_losses(
    logits: torch.Tensor, frozen_logits: torch.Tensor,
    text_features: torch.Tensor, frozen_text_features: torch.Tensor,
    image_features: torch.Tensor, frozen_image_features: torch.Tensor,
    text_weight: float, image_weight: float,
) -> Dict[str, torch.Tensor]:
    """PromptSRC's L_SCL terms, in fp32, as the reference's forward_backward computes them.

    logits, frozen_logits [B, C]; text features [C, D]; image features [B, D] (all normalised).
        loss_scl_text   = text_weight  * mean |t - t_frozen|             (F.l1_loss, mean over C*D)
        loss_scl_image  = image_weight * mean |f - f_frozen|             (mean over B*D)
        loss_scl_logits = sum_{b,c} p_frozen (log p_frozen - log p) / (B*C), p = softmax(logits)
    (the KL at temperature 1 with reduction 'sum' divided by logits.numel(), not by B).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    log_p_frozen = F.log_softmax(frozen_logits.float(), dim=1)
    return {
        "loss_scl_text": F.l1_loss(text_features.float(), frozen_text_features.float()) * text_weight,
        "loss_scl_image": F.l1_loss(image_features.float(), frozen_image_features.float()) * image_weight,
        "loss_scl_logits": F.kl_div(log_p, log_p_frozen, reduction="sum", log_target=True) / logits.numel(),
    }


class CustomCLIP(DeepPromptedCLIP):
    """Frozen CLIP with PromptSRC's prompts on both encoders, and the frozen features its
    self-regulating losses compare with."""

    def __init__(self, cfg, classnames, clip_model, device=None):
        super().__init__(lambda width, layers: VLPromptLearner(cfg, classnames, clip_model, width, layers), clip_model)
        self.text_loss_weight = float(cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT)
        self.image_loss_weight = float(cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT)
        # Normalised [C, D] fp32; not saved (it depends on the class names, and is recomputed).
        frozen_text = template_text_features(clip_model, classnames, PROMPTSRC_TEMPLATES, device)
        self.register_buffer("frozen_text_features", l2_normalize(frozen_text), persistent=False)

    @torch.no_grad()
    def frozen_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> normalised [B, D] of the frozen image encoder (no prompts; from the
        image feature cache where MODEL.BACKBONE.CACHE_IMAGE_FEATURES is on)."""
        return PromptedCLIP.encode_image(self, image)

    def training_losses(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(prompted logits [B, C], {loss_ce, loss_scl_text, loss_scl_image, loss_scl_logits});
        the training loss is their sum. Both logits use the CLIP's logit scale (as the reference)."""
        scale = self.logit_scale.exp()
        text_features = self.class_text_features()
        image_features = self.encode_image(image)
        logits = scale * image_features @ text_features.t()
        with torch.no_grad():
            frozen_image = self.frozen_image_features(image)
            frozen_logits = scale.float() * frozen_image.float() @ self.frozen_text_features.t()
        losses = {"loss_ce": F.cross_entropy(logits, label)}
        losses.update(self_regulating_losses(
            logits, frozen_logits, text_features, self.frozen_text_features, image_features, frozen_image,
            self.text_loss_weight, self.image_loss_weight,
        ))
        return logits, losses


# --------------------------------------------------------------------------- GPA
def gpa_weights(n_epochs: int, mean: float, std: float) -> List[float]:
    """w_e = exp(-(e - mean)^2 / (2 std^2)) / sum over e' for epochs e = 1 .. n_epochs.

    The reference evaluates the Gaussian pdf at 1 .. MAX_EPOCH and divides by the sum (the pdf's
    constant cancels); here in log space, so that far-off epochs cannot make every weight 0."""
    if std <= 0:
        raise UserValueError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}")
    if n_epochs < 1:
        return []
    log_w = [-0.5 * ((e - mean) / std) ** 2 for e in range(1, n_epochs + 1)]
    top = max(log_w)
    w = [math.exp(v - top) for v in log_w]
    total = sum(w)
    return [v / total for v in w]


class GaussianPromptAggregation:
    """Running sum over the finished epochs e (0-based) of weights[e] * parameters after epoch e."""

    def __init__(self, weights: Sequence[float]):
        self.weights = list(weights)
        self.total: Optional[Dict[str, torch.Tensor]] = None
        self.epochs: List[int] = []

    def add(self, epoch: int, params: Mapping[str, torch.Tensor]) -> None:
        if not 0 <= epoch < len(self.weights):
            raise UserValueError(
                f"GPA has weights for {len(self.weights)} epochs (OPTIM.MAX_EPOCH), not for epoch {epoch + 1}"
            )
        weight = self.weights[epoch]
        weighted = {name: p.detach() * weight for name, p in params.items()}
        self.total = weighted if self.total is None else {n: self.total[n] + weighted[n] for n in weighted}
        self.epochs.append(epoch)

    def aggregate(self) -> Dict[str, torch.Tensor]:
        """The weighted average. Epochs missing from the sum (a resume from a checkpoint written
        without GPA state) are left out and the present weights renormalised, with a note."""
        if self.total is None:
            raise RuntimeError("GPA: no epoch was aggregated")
        covered = sum(self.weights[e] for e in self.epochs)
        if abs(covered - 1.0) > 1e-6:
            missing = sorted(set(range(len(self.weights))) - set(self.epochs))
            print(f"Note: GPA lacks epoch(s) {[e + 1 for e in missing]} (resumed from a checkpoint without GPA "
                  f"state); the other epochs' weights are renormalised (they held {covered:.4f} of the total)")
            return {n: t / covered for n, t in self.total.items()}
        return self.total

    def state_dict(self) -> dict:
        return {"epochs": list(self.epochs), "total": self.total}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.epochs = list(state["epochs"])
        total = state["total"]
        self.total = None if total is None else {n: t.to(device) for n, t in total.items()}


@register_trainer
class PromptSRC(ClipPromptTrainer):
    """Self-regulating Prompts (PromptSRC). https://arxiv.org/abs/2307.06948"""

    cfg_node = "PROMPTSRC"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        src = cfg.TRAINER.PROMPTSRC
        if src.PROMPT_DEPTH_TEXT < 1:
            raise UserValueError(f"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT must be >= 1, got {src.PROMPT_DEPTH_TEXT}")
        if src.PROMPT_DEPTH_VISION < 0:
            raise UserValueError(f"TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION must be >= 0, got {src.PROMPT_DEPTH_VISION}")
        if src.N_CTX_TEXT < 1:
            raise UserValueError(f"TRAINER.PROMPTSRC.N_CTX_TEXT must be >= 1, got {src.N_CTX_TEXT}")
        if src.PROMPT_DEPTH_VISION > 0 and src.N_CTX_VISION < 1:
            raise UserValueError(f"TRAINER.PROMPTSRC.N_CTX_VISION must be >= 1 with vision prompts, got {src.N_CTX_VISION}")
        gpa_weights(cfg.OPTIM.MAX_EPOCH, src.GPA_MEAN, src.GPA_STD)  # GPA_STD > 0

    def build_custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model, device=self.device)

    def build_model(self):
        super().build_model()
        src = self.cfg.TRAINER.PROMPTSRC
        self.gpa = GaussianPromptAggregation(gpa_weights(self.cfg.OPTIM.MAX_EPOCH, src.GPA_MEAN, src.GPA_STD))

    def compute_loss(self, image, label):
        logits, losses = self.model.training_losses(image, label)
        loss = sum(losses.values())
        return loss, logits, {name: value.item() for name, value in losses.items()}

    # ------------------------------------------------------------------ GPA
    def after_epoch(self):
        """Add this epoch's prompts to the GPA sum; after the last epoch, put the aggregate into
        the prompt learner before the engine evaluates and saves it (the reference does this at
        the last batch of the last epoch, also before its checkpoint and final test)."""
        learner = self.model.prompt_learner
        self.gpa.add(self.epoch, dict(learner.named_parameters()))
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            aggregate = self.gpa.aggregate()
            with torch.no_grad():
                for name, param in learner.named_parameters():
                    param.copy_(aggregate[name])
            self.clear_eval_cache()
        super().after_epoch()

    def resume_state(self):
        state = super().resume_state()
        state["gpa"] = self.gpa.state_dict()
        return state

    def load_resume_state(self, state):
        super().load_resume_state(state)
        if "gpa" in state:
            self.gpa.load_state_dict(state["gpa"], device=self.device)

    # ------------------------------------------------------------------ reference checkpoints
    def find_model_file(self, directory, name, epoch=None):
        """A reference PromptSRC run's --output-dir holds VLPromptLearner/ instead of prompt_learner/."""
        reference_dir = os.path.join(directory, REFERENCE_MODEL_NAME)
        if not os.path.isdir(os.path.join(directory, name)) and os.path.isdir(reference_dir):
            name = REFERENCE_MODEL_NAME
        return super().find_model_file(directory, name, epoch)

    def read_checked_checkpoint(self, fpath, name, fix, skip=(), partial=False):
        """The engine's check, after turning a reference checkpoint (the whole CustomCLIP) into
        our prompt learner's state dict (reference_name)."""
        from dassl.engine.checkpoint import read_checkpoint

        checkpoint = read_checkpoint(fpath, fix)
        if is_reference_state_dict(checkpoint["state_dict"]):
            print(f"{fpath} is a reference PromptSRC checkpoint: loading its prompts")
            checkpoint["state_dict"] = learner_state_from_reference(checkpoint["state_dict"], self._models[name])
        self.check_checkpoint(fpath, checkpoint, name, fix, skip=skip, partial=partial)
        return checkpoint
