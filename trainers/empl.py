"""EMPL's machinery, shared by EMPL_CoOp, EMPL_ProDA and EMPL_MaPLe (formulation: docs/EMPL.md).

The prompts SGLD samples are hidden states inside the text encoder (clip_encoders.LayerSplitText);
the keys are in empl_config.py.

- `EMPLMixin`: mixed into a prompt trainer (`class EMPL_X(EMPLMixin, X)`), it builds itself
  after the host's model, builds each training task (seen classes + unseen words), samples
  prompts, forms L_in + OPEN_LOSS_WEIGHT * L_out, and runs the three inference modes. How K prompt sets x
  S samples of logits become a loss and a prediction: `multi_prompt_loss` /
  `multi_prompt_prediction`, the mixture over all prompts by default (a host may override them).
"""
import hashlib
import os
import re
import warnings
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .class_prompts import ClassPrompts
from .clip_backbone import LOCAL_CLIP_VOCABULARIES
from .clip_encoders import LayerSplitText
from .empl_config import TRANSDUCTIVE_MODES, check_empl_cfg
from .errors import UserValueError
from .multi_prompt_losses import (free_energy, mixture_log_probs, mixture_nll, open_vocabulary_loss,
                                  per_prompt_cross_entropy)
from .open_vocab import OpenVocabulary
from .prompt_trainer import EvalCache, training_seed
from .sgld import SGLDResult, langevin_sample, sgld_options

# Private generators are seeded at the training seed (SEED + TRAIN.SEED_OFFSET) plus an offset,
# so their streams differ from the global RNG's (the data order) under the same seed.
SGLD_SEED_OFFSET = 1_000_003
EVAL_SEED_OFFSET = 2_000_003
# How far (rms, in units of rms(anchor)) chains went where SGLD_GRADIENT anchor was measured to
# give exact SGLD's accuracy on the bundled benchmark (0.64 r; at 1.15 r it did not): docs/EMPL.md.
LINEARISATION_CHECKED_DISTANCE = 0.75
# A share of rejected (non-finite) SGLD steps above which the sampler's settings are suspect.
REJECTED_WARNING_SHARE = 0.05


def feature_spread(features: torch.Tensor) -> Dict[str, float]:
    """How far the samples' class text features moved, in units of what separates two classes.

    features [K, S, C, D] (normalised; index 0 of S is the anchor, C >= 2 classes). Cosine
    distances: sample-anchor (same class, same prompt set), sample-sample (same class), and
    class-class between the anchors' features. Returns the two ratios and the class distance.
    """
    feats = features.float()
    anchors, samples = feats[:, :1], feats[:, 1:]  # [K, 1, C, D], [K, N, C, D]
    n_samples, n_cls = samples.shape[1], feats.shape[2]
    if n_samples == 0 or n_cls < 2:
        return {}
    to_anchor = (1 - (samples * anchors).sum(-1)).mean()
    class_cos = torch.einsum("kcd,ked->kce", anchors[:, 0], anchors[:, 0])
    off_diagonal = ~torch.eye(n_cls, dtype=torch.bool, device=feats.device)
    between_classes = (1 - class_cos[:, off_diagonal]).mean()
    out = {"sgld_class_distance": between_classes.item(),
           "sgld_shift_ratio": (to_anchor / between_classes).item()}
    if n_samples > 1:
        pair_cos = torch.einsum("kncd,kmcd->kcnm", samples, samples)
        pairs = ~torch.eye(n_samples, dtype=torch.bool, device=feats.device)
        out["sgld_spread_ratio"] = ((1 - pair_cos[..., pairs]).mean() / between_classes).item()
    return out


class EMPLMixin:
    """Energy-based multi-prompt learning on a host prompt trainer: `class EMPL_X(EMPLMixin, X)`.

    The host's model provides: prompt_learner.context_sets() -> [K, M, d] (K prompt sets),
    prompt_learner.classes (ClassPrompts of the training classes), prompt_learner.prompt_prefix,
    prompt_learner.n_ctx, text_encoder, token_embedding, dtype, logit_scale, encode_image(x).
    Optionally (MaPLe): prompt_learner.text_deep_prompts() -> {text block: [M, d]}, and
    trains_image_side = True when encode_image depends on the prompt learner (the image
    features then keep their gradient in the loss; the energy treats them as constants).
    The mixin builds itself after the host's build_model. multi_prompt_loss(logits [K, S, B, C],
    labels, anchor_features [K, C, D]) -> (loss, logits for accuracy) and
    multi_prompt_prediction(logits [K, S, B, C]) -> [B, C] default to the mixture over all K x S
    prompts (the NLL of their mean softmax); a host with its own multi-prompt loss overrides them.
    """

    trains_image_side = False
    sgld_generator: Optional[torch.Generator] = None  # build_empl sets the training chains' generator

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_empl_cfg(cfg.TRAINER.EMPL)

    def build_model(self):
        super().build_model()
        self.build_empl()

    def build_empl(self) -> None:
        """EMPL's own setup, on the host's built model (build_model calls it)."""
        empl = self.cfg.TRAINER.EMPL
        learner = self.model.prompt_learner
        deep_blocks = list(self.text_deep_prompts() or ())
        self.split_text = LayerSplitText(self.model.text_encoder, empl.SGLD_LAYERS, learner.n_ctx, deep_blocks)
        self.open_vocab = OpenVocabulary(
            self.vocabulary_exclusions(), empl.VOCAB_FILE, seed=max(training_seed(self.cfg), 0),
            default_words=LOCAL_CLIP_VOCABULARIES.get(self.cfg.MODEL.BACKBONE.NAME, ()))
        print(f"Open vocabulary: {len(self.open_vocab)} words without the {empl.VOCAB_EXCLUDE} class names, "
              f"{empl.N_UNSEEN} unseen words per batch")
        # SGLD noise comes from private generators, not torch's global RNG, so the batches and
        # augmentations a run sees do not depend on the EMPL settings (a sweep over N_CHAINS or
        # SGLD_STEPS compares runs on the same data), and an evaluation draws the same prompts
        # however often and whenever it runs (the evaluation generator restarts at each test()).
        self.sgld_seed = self.private_seed()
        self.sgld_generator = torch.Generator(device=self.device).manual_seed(self.sgld_seed + SGLD_SEED_OFFSET)
        self.eval_generator = torch.Generator(device=self.device)
        self.clear_eval_cache()
        self.warned_linearisation = False  # check_linearisation_range warns once per trainer
        self.sgld_steps_seen = [0, 0]  # [rejected, attempted] chain-steps, for check_rejected_steps
        self.warned_rejected = False
        # PERSISTENT: the training chains' last offsets from their anchors, in units of r
        # ([K, N, M, d]), and those of the prior-only chains beside them; the next training
        # step's chains start there, as replay buffers do in EBM training, so fewer SGLD_STEPS
        # per step can reach the same spread.
        self.persistent_offsets: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        if not hasattr(learner, "calibration_features"):  # amortized mode's condition (refresh_calibration)
            learner.register_buffer("calibration_features", torch.zeros(0))
        if empl.INFERENCE in TRANSDUCTIVE_MODES:
            # A prediction depends on its batch: never batches of one class (the loaders' order).
            print(f"TRAINER.EMPL.INFERENCE {empl.INFERENCE} is transductive: each prediction depends on the other "
                  "images of its test batch; the evaluation batches are drawn in a seeded random order")
            self.test_loader = self.seeded_order_loader(self.test_loader)
            if self.val_loader is not None:
                self.val_loader = self.seeded_order_loader(self.val_loader)

    def start_from_host_run(self, host_run: str) -> None:
        """Two-stage training (TRAINER.EMPL.HOST_RUN): load the prompt learner of a host training
        run's last epoch before EMPL's own training starts."""
        if host_run == "auto":
            raise UserValueError(
                "TRAINER.EMPL.HOST_RUN auto asks the protocol driver (tools/run_protocol.py, compare.py, "
                "scripts/quickstart.sh) to train the host first and pass its folder; with train.py alone, "
                "pass the --output-dir of the host's training run (or leave the key empty to start from CTX_INIT)"
            )
        name = self.get_model_names()[0]
        folder = os.path.join(host_run, name)
        files = os.listdir(folder) if os.path.isdir(folder) else []
        epochs = [int(m.group(1)) for m in map(re.compile(r"^model\.pth\.tar-(\d+)$").match, files) if m]
        if not epochs:
            raise FileNotFoundError(
                f"TRAINER.EMPL.HOST_RUN {host_run} holds no model.pth.tar-N under {name}/: it must be the "
                "--output-dir of a finished training run of the host (CoOp for EMPL_CoOp, ProDA for EMPL_ProDA, "
                "MaPLe for EMPL_MaPLe) with the same classes and prompt settings"
            )
        self.check_host_backbone(host_run)
        print(f"Two-stage training: starting from the host's run {host_run} (epoch {max(epochs)})")
        self._loading_host_run = True  # load_model's errors then say what to fix in HOST_RUN
        try:
            self.load_model(host_run, epoch=max(epochs))
        finally:
            self._loading_host_run = False

    def check_host_backbone(self, host_run: str) -> None:
        """A host run of another CLIP can have prompts of the same shape (RN50's and ViT-B/16's text
        width are both 512) and would load silently: compare the backbones its config.yaml names."""
        path = os.path.join(host_run, "config.yaml")
        if not os.path.isfile(path):
            return  # a run made elsewhere (real Dassl writes no config.yaml): the shapes are checked on loading
        import yaml

        with open(path, encoding="utf-8") as f:
            host_backbone = ((yaml.safe_load(f) or {}).get("MODEL") or {}).get("BACKBONE", {}).get("NAME")
        if host_backbone is not None and host_backbone != self.cfg.MODEL.BACKBONE.NAME:
            raise UserValueError(
                f"TRAINER.EMPL.HOST_RUN {host_run} was trained with MODEL.BACKBONE.NAME {host_backbone}, this run "
                f"uses {self.cfg.MODEL.BACKBONE.NAME}: train the host with the same CLIP (TRAINER.EMPL.HOST_CONFIG "
                "names the host's config that HOST_RUN auto trains)"
            )

    def model_dir_fix(self) -> str:
        if getattr(self, "_loading_host_run", False):
            return ("TRAINER.EMPL.HOST_RUN must be a training run of the host (CoOp for EMPL_CoOp, ProDA for "
                    "EMPL_ProDA, MaPLe for EMPL_MaPLe) with the same classes and prompt settings (N_CTX, CTX_INIT)")
        return super().model_dir_fix()

    def seeded_order_loader(self, loader):
        """The loader's items (this process's share of them) in an order drawn from the training seed."""
        from dassl.data.data_manager import loader_like

        indices = list(loader.sampler)
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(self.sgld_seed + EVAL_SEED_OFFSET))
        return loader_like(loader, sampler=[indices[i] for i in order.tolist()])

    def vocabulary_exclusions(self) -> List[str]:
        """The class names the open vocabulary leaves out (TRAINER.EMPL.VOCAB_EXCLUDE)."""
        dataset = self.dm.dataset
        if self.empl_cfg.VOCAB_EXCLUDE == "training":
            return list(dataset.classnames)
        every = getattr(dataset, "all_classnames", None)
        if every is None:
            raise UserValueError(
                f"TRAINER.EMPL.VOCAB_EXCLUDE dataset removes every class of the dataset from the open vocabulary, "
                f"but {type(dataset).__name__} does not list them (this repository's datasets record all_classnames): "
                "add it to the dataset, or use VOCAB_EXCLUDE training"
            )
        return list(every)

    # ------------------------------------------------------------------ resume
    def resume_state(self) -> dict:
        """The open vocabulary's private RNG (and the SGLD generator when one is set) go into
        every checkpoint, so a resumed run draws the same unseen words as an uninterrupted one."""
        parent = getattr(super(), "resume_state", None)
        state = dict(parent()) if parent else {}
        state["open_vocab"] = self.open_vocab.state_dict()
        state["persistent_offsets"] = self.persistent_offsets
        if self.sgld_generator is not None:
            state["sgld_generator"] = self.sgld_generator.get_state()
        return state

    def load_resume_state(self, state: dict) -> None:
        parent = getattr(super(), "load_resume_state", None)
        if parent:
            parent(state)
        if "open_vocab" in state:
            self.open_vocab.load_state_dict(state["open_vocab"])
        if state.get("persistent_offsets") is not None:
            self.persistent_offsets = tuple(t.to(self.device) for t in state["persistent_offsets"])
        if "sgld_generator" in state and self.sgld_generator is not None:
            self.sgld_generator.set_state(state["sgld_generator"])

    def clear_eval_cache(self):
        """Also restart the evaluation's SGLD noise: every evaluation draws the same prompts."""
        super().clear_eval_cache()
        if getattr(self, "eval_generator", None) is not None:
            self.eval_generator.manual_seed(self.sgld_seed + EVAL_SEED_OFFSET)

    # ------------------------------------------------------------------ building blocks
    @property
    def empl_cfg(self):
        return self.cfg.TRAINER.EMPL

    def multi_prompt_loss(self, logits, labels, anchor_features):
        """L_in over all prompts, logits [K, S, B, V] -> (loss, the mixture's log-probabilities
        [B, V] for the accuracy). IN_LOSS mixture: the NLL of the mean softmax (the anchor may
        leave the classifying to its samples); per_prompt: the mean of every prompt's own
        cross-entropy (the anchor and each sample must classify)."""
        logits = logits.flatten(0, 1)
        if self.empl_cfg.IN_LOSS == "per_prompt":
            return per_prompt_cross_entropy(logits, labels), mixture_log_probs(logits)
        return mixture_nll(logits, labels), mixture_log_probs(logits)

    def multi_prompt_prediction(self, logits):
        """logits [K, S, B, C] -> the mixture's log-probabilities [B, C]."""
        return mixture_log_probs(logits.flatten(0, 1))

    def sample_prompts(
        self, anchor: torch.Tensor, energy_fn, generator=None, n_steps: Optional[int] = None, **options,
    ) -> SGLDResult:
        """langevin_sample with the TRAINER.EMPL settings (sgld_options). Chains draw their noise
        from `generator` (one, or one per anchor), else from the training generator; n_steps
        replaces SGLD_STEPS (evaluation: TEST_SGLD_STEPS). options: langevin_sample's per-call
        keywords (compute_energy_after, compare_prior_only, init_offset, reference_init_offset,
        keep_reference)."""
        settings = sgld_options(self.empl_cfg)
        if n_steps is not None:
            settings["n_steps"] = n_steps
        result = langevin_sample(
            anchor, energy_fn, **settings,
            generator=generator if generator is not None else self.sgld_generator, **options,
        )
        self.check_rejected_steps(result)
        return result

    def check_rejected_steps(self, result: SGLDResult) -> None:
        """Warn once when more than REJECTED_WARNING_SHARE of the chain-steps so far were rejected
        (a non-finite state): those chains stood still, and the samples are not what the
        settings describe."""
        seen = self.sgld_steps_seen
        seen[0] += result.rejected_steps
        seen[1] += result.total_steps
        if self.warned_rejected or seen[1] == 0 or seen[0] <= REJECTED_WARNING_SHARE * seen[1]:
            return
        self.warned_rejected = True
        warnings.warn(
            f"{seen[0]} of {seen[1]} SGLD chain-steps were rejected for non-finite values ({100 * seen[0] / seen[1]:.0f}%): "
            "those chains did not move. Lower TRAINER.EMPL.SGLD_STEP_SIZE or PRIOR_STD, raise ENERGY_TEMP, or use PREC fp32."
        )

    def text_deep_prompts(self) -> Optional[Dict[int, torch.Tensor]]:
        """The host's deep text prompts {block: [M, d]}, or None."""
        learner = self.model.prompt_learner
        return learner.text_deep_prompts() if hasattr(learner, "text_deep_prompts") else None

    def word_prompts(self, words: Sequence[str]) -> ClassPrompts:
        """Prompt pieces "ctx <word>." for unseen words, on the model's device."""
        learner = self.model.prompt_learner
        pieces = ClassPrompts(self.model, words, learner.prompt_prefix, learner.n_ctx)
        return pieces.to(learner.classes.token_prefix.device)

    def prefix_states(self, pieces: List[ClassPrompts]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hidden states at block L - l of every prompt set on the classes of `pieces`.

        -> (hidden [K, P, T, d] with P = total classes, eot [P]). Gradient flows to the context.
        """
        ctx_sets = self.model.prompt_learner.context_sets()  # [K, M, d]
        prompts = torch.cat([torch.cat([p.assemble(ctx) for p in pieces]) for ctx in ctx_sets])
        tokenized = torch.cat([p.tokenized_prompts for p in pieces]).to(prompts.device)
        hidden, eot = self.split_text.prefix(prompts, tokenized.repeat(len(ctx_sets), 1), self.text_deep_prompts())
        return hidden.view(len(ctx_sets), -1, *hidden.shape[1:]), eot[: tokenized.shape[0]]

    def image_logits(self, image_features: torch.Tensor, text_features: torch.Tensor, per_image: bool) -> torch.Tensor:
        """image_features [B, D]; text_features [K, S, P, D] (shared by the batch) or
        [K, B, S, P, D] (per image) -> logits [K, S, B, P]."""
        tau = self.model.logit_scale.exp()
        if per_image:
            return tau * torch.einsum("kbspd,bd->ksbp", text_features, image_features)
        return tau * torch.einsum("kspd,bd->ksbp", text_features, image_features)

    def sampled_features(
        self, hidden: torch.Tensor, eot: torch.Tensor, image_features: Optional[torch.Tensor],
        sample: bool = True, condition: Optional[str] = None, generator=None,
        diagnose: bool = False, persistent: bool = False, n_steps: Optional[int] = None,
        class_index: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, bool, Optional[SGLDResult]]:
        """Text features of the anchors and their SGLD samples on the classes of `hidden`.

        hidden [K, P, T, d]; image_features [B, D] condition the energy.
        -> (features [K, S, P, D] or, conditioned per image, [K, B, S, P, D]; per_image flag;
        the sampler's result). S = 1 + N_CHAINS (anchor first); S = 1 without sampling.
        condition: "batch" (one set of chains for the whole batch) or "image" (chains per image);
        default CONDITION (training). generator: the chains' noise, one or (per image) a list of
        B (default: the training generator). n_steps: replaces SGLD_STEPS.
        class_index [B, k] (per image): each image's chains and features cover only these k of
        the P classes (TEST_TOP_K); the features are then [K, B, S, k, D].
        diagnose: also measure the energies and the prior-only comparison (SGLDResult).
        persistent: start the chains where the previous persistent call's ended (PERSISTENT).
        """
        empl = self.empl_cfg
        anchors = self.split_text.context_states(hidden[:, 0])  # [K, M, d]: class-independent
        per_image = (condition or empl.CONDITION) == "image" and sample and empl.N_CHAINS > 0
        if not sample or empl.N_CHAINS == 0:
            feats = self.split_text.features(hidden, eot, anchors.unsqueeze(1))  # [K, 1, P, D]
            if class_index is None:
                return feats, False, None
            # No chains, but the caller ranks each image's k classes: the anchors' features on
            # them, in the per-image layout [K, B, 1, k, D].
            return feats[:, 0][:, class_index].unsqueeze(2), True, None

        n_sets, batch = anchors.shape[0], image_features.shape[0]
        groups = batch if per_image else 1
        # Chain groups: every prompt set (x every image with CONDITION image), k-major.
        group_hidden = hidden.repeat_interleave(groups, dim=0) if per_image else hidden
        if class_index is not None:  # per image, its own classes
            if not per_image or not torch.is_tensor(eot):
                raise UserValueError("TRAINER.EMPL.TEST_TOP_K needs per-image sampling of prompts with the class name at the end")
            group_hidden = hidden[:, class_index].flatten(0, 1)  # [K*B, k, T, d]
            eot = eot[class_index].repeat(n_sets, 1)  # [K*B, k]
        # The energy is a function of H alone: the images are constants in it.
        group_images = image_features.unsqueeze(1) if per_image else image_features.unsqueeze(0)
        group_images = group_images.detach()  # [G, B', D]
        frozen_hidden = group_hidden.detach()
        tau = self.model.logit_scale.exp().detach()

        def energy(states):  # states [K*G, N, M, d] -> data energy [K*G, N]
            feats = self.split_text.features(frozen_hidden, eot, states)  # [K*G, N, P, D]
            images = group_images.repeat(n_sets, 1, 1)  # [K*G, B', D]
            logits = tau * torch.einsum("anpd,abd->anbp", feats, images)
            return free_energy(logits, empl.ENERGY_TEMP)

        group_anchors = anchors.repeat_interleave(groups, dim=0)
        init = reference_init = None
        if persistent:
            # Persistent prior-only chains run beside them on the same noise (a cheap prior step),
            # so the diagnostics compare chains with the same history.
            chains = (group_anchors.shape[0], empl.N_CHAINS) + tuple(group_anchors.shape[1:])
            previous = self.persistent_offsets
            if previous is not None and tuple(previous[0].shape) == chains:
                init, reference_init = previous
        if isinstance(generator, (list, tuple)):  # one per image: the chain groups are k-major
            generator = list(generator) * n_sets
        result = self.sample_prompts(group_anchors, energy, generator=generator, n_steps=n_steps,
                                     compute_energy_after=diagnose, compare_prior_only=diagnose, init_offset=init,
                                     reference_init_offset=reference_init, keep_reference=persistent)
        if persistent:
            self.persistent_offsets = (result.offsets, result.reference_offsets)
        # Samples stay fp32 (the chains' precision); features() casts them to the model's dtype.
        states = torch.cat([group_anchors.unsqueeze(1).float(), result.samples], dim=1)
        feats = self.split_text.features(group_hidden, eot, states)  # [K*G, S, P, D]
        if per_image:
            feats = feats.view(n_sets, groups, *feats.shape[1:])
        return feats, per_image, result

    # ------------------------------------------------------------------ training
    def compute_loss(self, image, label):
        """L = L_in + OPEN_LOSS_WEIGHT * L_out on one task: seen classes V and N_UNSEEN unseen words.

        -> (loss, logits, extras): extras are the logged values, loss_in and loss_out, and on
        PRINT_FREQ batches the SGLD diagnostics (sgld_*), in the order the training line prints them."""
        empl = self.empl_cfg
        with nullcontext() if self.trains_image_side else torch.no_grad():
            image_features = self.model.encode_image(image)
        seen = self.model.prompt_learner.classes
        pieces = [seen]
        if empl.N_UNSEEN > 0 and (empl.OPEN_LOSS_WEIGHT > 0 or empl.OPEN_LOSS != "none"):
            pieces.append(self.word_prompts(self.open_vocab.draw(empl.N_UNSEEN)))
        hidden, eot = self.prefix_states(pieces)
        diagnose = getattr(self, "batch_idx", 0) % self.cfg.TRAIN.PRINT_FREQ == 0
        feats, per_image, result = self.sampled_features(hidden, eot, image_features, diagnose=diagnose,
                                                         persistent=empl.PERSISTENT)
        logits = self.image_logits(image_features, feats, per_image)  # [K, S, B, V+U]
        n_seen = seen.n_cls
        anchor_features = (feats[:, 0, 0] if per_image else feats[:, 0])[:, :n_seen]  # [K, V, D]
        loss_in, output = self.multi_prompt_loss(logits[..., :n_seen], label, anchor_features)
        loss_out = logits.new_zeros(())
        if len(pieces) > 1 and empl.OPEN_LOSS_WEIGHT > 0:
            anchor_logits = logits[:, 0].mean(0)  # the mean prompt's logits, [B, V+U]
            loss_out = open_vocabulary_loss(anchor_logits[:, :n_seen], anchor_logits[:, n_seen:], empl.OPEN_LOSS)
        extras = {"loss_in": loss_in.item(), "loss_out": loss_out.item()}
        if result is not None:
            if diagnose:
                extras.update(result.as_dict(prefix="sgld_"))
                seen_feats = feats[:, 0] if per_image else feats  # [K, S, P, D]
                extras.update(feature_spread(seen_feats[:, :, :n_seen].detach()))
            self.check_linearisation_range(result)
        return loss_in + empl.OPEN_LOSS_WEIGHT * loss_out, output, extras

    def check_linearisation_range(self, result: SGLDResult) -> None:
        """Warn once when SGLD_GRADIENT anchor runs chains farther from the anchor than where
        it was measured to match exact SGLD (docs/EMPL.md, "Speed and accuracy of the two")."""
        if self.empl_cfg.SGLD_GRADIENT != "anchor" or self.warned_linearisation:
            return
        if result.distance_to_anchor > LINEARISATION_CHECKED_DISTANCE:
            self.warned_linearisation = True
            warnings.warn(
                f"TRAINER.EMPL.SGLD_GRADIENT anchor linearises the energy at the anchor, but the chains end "
                f"{result.distance_to_anchor:.2f} r from it; it was checked against exact SGLD up to "
                f"{LINEARISATION_CHECKED_DISTANCE} r. Use SGLD_GRADIENT exact, or a smaller SGLD_STEP_SIZE / PRIOR_STD."
            )

    # ------------------------------------------------------------------ inference
    def refresh_calibration(self) -> None:
        """Store amortized mode's condition with the model: the image features of one batch of
        the training run's own data, drawn under a forked CPU RNG seeded from the training seed (the same
        batch every time; the run's data order is left as it was).

        It is a buffer of the prompt learner, so it goes into every checkpoint: an evaluation run
        (a base-to-new test on the new classes, a cross-dataset target) conditions on the data
        the prompts were trained on, never on the evaluation task's training images.

        With persistent DataLoader workers the batch is read in this process by a one-off loader:
        iter() on the training loader itself would restart the iterator its workers keep, and
        with it an epoch that a mid-epoch checkpoint (TRAIN.CHECKPOINT_ITERS) interrupts."""
        loader = self.train_loader_x
        if getattr(loader, "persistent_workers", False):
            from dassl.data.data_manager import loader_like

            loader = loader_like(loader, num_workers=0)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(self.sgld_seed + EVAL_SEED_OFFSET)
            batch = next(iter(loader))
        with torch.no_grad(), self.autocast():
            features = self.model.encode_image(batch["img"].to(self.device)).float()
        self.model.prompt_learner.calibration_features = features

    def calibration_features(self) -> torch.Tensor:
        """Amortized mode's condition [B, D], saved by the training run (refresh_calibration)."""
        features = self.model.prompt_learner.calibration_features
        if features.numel() == 0:
            raise UserValueError(
                "TRAINER.EMPL.INFERENCE amortized conditions on training images saved with the checkpoint, and "
                "this model has none (a checkpoint from before they were saved, or no --model-dir): retrain it, "
                "or evaluate with TRAINER.EMPL.INFERENCE sample or anchor"
            )
        return features.to(self.device)

    def before_train(self):
        if self.empl_cfg.HOST_RUN:  # training only: an evaluation loads the EMPL run itself
            self.start_from_host_run(self.empl_cfg.HOST_RUN)  # a resume then loads its own checkpoint over it
        self.refresh_calibration()  # before a resume loads the saved one, so the sizes match
        super().before_train()

    def save_model(self, *args, **kwargs):
        # Image features can depend on the prompts (MaPLe): store those of the saved weights.
        self.refresh_calibration()
        super().save_model(*args, **kwargs)

    def model_inference(self, image):
        with self.autocast():
            return self._empl_inference(image)

    @property
    def text_features_depend_on_images(self):
        return self.empl_cfg.INFERENCE in ("sample", "sample_batch")

    def test_sgld_steps(self) -> int:
        """SGLD steps at evaluation: TEST_SGLD_STEPS, or SGLD_STEPS when it is negative."""
        steps = self.empl_cfg.TEST_SGLD_STEPS
        return self.empl_cfg.SGLD_STEPS if steps < 0 else steps

    def anchor_features(self, hidden, eot) -> Optional[torch.Tensor]:
        """The anchors' class text features [K, 1, C, D] when TEST_TOP_K needs them to rank each
        image's classes (once per evaluation; per-image sampling only), else None."""
        top_k = self.empl_cfg.TEST_TOP_K
        if self.empl_cfg.INFERENCE != "sample" or top_k <= 0 or top_k >= hidden.shape[1]:
            return None
        anchors = self.split_text.context_states(hidden[:, 0]).unsqueeze(1)  # [K, 1, M, d]
        return self.split_text.features(hidden, eot, anchors)

    def top_classes(self, anchor_feats: Optional[torch.Tensor], image_features) -> Optional[torch.Tensor]:
        """Each image's TEST_TOP_K classes by the anchors' mean logits, [B, k]; None for all."""
        if anchor_feats is None:
            return None
        logits = self.image_logits(image_features, anchor_feats, False)  # [K, 1, B, C]
        return logits.mean((0, 1)).topk(self.empl_cfg.TEST_TOP_K, dim=-1).indices

    def image_generators(self, image: torch.Tensor) -> List[torch.Generator]:
        """One generator per image, seeded from its pixels and the run's seed: an image's chains
        draw the same noise whichever images share its batch and wherever it sits in the test
        order (INFERENCE sample)."""
        from .feature_cache import ImageFeatureCache

        seed = (self.sgld_seed + EVAL_SEED_OFFSET).to_bytes(16, "little", signed=True)
        generators = []
        for key in ImageFeatureCache.image_keys(image):
            digest = hashlib.blake2b(key + seed, digest_size=8).digest()
            generators.append(torch.Generator(device=self.device).manual_seed(int.from_bytes(digest, "little") >> 1))
        return generators

    @torch.no_grad()
    def inference_text_features(self, image_features=None):
        """Normalised class text features of the anchors and their samples under
        TRAINER.EMPL.INFERENCE, for the analyses: [K * S, C, D] (S = 1 + N_CHAINS; S = 1 in
        anchor mode).

        sample, sample_batch: SGLD conditioned on image_features [B, D] as one batch (per-image
        chains would give a feature set per image); amortized: on the calibration batch, as
        model_inference does; anchor: no sampling.
        """
        mode = self.empl_cfg.INFERENCE
        if mode in ("sample", "sample_batch") and image_features is None:
            raise ValueError(f"TRAINER.EMPL.INFERENCE {mode} draws prompts per test image or batch: pass image_features")
        with self.autocast():
            hidden, eot = self.prefix_states([self.model.prompt_learner.classes])
            if mode == "amortized":
                image_features = self.calibration_features()
            feats, _, _ = self.sampled_features(
                hidden, eot, image_features, sample=mode != "anchor", condition="batch",
                generator=self.eval_generator, n_steps=self.test_sgld_steps(),
            )
        return feats.flatten(0, 1).float()

    def _empl_inference(self, image):
        mode = self.empl_cfg.INFERENCE
        image_features = self.model.encode_image(image)
        if self._eval_cache is None:
            hidden, eot = self.prefix_states([self.model.prompt_learner.classes])
            if mode in ("sample", "sample_batch"):
                self._eval_cache = EvalCache(prefix_states=(hidden, eot),
                                             anchor_features=self.anchor_features(hidden, eot))
            else:  # anchor or amortized: the text features of the whole evaluation, once
                calibration = self.calibration_features() if mode == "amortized" else None
                feats, _, _ = self.sampled_features(
                    hidden, eot, calibration, sample=mode == "amortized", condition="batch",
                    generator=self.eval_generator, n_steps=self.test_sgld_steps(),
                )
                self._eval_cache = EvalCache(text_features=feats)
        if mode == "sample":
            hidden, eot = self._eval_cache.prefix_states
            index = self.top_classes(self._eval_cache.anchor_features, image_features)
            feats, per_image, _ = self.sampled_features(hidden, eot, image_features, condition="image",
                                                        generator=self.image_generators(image),
                                                        n_steps=self.test_sgld_steps(), class_index=index)
            if index is not None:  # the samples re-rank each image's top classes; the rest stay below
                top = self.multi_prompt_prediction(self.image_logits(image_features, feats, per_image))  # [B, k]
                full = torch.full((len(image), hidden.shape[1]), torch.finfo(top.dtype).min, device=top.device,
                                  dtype=top.dtype)
                return full.scatter(1, index, top)
        elif mode == "sample_batch":
            hidden, eot = self._eval_cache.prefix_states
            feats, per_image, _ = self.sampled_features(hidden, eot, image_features, condition="batch",
                                                        generator=self.eval_generator, n_steps=self.test_sgld_steps())
        else:
            feats, per_image = self._eval_cache.text_features, False
        return self.multi_prompt_prediction(self.image_logits(image_features, feats, per_image))
