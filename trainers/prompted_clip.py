"""The model shells: a frozen CLIP with a prompt learner, as every method's CustomCLIP has.

- `PromptedCLIP`: the frozen encoders, the logit scale and the prompt learner (the only part
  trained and checkpointed); the method defines the forward.
- `ClassTextCLIP`: text features that depend on the class set only (CoOp, MaPLe, ProDA), so
  evaluation computes them once per class set.
- `DeepPromptedCLIP`: learned prompts inside both encoders (MaPLe, PromptSRC).
"""
from typing import Callable

import torch
import torch.nn as nn

from .clip_backbone import CLIP, l2_normalize
from .clip_encoders import TextEncoder, VisionEncoder


class PromptedCLIP(nn.Module):
    """A frozen CLIP with a prompt learner: the parts every method's CustomCLIP shares.

    Only `prompt_learner` is trained and checkpointed; the method defines the forward.
    """

    def __init__(self, prompt_learner: nn.Module, clip_model: CLIP):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.token_embedding = clip_model.token_embedding  # prompt pieces for new words (EMPL)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        # A trainer.feature_cache.ImageFeatureCache (MODEL.BACKBONE.CACHE_IMAGE_FEATURES); a
        # subclass whose encode_image uses the prompt learner (MaPLe) never reads it.
        self.image_feature_cache = None

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> normalised [B, D] of the frozen image encoder."""
        if self.image_feature_cache is not None:
            return self.image_feature_cache(image, self._encode_image)
        return self._encode_image(image)

    def _encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.image_encoder(image.type(self.dtype)))


class ClassTextCLIP(PromptedCLIP):
    """A PromptedCLIP whose text features depend on the class set only, not on the image (CoOp,
    MaPLe, ProDA): evaluation computes them once per class set (ClipPromptTrainer.model_inference).

    A subclass defines class_text_features() -> normalised [C, D] (or its own shape, with its own
    logits_from_features, as ProDA's K prompt sets).
    """

    def logits_from_features(self, image: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W], text_features [C, D] -> logits [B, C]."""
        return self.logit_scale.exp() * self.encode_image(image) @ text_features.t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(image, self.class_text_features())


class DeepPromptedCLIP(ClassTextCLIP):
    """A frozen ViT CLIP with learned prompts inside both encoders (MaPLe, PromptSRC).

    make_learner(vision_width, vision_layers) builds the prompt learner, which provides
    forward() (text prompt embeddings [C, 77, d]), tokenized_prompts, text_deep_prompts()
    ({text block: [M, d]}) and vision_prompts() ((first prompts [M_v, w] or None, {vision block:
    [M_v, w]})). The frozen image encoder without prompts stays PromptedCLIP.encode_image.
    """

    def __init__(self, make_learner: Callable[[int, int], nn.Module], clip_model: CLIP):
        vision_encoder = VisionEncoder(clip_model.visual)  # clear error for ResNet backbones
        super().__init__(make_learner(vision_encoder.width, vision_encoder.num_layers), clip_model)
        self.vision_encoder = vision_encoder

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> normalised [B, D], with the vision prompts."""
        prompts, deep_prompts = self.prompt_learner.vision_prompts()
        return l2_normalize(self.vision_encoder(image.type(self.dtype), prompts, deep_prompts))

    def class_text_features(self) -> torch.Tensor:
        """Normalised [C, D] text features with the shallow and deep text prompts."""
        learner = self.prompt_learner
        prompts = learner()
        tokenized = learner.tokenized_prompts.to(prompts.device)
        return l2_normalize(self.text_encoder(prompts, tokenized, deep_prompts=learner.text_deep_prompts()))
