"""EMPL_ProDA: energy-based multi-prompt learning on ProDA's prompts (docs/EMPL.md).

The prompts in use are the anchors (N chains each): all of them with PROMPT_BATCH 0 (ProDA(x4)),
the step's drawn prompts during training otherwise, and all N at inference. ProDA's Gaussian
bound is taken from the logits (the full covariance; COVARIANCE diagonal is ProDA's own loss
only), over the anchors and their samples pooled (IN_LOSS mixture) or over each chain position's
K prompts, the anchors' being ProDA's own loss (per_prompt); the decorrelation term is ProDA's;
L_out uses the mean prompt's logits; the prediction uses the mean text feature.

Prompts with the class name in front or in the middle (CLASS_TOKEN_POSITION middle, front or
mix) have context states at block L - l that depend on the class. The chains then move every
class's context states by one shift shared by all classes, the anchor being the first class's
states: a chain state H stands for the states H_c + (H - H_0). For end prompts the states are the
same for every class and this is EMPL's replacement; ProDA(x4) runs EMPL's own code path.
Keys: TRAINER.PRODA.*, TRAINER.EMPL.*.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from . import proda
from .class_prompts import ClassPrompts
from .clip_backbone import l2_normalize
from .clip_encoders import LayerSplitText
from .empl import EMPLMixin
from .multi_prompt_losses import proda_gaussian_bound_loss
from .prompt_trainer import register_trainer


@dataclass
class ContextLayout:
    """What EMPL's split text encoder passes as `eot` for prompts with mixed class-name positions.

    eot [P]: EOT positions; order [K, P, T]: per prompt and sequence, the token order of its
    position from the end-position layout (proda.class_token_order) that the hidden states are
    kept in between prefix and features.
    """

    eot: torch.Tensor
    order: torch.Tensor


class PositionedLayerSplitText(LayerSplitText):
    """LayerSplitText for prompts whose class name may precede (part of) the context.

    prefix_states keeps the hidden states in the end-position layout (context at 1 .. M), so
    context_states() and the sampler see them as EMPL does; features() applies the shared shift
    to every class's context states and restores each prompt's own token order before the last
    l blocks. With a plain eot tensor it is LayerSplitText.
    """

    def features(self, hidden: torch.Tensor, eot, states: torch.Tensor) -> torch.Tensor:
        """hidden [A, P, T, d] (end layout; A = K prompts x G chain groups), eot a ContextLayout,
        states [A, S, M, d] -> normalised features [A, S, P, D]."""
        if not isinstance(eot, ContextLayout):
            return super().features(hidden, eot, states)
        groups, samples = states.shape[:2]
        n_seq, length, width = hidden.shape[1:]
        reference = self.context_states(hidden[:, :1]).float()  # [A, 1, M, d]: the anchor, the first class's states
        shift = states.float() - reference  # [A, S, M, d]
        ctx = self.context_states(hidden).float().unsqueeze(1) + shift.unsqueeze(2)  # [A, S, P, M, d]
        x = hidden.unsqueeze(1).expand(groups, samples, n_seq, length, width)
        x = torch.cat([x[..., :1, :], ctx.type(x.dtype), x[..., 1 + self.n_ctx :, :]], dim=-2)
        order = eot.order.repeat_interleave(groups // eot.order.shape[0], dim=0)  # [A, P, T]
        x = x.gather(3, order[:, None, :, :, None].expand(groups, samples, n_seq, length, width))
        x = self.encoder.run_blocks(x.reshape(-1, length, width), self.split)
        feats = self.encoder.final_features(x, eot.eot.repeat(groups * samples))
        return l2_normalize(feats).view(groups, samples, n_seq, -1)


@register_trainer
class EMPL_ProDA(EMPLMixin, proda.ProDA):
    """Energy-based Multi-prompt Learning with ProDA's prompts as anchors."""

    def build_empl(self) -> None:
        super().build_empl()
        text = self.split_text
        self.split_text = PositionedLayerSplitText(text.encoder, text.encoder.num_layers - text.split, text.n_ctx)
        if self.method_cfg.COVARIANCE == "diagonal":
            print("Note: EMPL_ProDA takes ProDA's Gaussian bound over the anchors and their samples from their "
                  "logits, with the full covariance; TRAINER.PRODA.COVARIANCE diagonal applies to ProDA alone")
        # PROMPT_BATCH with PERSISTENT chains: each prompt's chains continue where that prompt's
        # last ended (not where the previous step's prompts' did): offsets per prompt, [N, ...].
        self.prompt_chain_offsets: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self.prompt_chain_filled = torch.zeros(self.method_cfg.N_PROMPTS, dtype=torch.bool)

    def multi_prompt_loss(self, logits, labels, anchor_features):
        """logits [K, S, B, V] (anchors first along S) -> ProDA's bound plus its decorrelation term.

        IN_LOSS mixture: one bound over all K x S prompts pooled (the anchors' own mean need not
        classify: the samples' spread can carry it). per_prompt: the mean over s of the bound over
        the K prompts at chain position s, so s = 0 is ProDA's own loss on the anchors and each
        sample set must classify as a ProDA distribution too.
        """
        n_positions = logits.shape[1]
        if self.empl_cfg.IN_LOSS == "per_prompt":
            # [K, S x B, V]: each (position, image) pair is one of ProDA's images; the mean over
            # the S x B pairs is the mean over positions of each position's bound.
            loss = proda_gaussian_bound_loss(logits.flatten(1, 2), labels.repeat(n_positions))
        else:
            loss = proda_gaussian_bound_loss(logits.flatten(0, 1), labels)
        logits = logits.flatten(0, 1)
        decorrelation = self.decorrelation_loss(anchor_features)
        if decorrelation is not None:
            loss = loss + decorrelation
        return loss, logits.mean(0)

    def multi_prompt_prediction(self, logits):
        return logits.flatten(0, 1).mean(0)

    def prefix_states(self, pieces: List[ClassPrompts]):
        """EMPLMixin.prefix_states with each prompt's class-name position: -> (hidden [K, P, T, d]
        in the end-position layout, ContextLayout); EMPL's own when every prompt in use ends
        with the class name."""
        learner = self.model.prompt_learner
        positions = learner.set_positions()
        if all(position == "end" for position in positions):
            return super().prefix_states(pieces)
        ctx_sets = learner.context_sets()  # [K, M, d]
        prompts = torch.cat([torch.cat([proda.assemble_at(p, ctx, position) for p in pieces])
                             for ctx, position in zip(ctx_sets, positions)])
        tokenized = torch.cat([p.tokenized_prompts for p in pieces]).to(prompts.device)
        hidden, eot = self.split_text.prefix(prompts, tokenized.repeat(len(ctx_sets), 1), self.text_deep_prompts())
        hidden = hidden.view(len(ctx_sets), -1, *hidden.shape[1:])  # [K, P, T, d], each prompt's own layout
        name_lens = [n for p in pieces for n in p.name_lens]
        order = torch.stack([proda.class_token_order(position, learner.n_ctx, name_lens, hidden.shape[2], hidden.device)
                             for position in positions])  # [K, P, T]
        to_end_layout = order.argsort(dim=-1)
        hidden = hidden.gather(2, to_end_layout.unsqueeze(-1).expand_as(hidden))
        return hidden, ContextLayout(eot[: tokenized.shape[0]], order)

    # ------------------------------------------------------------------ per-prompt persistent chains
    def compute_loss(self, image, label):
        drawn = self.model.prompt_learner.drawn
        if drawn is None or not self.empl_cfg.PERSISTENT:
            return super().compute_loss(image, label)
        self.persistent_offsets = self._drawn_chain_offsets(drawn)
        try:
            return super().compute_loss(image, label)
        finally:
            self._store_chain_offsets(drawn)

    def _drawn_chain_offsets(self, drawn: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """The drawn prompts' last chain offsets, or None (fresh chains) while one has none yet."""
        if self.prompt_chain_offsets is None or not bool(self.prompt_chain_filled[drawn.cpu()].all()):
            return None
        return tuple(t[drawn] for t in self.prompt_chain_offsets)

    def _store_chain_offsets(self, drawn: torch.Tensor) -> None:
        offsets = self.persistent_offsets
        # Chains of CONDITION image are per prompt and image: not stored per prompt.
        if offsets is None or any(t is None for t in offsets) or offsets[0].shape[0] != len(drawn):
            return
        if self.prompt_chain_offsets is None:
            self.prompt_chain_offsets = tuple(
                t.new_zeros((self.method_cfg.N_PROMPTS,) + tuple(t.shape[1:])) for t in offsets)
        for store, new in zip(self.prompt_chain_offsets, offsets):
            store[drawn] = new.detach()
        self.prompt_chain_filled[drawn.cpu()] = True

    def resume_state(self) -> dict:
        state = super().resume_state()
        state["prompt_chain_offsets"] = self.prompt_chain_offsets
        state["prompt_chain_filled"] = self.prompt_chain_filled.clone()
        return state

    def load_resume_state(self, state: dict) -> None:
        super().load_resume_state(state)
        if state.get("prompt_chain_offsets") is not None:
            self.prompt_chain_offsets = tuple(t.to(self.device) for t in state["prompt_chain_offsets"])
            self.prompt_chain_filled = state["prompt_chain_filled"].clone()
