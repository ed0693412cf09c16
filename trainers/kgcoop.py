"""KgCoOp: Visual-Language Prompt Tuning with Knowledge-guided Context Optimization
(Yao et al., CVPR 2023; reference code: github.com/htyao89/KgCoOp, trainers/kgcoop.py).

CoOp's prompt learner, trained with cross-entropy plus a term that keeps the learned class
text features near the frozen CLIP's features of a hand-written prompt:

    loss = CE(logits, label) + W * (1 - mean_c cos(t_c, t_c^clip))

t_c: the normalised text feature of class c's learned prompt; t_c^clip: the frozen CLIP's
normalised feature of the dataset's hand-written template filled with class c ("a photo of a
{}, a type of pet." on OxfordPets). The paper writes the term as a mean squared Euclidean
distance; the code computes 1 - cos of the normalised features, which for unit vectors is
||t - t^clip||^2 / 2. We follow the code (and its W 8.0). Inference is CoOp's.

Keys: CoOp's TRAINER.COOP node (N_CTX, CSC, CTX_INIT, PREC, CLASS_TOKEN_POSITION) and
TRAINER.COOP.W, the weight of the knowledge-guided term, as in the reference.

Where the reference differs from a CoOp config, and how ours maps it:
- CTX_INIT: the reference's key is a bool, and True always means the words "a photo of a"
  (its PromptLearner hard-codes them; N_CTX is then their token count, 4). Our CTX_INIT is
  CoOp's string, so the reference's `CTX_INIT: True` is `CTX_INIT: "a photo of a"` here, and
  its False is "". With words, CSC is ignored (a shared context), in both.
- CLASS_TOKEN_POSITION: the reference always puts the class name at the end (it stores the
  key but its forward ignores it; every script of it passes "end"). Ours honours it as CoOp
  does (as the CLIP_Calibration reimplementation of KgCoOp does).
- The hand-written templates are CoOp's table (zsclip.CUSTOM_TEMPLATES) except
  DescribableTextures, where the reference uses "a photo of a {}, a type of texture." instead of
  CoOp's "{} texture.". A dataset that names its own template (zero_shot_template, the bundled
  benchmark's tasks) uses it; another dataset gets "a photo of a {}." (the reference fails).
- The frozen features come from the same frozen CLIP as the prompts, in the run's precision
  (PREC amp: under autocast, as the learned features). The reference loads a second copy of
  CLIP for them, which clip.build_model makes fp16, so they are fp16 whatever PREC is; under
  its default PREC fp16 the two are the same. The kg term itself is computed in fp32.
- PREC amp: the reference's amp branch passes the (logits, score) tuple to cross_entropy and
  fails; ours trains with the same loss as fp16/fp32.
- The reference's prompt learner also holds bias_vectors, a meta_net and (in CustomCLIP) an
  adapter that its forward never uses and its optimizer never moves (only parameters named
  "ctx" are trained); ours has ctx only. Its checkpoints load here (KgCoOp.check_checkpoint drops
  those keys; the token buffers are dropped as for every CoOp-like checkpoint).
"""
import torch
import torch.nn.functional as F

from . import coop
from .class_prompts import clean_classname
from .clip_backbone import l2_normalize, tokenize
from .errors import UserValueError
from .prompt_trainer import register_trainer
from .zsclip import CUSTOM_TEMPLATES, DEFAULT_TEMPLATE


def add_config(cfg):
    """TRAINER.COOP.W, KgCoOp's one key on top of CoOp's node (coop.add_config declares it first)."""
    # As in htyao89/KgCoOp: W, the weight of the knowledge-guided term (its train.py's default
    # 1.0; its base-to-new scripts pass 8.0). Declared only where absent, so a KgCoOp
    # checkout's own declaration stands.
    if "COOP" in cfg.TRAINER and "W" not in cfg.TRAINER.COOP:
        cfg.TRAINER.COOP.W = 1.0


# The reference's CUSTOM_TEMPLATES: CoOp's, but for DescribableTextures.
KGCOOP_TEMPLATES = {**CUSTOM_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."}


def kgcoop_template(dataset_name: str) -> str:
    return KGCOOP_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def knowledge_guided_distance(text_features: torch.Tensor, clip_text_features: torch.Tensor) -> torch.Tensor:
    """The reference's score: 1 - mean over classes of cos(learned, frozen), computed in fp32.

    text_features, clip_text_features: [C, D] (normalised) -> scalar.
    """
    cos = F.cosine_similarity(text_features.float(), clip_text_features.float(), dim=-1, eps=1e-7)
    return 1.0 - cos.mean()


class CustomCLIP(coop.CustomCLIP):
    """CoOp's model plus the frozen CLIP's features of the hand-written prompts.

    template: the hand-written prompt with "{}" for the class name.
    """

    def __init__(self, cfg, classnames, clip_model, template: str):
        super().__init__(cfg, classnames, clip_model)
        self.template = template
        self.template_tokens = tokenize([template.format(clean_classname(c)) for c in classnames])  # [C, 77]
        # [C, D], computed on first use, on the model's device (the trainer does it once the model
        # is there: a 1000-class encoding is slow on the CPU the model is built on). Never saved:
        # it depends on the class names.
        self.register_buffer("clip_text_features", None, persistent=False)

    @torch.no_grad()
    def frozen_text_features(self) -> torch.Tensor:
        """Normalised [C, D] features of the hand-written prompts by the frozen CLIP (= CLIP's
        encode_text, in the precision of the first call's context); computed once."""
        if self.clip_text_features is None:
            tokens = self.template_tokens.to(self.token_embedding.weight.device)
            embeddings = self.token_embedding(tokens).type(self.dtype)
            self.clip_text_features = l2_normalize(self.text_encoder(embeddings, tokens))
        return self.clip_text_features


@register_trainer
class KgCoOp(coop.CoOp):
    """Knowledge-guided Context Optimization (KgCoOp). https://arxiv.org/abs/2303.13283"""

    cfg_node = "COOP"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        weight = cfg.TRAINER.COOP.W
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise UserValueError(f"TRAINER.COOP.W (weight of KgCoOp's knowledge-guided term) must be >= 0, got {weight!r}")

    def template(self) -> str:
        """The dataset's hand-written prompt: its own (zero_shot_template), else the reference's table."""
        own = getattr(self.dm.dataset, "zero_shot_template", None)
        return own or kgcoop_template(self.cfg.DATASET.NAME)

    def build_model(self):
        super().build_model()
        # On the trainer's device, in the run's precision (PREC amp: under autocast, as the
        # learned prompts' features), before any training step.
        with self.autocast():
            self.model.frozen_text_features()

    def build_custom_clip(self, cfg, classnames, clip_model):
        template = self.template()
        print(f"KgCoOp's hand-written prompt: {template!r} (weight W = {cfg.TRAINER.COOP.W})")
        return CustomCLIP(cfg, classnames, clip_model, template)

    def check_checkpoint(self, fpath, checkpoint, name, fix, skip=(), partial=False):
        """The reference's checkpoints also hold its unused bias_vectors and meta_net.*: dropped
        here, before the bundled dassl's name and shape checks, so they load (ctx is all they
        trained). A CoOp checkout's Dassl has no such checks and loads them non-strictly."""
        state_dict = checkpoint["state_dict"]
        for key in [k for k in state_dict if k == "bias_vectors" or k.startswith("meta_net.")]:
            del state_dict[key]
        super().check_checkpoint(fpath, checkpoint, name, fix, skip=skip, partial=partial)

    def compute_loss(self, image, label):
        """CE + W * knowledge_guided_distance; logs both terms."""
        text_features = self.model.class_text_features()  # [C, D]
        logits = self.model.logits_from_features(image, text_features)  # [B, C]
        loss_ce = F.cross_entropy(logits, label)
        loss_kg = knowledge_guided_distance(text_features, self.model.frozen_text_features())
        loss = loss_ce + self.method_cfg.W * loss_kg
        return loss, logits, {"loss_ce": loss_ce.item(), "loss_kg": loss_kg.item()}
