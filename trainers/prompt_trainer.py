"""What every CLIP prompt-learning trainer shares, once (CoOp's repo copies it per trainer).

A trainer subclasses `ClipPromptTrainer`, names its config node (`cfg_node = "COOP"`) and
implements `build_custom_clip(cfg, classnames, clip_model)` returning a module with a
`prompt_learner` submodule (the only trained part). It may override `compute_loss` (training
loss and logits of a batch, optionally a dict of further values to log) and `model_inference`.
"""
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, load_pretrained_weights

try:
    from dassl.utils import training_seed
except ImportError:  # real Dassl.pytorch (a CoOp checkout) has no TRAIN.SEED_OFFSET
    def training_seed(cfg) -> int:
        return cfg.SEED

from .clip_backbone import autocast_dtype, half_on_cpu, load_clip, resolve_precision, set_clip_precision
from .errors import UserValueError
from .feature_cache import image_feature_cache


@dataclass
class EvalCache:
    """What model_inference computes once per evaluation (ClipPromptTrainer.clear_eval_cache
    forgets it): the fields a trainer's inference needs, the others None."""

    # Normalised class text features the logits are taken against: [C, D] (CoOp, MaPLe), the
    # model's own shape (ProDA's K prompt sets), or EMPL's anchors' and samples' features
    # when they do not depend on the test image (INFERENCE anchor or amortized).
    text_features: Optional[torch.Tensor] = None
    # EMPL, INFERENCE sample / sample_batch: the text encoder's states where SGLD samples
    # (hidden [K, C, T, d], eot [C]), and the anchors' features [K, 1, C, D] that rank each
    # image's classes (None without TEST_TOP_K).
    prefix_states: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    anchor_features: Optional[torch.Tensor] = None


def declare_node(cfg, node: str, **defaults) -> None:
    """cfg.TRAINER.<node> with these defaults, unless the config declares it already (a CoOp or
    MaPLe checkout's own extend_cfg does: its declaration stands)."""
    if node not in cfg.TRAINER:
        cfg.TRAINER[node] = CN(defaults)


def register_trainer(cls):
    """TRAINER_REGISTRY.register(), except that a name already registered by another module
    keeps its class. Dropped into a CoOp checkout (README), our CoOp, CoCoOp and ZeroshotCLIP
    then leave the checkout's own trainers of those names in place instead of failing."""
    existing = TRAINER_REGISTRY._obj_map.get(cls.__name__)
    if existing is not None and existing.__module__ != cls.__module__:
        print(f"Note: trainer {cls.__name__} is already registered by {existing.__module__}; keeping it")
        return cls
    return TRAINER_REGISTRY.register(force=existing is not None)(cls)


# Buffers that depend on the current class names: saved with the prompt learner (as CoOp
# does) but never loaded back, so a model trained on base classes evaluates on new ones.
CLASS_DEPENDENT_BUFFERS = ("token_prefix", "token_suffix")
# Buffers whose size the training run sets (EMPL's amortized-mode calibration features).
RESIZABLE_BUFFERS = ("calibration_features",)


class ClipPromptTrainer(TrainerX):
    cfg_node: str = ""  # TRAINER.<cfg_node> holds PREC and the method's keys

    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.cfg_node]

    def check_cfg(self, cfg):
        prec = cfg.TRAINER[self.cfg_node].PREC
        if prec not in ("fp16", "fp32", "amp"):
            raise UserValueError(f"TRAINER.{self.cfg_node}.PREC must be fp16, fp32 or amp, got {prec!r}")

    def build_custom_clip(self, cfg, classnames, clip_model):
        raise NotImplementedError

    def private_seed(self) -> int:
        """The seed of a trainer's private generators (ProDA's prompt draws, EMPL's chains): the
        training seed (SEED + TRAIN.SEED_OFFSET), or torch's initial seed in an unseeded run."""
        seed = training_seed(self.cfg)
        return seed if seed >= 0 else torch.initial_seed() % 2**62

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames

        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip(cfg)
        if cfg.INPUT.SIZE[0] != clip_model.visual.input_resolution:
            raise UserValueError(
                f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the input resolution of "
                f"{cfg.MODEL.BACKBONE.NAME} ({clip_model.visual.input_resolution}): set INPUT.SIZE"
            )
        self.prec = resolve_precision(self.method_cfg.PREC, self.device, half_on_cpu(cfg))
        set_clip_precision(clip_model, self.prec)

        print("Building custom CLIP")
        self.model = self.build_custom_clip(cfg, classnames, clip_model)
        if cfg.MODEL.BACKBONE.get("CACHE_IMAGE_FEATURES", False):  # absent in a CoOp checkout's config
            self.model.image_feature_cache = image_feature_cache(cfg, clip_model, self.device, self.prec)

        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            param.requires_grad_("prompt_learner" in name)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model.prompt_learner, cfg.MODEL.INIT_WEIGHTS)

        self.model.to(self.device)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.prec == "amp" else None
        self._eval_cache: Optional[EvalCache] = None

    # ------------------------------------------------------------------ training
    def autocast(self):
        """PREC amp: autocast on the trainer's device (fp16; bfloat16 on a CPU without fp16
        autocast, clip_backbone.autocast_dtype). Other precisions: nothing."""
        if self.prec != "amp":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=autocast_dtype(self.device.type))

    def compute_loss(self, image, label):
        """(loss, logits) of a training batch; cross-entropy by default. An override may return
        (loss, logits, extras): extras, a dict of floats, are logged after loss and acc, in order."""
        output = self.model(image)
        return F.cross_entropy(output, label), output

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            loss, output, *extras = self.compute_loss(image, label)
        extras = extras[0] if extras else {}
        if self.scaler is not None:
            self.optim.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.model_backward_and_update(loss)

        summary = {"loss": loss.item()}
        if output is not None:
            summary["acc"] = compute_accuracy(output, label)[0].item()
        summary.update(extras)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def test(self, split=None):
        # Class text features do not depend on the test image for CoOp-like models: compute
        # them once per evaluation instead of once per batch (the reference recomputes them).
        self.clear_eval_cache()
        try:
            return super().test(split)
        finally:
            self.clear_eval_cache()

    def clear_eval_cache(self):
        """Forget what model_inference cached for the current evaluation (class text features,
        EMPL's prefix states): call it when prompts or class names change outside test()."""
        self._eval_cache = None

    # Analysis accessors (tools/modality_gap.py, tools/prompt_diversity.py): the embeddings
    # this trainer predicts with, so the tools never re-implement a method's text path.
    text_features_depend_on_images = False  # True where prompts are drawn per test batch

    @torch.no_grad()
    def inference_image_features(self, image):
        """Normalised image embeddings as used at inference: [B, 3, H, W] -> [B, D]."""
        with self.autocast():
            return self.model.encode_image(image.to(self.device)).float()

    @torch.no_grad()
    def inference_text_features(self, image_features=None):
        """Normalised class text features of every prompt the prediction uses: [S, C, D].

        S = 1 for CoOp, K for ProDA (its prediction uses their mean), 1 + N per anchor for
        EMPL. image_features [B, D] are the batch that conditions prompts drawn per test batch
        (`text_features_depend_on_images`); other trainers ignore them.
        """
        if not hasattr(self.model, "class_text_features"):
            raise NotImplementedError(
                f"{type(self).__name__} builds its text features per image; it has no class text features"
            )
        with self.autocast():
            features = self.model.class_text_features().float()
        return features.unsqueeze(0) if features.dim() == 2 else features

    def model_inference(self, image):
        model = self.model
        if hasattr(model, "class_text_features") and hasattr(model, "logits_from_features"):
            if self._eval_cache is None:
                with self.autocast():
                    self._eval_cache = EvalCache(text_features=model.class_text_features())
            with self.autocast():
                return model.logits_from_features(image, self._eval_cache.text_features)
        with self.autocast():
            return model(image)

    # ------------------------------------------------------------------ checkpoints
    # CoOp's load_model: the engine's (model-best.pth.tar or model.pth.tar-<epoch>, each file
    # checked first: a missing file lists the saved epochs, and an unreadable file, another
    # trainer's tensors, a learnable tensor of another shape (e.g. CSC's context for another
    # class count) or NaN/inf in one are one error line naming the file). The class-dependent
    # buffers are not loaded (a base-trained model evaluates on new classes), so the load is
    # partial, and the resizable buffers take the size they were saved with.
    load_model_skip = CLASS_DEPENDENT_BUFFERS + RESIZABLE_BUFFERS
    load_model_partial = True

    def load_model(self, directory, epoch=None):
        if hasattr(TrainerX, "load_model_state") or not directory:  # the bundled dassl: checks, then the hook below
            return super().load_model(directory, epoch)
        # Real Dassl.pytorch (a CoOp checkout): no hook there, and its load_model fails on the
        # val_result (None) of epoch checkpoints, so CoOp's trainers bring their own; this one too.
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = os.path.join(directory, name, model_file)
            if not os.path.exists(model_path):
                raise FileNotFoundError(f'Model not found at "{model_path}"')
            self.load_model_state(name, model_path, load_checkpoint(model_path))

    def load_model_state(self, name, model_path, checkpoint):
        state_dict = checkpoint["state_dict"]
        for key in [k for k in state_dict if k.split(".")[-1] in CLASS_DEPENDENT_BUFFERS]:
            del state_dict[key]
        model = self._models[name]
        for key in [k for k in state_dict if k.split(".")[-1] in RESIZABLE_BUFFERS]:
            # Saved with the size the training run gave it: take that size before loading.
            module_name, _, buffer_name = key.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            if hasattr(module, buffer_name):
                setattr(module, buffer_name, torch.empty_like(state_dict[key]))
        print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint.get("epoch")})')
        model.load_state_dict(state_dict, strict=False)
        self.clear_eval_cache()  # features cached from the previous weights are stale
