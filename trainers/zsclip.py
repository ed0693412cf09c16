"""Zero-shot CLIP with CoOp's hand-written template per dataset (ZeroshotCLIP) or CLIP's
ImageNet template ensemble (ZeroshotCLIP2). Nothing is trained: use --eval-only."""
import torch

from dassl.engine import TrainerX

from .class_prompts import clean_classname
from .clip_backbone import half_on_cpu, l2_normalize, load_clip, resolve_precision, set_clip_precision, tokenize
from .feature_cache import image_feature_cache
from .imagenet_templates import IMAGENET_TEMPLATES_SELECT
from .prompt_trainer import register_trainer

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."  # datasets CoOp has no template for (e.g. the synthetic ones)


def dataset_template(dataset_name: str) -> str:
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@register_trainer
class ZeroshotCLIP(TrainerX):
    """CLIP with one template per dataset."""

    def templates(self):
        """CoOp's template of the dataset; a dataset class may name its own (zero_shot_template)."""
        own = getattr(self.dm.dataset, "zero_shot_template", None)
        return [own or dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        cfg = self.cfg
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip(cfg)
        # Zero-shot has no PREC key: half weights on GPU (as OpenAI ships them), fp32 on CPU
        # (half there too with MODEL.BACKBONE.HALF_ON_CPU).
        prec = resolve_precision("fp16", self.device, half_on_cpu(cfg))
        set_clip_precision(clip_model, prec).to(self.device)
        clip_model.requires_grad_(False)

        templates = self.templates()
        print(f"Prompt ensembling (n={len(templates)})" if len(templates) > 1 else f"Template: {templates[0]}")
        classnames = [clean_classname(c) for c in self.dm.dataset.classnames]
        mean_features = 0
        with torch.no_grad():
            for template in templates:
                tokens = tokenize([template.format(c) for c in classnames]).to(self.device)
                mean_features = mean_features + l2_normalize(clip_model.encode_text(tokens))
        self.text_features = l2_normalize(mean_features / len(templates))
        self.clip_model = clip_model
        self.image_feature_cache = None
        if cfg.MODEL.BACKBONE.get("CACHE_IMAGE_FEATURES", False):
            self.image_feature_cache = image_feature_cache(cfg, clip_model, self.device, prec)

    def model_inference(self, image):
        image_features = self.inference_image_features(image)
        return self.clip_model.logit_scale.exp() * image_features @ self.text_features.t()

    # The analysis accessors of ClipPromptTrainer (tools/modality_gap.py).
    text_features_depend_on_images = False

    @torch.no_grad()
    def inference_image_features(self, image):
        """Normalised image embeddings: [B, 3, H, W] -> [B, D]."""
        if self.image_feature_cache is not None:
            return self.image_feature_cache(image, self._encode_image)
        return self._encode_image(image)

    def _encode_image(self, image):
        return l2_normalize(self.clip_model.encode_image(image.type(self.clip_model.dtype)))

    def inference_text_features(self, image_features=None):
        """The (template-averaged) normalised class text features: [1, C, D]."""
        return self.text_features.unsqueeze(0)


@register_trainer
class ZeroshotCLIP2(ZeroshotCLIP):
    """CLIP's 7 selected ImageNet templates, plus the dataset's own template off ImageNet."""

    def templates(self):
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates
