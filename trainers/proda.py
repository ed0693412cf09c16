"""ProDA: Prompt Distribution Learning (Lu et al., CVPR 2022), as a baseline and as EMPL's host.

N learned prompts give N text features per class; the loss is ProDA's Gaussian upper bound of
the expected cross-entropy over their distribution plus a decorrelation term between the
prompts; inference uses the mean feature over all N prompts (docs/BASELINES.md, "ProDA"). Two
variants share this code:
- ProDA(x4), the key defaults and the EMPL paper's ProDA rows: 4 prompts, class name at the end,
  all prompts every step, the full covariance, cos^2 between the prompts' class features;
- ProDA as its paper describes it (configs/trainers/ProDA/vit_b16_ep50.yaml): 32 prompts, 4 drawn
  per step, class name in front (a quarter), in the middle (a quarter) or at the end (half),
  the per-dimension covariance and |cos| between the prompts without a class name, with the
  details its paper leaves open taken from CLIP_Calibration's reimplementation.
Keys: TRAINER.PRODA.N_PROMPTS, N_CTX, CTX_INIT, PREC, ORTHO_WEIGHT, PROMPT_BATCH,
CLASS_TOKEN_POSITION, COVARIANCE, ORTHO_LOSS.
"""
import functools
from contextlib import contextmanager
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from .class_prompts import ClassPromptLearner, ClassPrompts, init_context
from .clip_backbone import l2_normalize
from .errors import UserValueError
from .prompted_clip import ClassTextCLIP
from .multi_prompt_losses import (
    proda_diagonal_gaussian_bound_loss,
    proda_gaussian_bound_loss,
    prompt_context_decorrelation,
    prompt_orthogonality,
)
from .prompt_trainer import ClipPromptTrainer, register_trainer


def add_config(cfg):
    """TRAINER.PRODA: N prompts, Gaussian-bound loss (docs/BASELINES.md, "ProDA")."""
    # The defaults are "ProDA(x4)", the EMPL paper's ProDA rows; ProDA as its paper describes it
    # (32 prompts, 4 drawn per step, mixed class-name positions, per-dimension covariance,
    # decorrelated context-only prompts) is what configs/trainers/ProDA/vit_b16_ep50.yaml and the
    # other real-data ProDA configs select.
    cfg.TRAINER.PRODA = CN()
    cfg.TRAINER.PRODA.N_PROMPTS = 4  # N learned prompts, "ProDA(x4)"; the ProDA paper's 32
    cfg.TRAINER.PRODA.N_CTX = 16
    cfg.TRAINER.PRODA.CTX_INIT = ""
    cfg.TRAINER.PRODA.PREC = "fp16"
    cfg.TRAINER.PRODA.ORTHO_WEIGHT = 0.1  # weight of the decorrelation term (CLIP_Calibration's ALPHA)
    # Prompts drawn (without replacement, cycling through all N) per training step; 0 = all N.
    cfg.TRAINER.PRODA.PROMPT_BATCH = 0
    # Where each prompt puts the class name: end, middle, front (all prompts), or mix (the first
    # quarter front, the second quarter middle, the rest end, as ProDA).
    cfg.TRAINER.PRODA.CLASS_TOKEN_POSITION = "end"
    # The Gaussian bound's covariance across prompts: full (exact, 1/K) or diagonal (per feature
    # dimension, 1/(K+1), as CLIP_Calibration's ProDA).
    cfg.TRAINER.PRODA.COVARIANCE = "full"
    # The decorrelation term: class (mean cos^2 between the prompts' features of each class) or
    # context (mean |cos| between the features of the N prompts without a class name, as ProDA).
    cfg.TRAINER.PRODA.ORTHO_LOSS = "class"


CLASS_TOKEN_POSITIONS = ("end", "middle", "front", "mix")
COVARIANCES = ("full", "diagonal")
ORTHO_LOSSES = ("class", "context")
# The prompt draws' private generator is seeded at the training seed plus this (EMPL's generators use
# other offsets), so its stream differs from the global RNG's and from EMPL's.
PROMPT_DRAW_SEED_OFFSET = 3_000_017
# Without gradient (inference), more prompt x class sequences than this go through the text
# encoder in groups of whole prompts, to bound the peak memory (CLIP_Calibration's ProDA falls
# back to groups of 1000 when one pass fails). ProDA(x4) on 1000 classes stays one pass.
INFERENCE_TEXT_BATCH = 8192


def check_proda_cfg(proda) -> None:
    """Clear errors for TRAINER.PRODA values the code cannot run with."""
    if proda.N_PROMPTS < 1:
        raise UserValueError(f"TRAINER.PRODA.N_PROMPTS must be >= 1, got {proda.N_PROMPTS}")
    batch = proda.PROMPT_BATCH
    if batch < 0 or batch > proda.N_PROMPTS or (batch > 0 and proda.N_PROMPTS % batch):
        raise UserValueError(
            f"TRAINER.PRODA.PROMPT_BATCH must be 0 (all prompts every step) or divide N_PROMPTS "
            f"({proda.N_PROMPTS}): the prompts are drawn in batches of it, every prompt once per round; got {batch}"
        )
    if proda.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
        raise UserValueError(
            f"TRAINER.PRODA.CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}, "
            f"got {proda.CLASS_TOKEN_POSITION!r}")
    if proda.COVARIANCE not in COVARIANCES:
        raise UserValueError(f"TRAINER.PRODA.COVARIANCE must be one of {COVARIANCES}, got {proda.COVARIANCE!r}")
    if proda.ORTHO_LOSS not in ORTHO_LOSSES:
        raise UserValueError(f"TRAINER.PRODA.ORTHO_LOSS must be one of {ORTHO_LOSSES}, got {proda.ORTHO_LOSS!r}")


def prompt_positions(n_prompts: int, position: str) -> Tuple[str, ...]:
    """Where each of the n prompts puts the class name.

    mix: the first n // 4 front, the next n // 4 middle, the rest end, as CLIP_Calibration's
    ProDA assigns them (for n a multiple of 4; there, other n lose prompts, here the end gets
    the remainder; n = 1 is one end prompt in both).
    """
    if position != "mix":
        return (position,) * n_prompts
    quarter = n_prompts // 4
    return ("front",) * quarter + ("middle",) * quarter + ("end",) * (n_prompts - 2 * quarter)


@functools.lru_cache(maxsize=64)
def _class_token_order(position: str, n_ctx: int, name_lens: Tuple[int, ...], length: int, device: str) -> torch.Tensor:
    half = n_ctx // 2  # CoOp's halves of the context for the middle position
    rows = []
    for name_len in name_lens:
        sos, ctx = [0], list(range(1, 1 + n_ctx))
        name, rest = list(range(1 + n_ctx, 1 + n_ctx + name_len)), list(range(1 + n_ctx + name_len, length))
        if position == "front":
            rows.append(sos + name + ctx + rest)
        elif position == "middle":
            rows.append(sos + ctx[:half] + name + ctx[half:] + rest)
        else:
            rows.append(sos + ctx + name + rest)
    return torch.tensor(rows, dtype=torch.long, device=device)


def class_token_order(position: str, n_ctx: int, name_lens: Sequence[int], length: int,
                      device: torch.device) -> torch.Tensor:
    """Token order of the prompts with the class name at `position`, from the end-position ones.

    -> [P, length] long: prompt[p, j] = end_prompt[p, order[p, j]], where end_prompt is
    "SOS ctx_1..ctx_M name_1..name_L . EOS ..." (ClassPrompts.assemble's default). front: "SOS
    name ctx ."; middle: "SOS ctx_1..ctx_h name ctx_h+1..ctx_M ." with h = M // 2, CoOp's
    layouts. Tokens after the name stay where they are; `length` may be a cut sequence length
    as long as it holds every name (EMPL's hidden states are cut at the longest prompt).
    """
    return _class_token_order(position, n_ctx, tuple(name_lens), length, str(device))


def assemble_at(pieces: ClassPrompts, ctx: torch.Tensor, position: str) -> torch.Tensor:
    """Prompt embeddings [P, 77, d] of the classes of `pieces` with context ctx [M, d] and the
    class name at `position` (end, middle or front): CoOp's layouts, by one gather."""
    prompts = pieces.assemble(ctx)
    if position == "end":
        return prompts
    order = class_token_order(position, pieces.n_ctx, pieces.name_lens, prompts.shape[1], prompts.device)
    return prompts.gather(1, order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))


class PromptLearner(ClassPromptLearner):
    """ctx [N, M, d]: N prompts; positions[i]: where prompt i puts the class name.

    During a training step with PROMPT_BATCH, `drawn` holds the indices of the step's prompts
    and context_sets(), set_positions() and forward() cover only them (ProDA.prompt_batch).
    """

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        proda = cfg.TRAINER.PRODA
        if proda.N_PROMPTS < 1:
            raise UserValueError(f"TRAINER.PRODA.N_PROMPTS must be >= 1, got {proda.N_PROMPTS}")
        ctx, prompt_prefix = init_context(clip_model, proda.N_CTX, proda.CTX_INIT, n_sets=proda.N_PROMPTS)
        if proda.CTX_INIT:  # identical sets would have zero spread: perturb all but the first
            ctx[1:] += 0.02 * torch.randn_like(ctx[1:])
        print(f'Initial context: "{prompt_prefix}" x {proda.N_PROMPTS} prompt sets')
        self.ctx = nn.Parameter(ctx)
        self.init_classes(clip_model, classnames, prompt_prefix, ctx.shape[1])
        self.positions = prompt_positions(proda.N_PROMPTS, proda.CLASS_TOKEN_POSITION)
        if proda.ORTHO_LOSS == "context":
            # The prompt without a class name, "ctx_1 .. ctx_M .", whose features ProDA decorrelates.
            self.context_only = ClassPrompts(clip_model, [""], prompt_prefix, self.n_ctx)
        self.drawn: Optional[torch.Tensor] = None

    def context_sets(self) -> torch.Tensor:
        """The prompts in use: [K, M, d], the drawn ones during a training step, else all N."""
        return self.ctx if self.drawn is None else self.ctx[self.drawn]

    def set_positions(self) -> Tuple[str, ...]:
        """Where each prompt of context_sets() puts the class name."""
        if self.drawn is None:
            return self.positions
        return tuple(self.positions[i] for i in self.drawn.tolist())

    def forward(self, sets: slice = slice(None)):
        """Prompt embeddings of the prompts in use (those in `sets` of them) and every class:
        [K * C, 77, d], prompt-major."""
        return torch.cat([assemble_at(self.classes, ctx, position)
                          for ctx, position in zip(self.context_sets()[sets], self.set_positions()[sets])])


class CustomCLIP(ClassTextCLIP):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__(PromptLearner(cfg, classnames, clip_model), clip_model)

    def class_text_features(self):
        """Normalised [K, C, D]: every prompt's feature of every class (K: the prompts in use)."""
        learner = self.prompt_learner
        n_sets, n_cls = learner.context_sets().shape[0], learner.classes.n_cls
        # One pass in training; at inference with many prompts x classes (32 x 1000 on ImageNet),
        # whole prompts at a time.
        sets_per_pass = n_sets if torch.is_grad_enabled() else max(1, INFERENCE_TEXT_BATCH // n_cls)
        tokenized = learner.tokenized_prompts.to(learner.ctx.device).repeat(min(sets_per_pass, n_sets), 1)
        features = []
        for start in range(0, n_sets, sets_per_pass):
            prompts = learner(slice(start, start + sets_per_pass))
            features.append(self.text_encoder(prompts, tokenized[: prompts.shape[0]]))
        return l2_normalize(torch.cat(features)).view(n_sets, n_cls, -1)

    def context_only_features(self):
        """Normalised [N, D]: the features of all N prompts without a class name (ORTHO_LOSS context)."""
        learner = self.prompt_learner
        pieces = learner.context_only
        n_prompts = learner.ctx.shape[0]
        prompts = torch.cat([
            pieces.token_prefix.expand(n_prompts, -1, -1),
            learner.ctx.to(pieces.token_prefix.dtype),
            pieces.token_suffix.expand(n_prompts, -1, -1),
        ], dim=1)
        tokenized = pieces.tokenized_prompts.to(learner.ctx.device).repeat(n_prompts, 1)
        return l2_normalize(self.text_encoder(prompts, tokenized))

    def per_prompt_logits(self, image_features, text_features):
        """image_features [B, D], text_features [K, C, D] -> per-prompt logits [K, B, C]."""
        return self.logit_scale.exp() * torch.einsum("bd,kcd->kbc", image_features, text_features)

    def prompt_logits(self, image, text_features):
        """Per-prompt logits [K, B, C]."""
        return self.per_prompt_logits(self.encode_image(image), text_features)

    def logits_from_features(self, image, text_features):
        """Prediction with the mean text feature: tau z.mu_c = mean_k of the per-prompt logits."""
        return self.prompt_logits(image, text_features).mean(0)


class PromptBatchSampler:
    """Draws `batch` of the n prompts per training step, as CLIP_Calibration's ProDA does: the n
    prompts in a random order, taken `batch` at a time, then a new order, so every prompt is
    trained equally often. Its private generator keeps the data order independent of the draws
    (and of PROMPT_BATCH); its state goes into every checkpoint for an exact resume."""

    def __init__(self, n_prompts: int, batch: int, seed: int):
        self.n_prompts, self.batch = n_prompts, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.zeros(0, dtype=torch.long)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        """The next step's prompt indices, [batch] long, distinct, ascending."""
        if self.cursor >= len(self.order):
            self.order = torch.randperm(self.n_prompts, generator=self.generator)
            self.cursor = 0
        drawn = self.order[self.cursor : self.cursor + self.batch]
        self.cursor += self.batch
        return drawn.sort().values

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.cursor = state["order"].clone(), int(state["cursor"])


@register_trainer
class ProDA(ClipPromptTrainer):
    """Prompt Distribution Learning. https://arxiv.org/abs/2205.03340"""

    cfg_node = "PRODA"
    prompt_sampler: Optional[PromptBatchSampler] = None

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_proda_cfg(cfg.TRAINER.PRODA)

    def build_custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model)

    def build_model(self):
        super().build_model()
        proda = self.method_cfg
        if 0 < proda.PROMPT_BATCH < proda.N_PROMPTS:
            self.prompt_sampler = PromptBatchSampler(
                proda.N_PROMPTS, proda.PROMPT_BATCH, self.private_seed() + PROMPT_DRAW_SEED_OFFSET)
            print(f"ProDA: {proda.PROMPT_BATCH} of {proda.N_PROMPTS} prompts per training step")

    # ------------------------------------------------------------------ prompt mini-batch
    @contextmanager
    def prompt_batch(self):
        """Within it, the prompt learner uses this training step's prompts (PROMPT_BATCH of the
        N; all N when PROMPT_BATCH is 0): yields their indices, or None for all."""
        learner = self.model.prompt_learner
        if self.prompt_sampler is not None:
            learner.drawn = self.prompt_sampler.next().to(learner.ctx.device)
        try:
            yield learner.drawn
        finally:
            learner.drawn = None

    def forward_backward(self, batch):
        with self.prompt_batch():
            return super().forward_backward(batch)

    def resume_state(self) -> dict:
        parent = getattr(super(), "resume_state", None)  # absent in real Dassl
        state = dict(parent()) if parent else {}
        if self.prompt_sampler is not None:
            state["proda_prompt_sampler"] = self.prompt_sampler.state_dict()
        return state

    def load_resume_state(self, state: dict) -> None:
        parent = getattr(super(), "load_resume_state", None)
        if parent:
            parent(state)
        if self.prompt_sampler is not None and "proda_prompt_sampler" in state:
            self.prompt_sampler.load_state_dict(state["proda_prompt_sampler"])

    # ------------------------------------------------------------------ loss
    def decorrelation_loss(self, anchor_features) -> Optional[torch.Tensor]:
        """ORTHO_WEIGHT times the decorrelation term, or None when the weight is 0.

        ORTHO_LOSS class: mean cos^2 between the prompts' features of each class, anchor_features
        [K, C, D] (the prompts in use); context: mean |cos| between the features of all N prompts
        without a class name (anchor_features unused).
        """
        proda = self.method_cfg
        if proda.ORTHO_WEIGHT <= 0:
            return None
        if proda.ORTHO_LOSS == "context":
            return proda.ORTHO_WEIGHT * prompt_context_decorrelation(self.model.context_only_features())
        return proda.ORTHO_WEIGHT * prompt_orthogonality(anchor_features)

    def compute_loss(self, image, label):
        model = self.model
        text_features = model.class_text_features()  # [K, C, D]: this step's prompts
        image_features = model.encode_image(image)
        prompt_logits = model.per_prompt_logits(image_features, text_features)
        if self.method_cfg.COVARIANCE == "diagonal":
            loss = proda_diagonal_gaussian_bound_loss(text_features, image_features, label, model.logit_scale.exp())
        else:
            loss = proda_gaussian_bound_loss(prompt_logits, label)
        decorrelation = self.decorrelation_loss(text_features)
        if decorrelation is not None:
            loss = loss + decorrelation
        return loss, prompt_logits.mean(0)
