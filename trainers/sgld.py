"""Stochastic gradient Langevin dynamics over prompt embeddings (EMPL's sampler).

The sampler knows nothing of CoOp, ProDA or MaPLe: it takes anchor prompt embeddings, an
energy callable and the TRAINER.EMPL config node, and returns samples plus diagnostics.
Formulation: docs/EMPL.md ("Sampling"), summarised:

    r = rms(anchor)                                   (constant, no gradient)
    H_0 = anchor + INIT_STD * r * eps
    H_{t+1} = H_t - (alpha / 2) * r^2 * grad E(H_t) + NOISE_STD * sqrt(alpha) * r * eps_t
    E(H) = energy_fn(H) + ||H - anchor||^2 / (2 sigma^2),   sigma = PRIOR_STD * r

i.e. Langevin dynamics in units of r, so SGLD_STEP_SIZE (alpha) means the same thing at every
text layer and for every CLIP. A step that gives a non-finite chain state is rejected for that
chain (it keeps H_t) and counted.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

# energy_fn(H) -> per-chain data energy. H: [n_anchors, n_chains, *prompt_shape]; returns
# [n_anchors, n_chains].
EnergyFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SGLDResult:
    """Samples and what the chains did.

    samples: [n_anchors, n_chains, *prompt_shape]. With backprop "detach" they equal
        anchor + stopgrad(H_T - anchor): gradient reaches the anchor, never the chain.
    The scalar diagnostics are plain floats so they can go straight into logs.
    """

    samples: torch.Tensor
    energy_before: float  # mean total energy of H_0
    energy_after: float  # mean total energy of H_T (nan when not computed)
    distance_to_anchor: float  # mean rms(H_T - anchor) / r
    diversity: float  # mean pairwise rms(H_i - H_j) / r between chains of one anchor
    rejected_steps: int  # chain-steps rejected for non-finite values
    total_steps: int  # chain-steps attempted

    @property
    def acceptance(self) -> float:
        return 1.0 - self.rejected_steps / max(self.total_steps, 1)

    def as_dict(self, prefix: str = "sgld/") -> dict:
        return {
            f"{prefix}energy_before": self.energy_before,
            f"{prefix}energy_after": self.energy_after,
            f"{prefix}distance_to_anchor": self.distance_to_anchor,
            f"{prefix}diversity": self.diversity,
            f"{prefix}rejected_steps": float(self.rejected_steps),
        }


def rms(x: torch.Tensor, dims) -> torch.Tensor:
    return x.pow(2).mean(dim=dims).sqrt()


def langevin_sample(
    anchor: torch.Tensor,
    energy_fn: EnergyFn,
    n_chains: int,
    n_steps: int,
    step_size: float,
    noise_std: float = 1.0,
    init_std: float = 0.0,
    prior_std: float = 0.0,
    backprop: str = "detach",
    compute_energy_after: bool = True,
    generator: Optional[torch.Generator] = None,
) -> SGLDResult:
    """Run n_chains Langevin chains per anchor, all batched.

    anchor: [n_anchors, *prompt_shape] (e.g. [1, M, d] for one shared CoOp context, [K, M, d]
        for ProDA's K prompt sets). prior_std <= 0 turns the anchoring prior off.
    """
    if backprop not in ("detach", "full"):
        raise ValueError(f"TRAINER.EMPL.BACKPROP must be 'detach' or 'full', got {backprop!r}")
    if n_chains < 1 or n_steps < 0:
        raise ValueError(f"need N_PROMPTS >= 1 and SGLD_STEPS >= 0, got {n_chains} and {n_steps}")
    n_anchors = anchor.shape[0]
    prompt_dims = tuple(range(1, anchor.dim()))
    # Scale of the anchor per anchor set, [n_anchors, 1, 1, ...]: a constant of the step.
    r = rms(anchor.detach(), prompt_dims).clamp_min(1e-12)
    r = r.view(n_anchors, 1, *([1] * (anchor.dim() - 1)))
    center = anchor.detach().unsqueeze(1)  # [n_anchors, 1, *prompt_shape]
    sigma = prior_std * r

    def total_energy(h):
        e = energy_fn(h)
        if prior_std > 0:
            e = e + (h - center).pow(2).flatten(2).sum(-1) / (2 * sigma.flatten(1) ** 2)
        return e

    def randn_like(t):
        return torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)

    shape = (n_anchors, n_chains) + tuple(anchor.shape[1:])
    h = center.expand(shape).clone()
    if init_std > 0:
        h = h + init_std * r * randn_like(h)
    if backprop == "full":
        h = h + (anchor.unsqueeze(1) - center)  # connect the chain to the anchor's graph

    rejected = 0
    energy_before = float("nan")
    with torch.enable_grad():
        for step in range(n_steps):
            h_in = h if backprop == "full" else h.detach().requires_grad_(True)
            energy = total_energy(h_in)
            if step == 0:
                energy_before = energy.detach().float().mean().item()
            (grad,) = torch.autograd.grad(energy.sum(), h_in, create_graph=backprop == "full")
            proposal = h_in - 0.5 * step_size * r**2 * grad
            if noise_std > 0:
                proposal = proposal + noise_std * step_size**0.5 * r * randn_like(h)
            finite = torch.isfinite(proposal.detach()).flatten(2).all(-1)  # [n_anchors, n_chains]
            rejected += int((~finite).sum())
            keep = finite.view(n_anchors, n_chains, *([1] * (anchor.dim() - 1)))
            h = torch.where(keep, proposal, h_in)
            if backprop == "detach":
                h = h.detach()

    with torch.no_grad():
        if n_steps == 0:
            energy_before = total_energy(h.detach()).float().mean().item()
        energy_after = (
            total_energy(h.detach()).float().mean().item() if compute_energy_after else float("nan")
        )
        offset = (h.detach() - center) / r
        distance = rms(offset, tuple(range(2, offset.dim()))).mean().item()
        diversity = _mean_pairwise_rms(offset)

    if backprop == "detach":
        samples = anchor.unsqueeze(1) + (h - center).detach()
    else:
        samples = h
    return SGLDResult(
        samples=samples,
        energy_before=energy_before,
        energy_after=energy_after,
        distance_to_anchor=distance,
        diversity=diversity,
        rejected_steps=rejected,
        total_steps=n_steps * n_anchors * n_chains,
    )


def _mean_pairwise_rms(offset: torch.Tensor) -> float:
    """offset: [n_anchors, n_chains, ...] -> mean over anchors and chain pairs of rms distance."""
    n_chains = offset.shape[1]
    if n_chains < 2:
        return 0.0
    flat = offset.flatten(2).float()
    dists = torch.cdist(flat, flat) / flat.shape[-1] ** 0.5  # [n_anchors, n, n]
    off_diagonal = ~torch.eye(n_chains, dtype=torch.bool, device=flat.device)
    return dists[:, off_diagonal].mean().item()


class SGLDPromptSampler:
    """Mixin: `self.sample_prompts(anchor, energy_fn)` with the TRAINER.EMPL config.

    The host class provides `self.cfg` (a Dassl config with a TRAINER.EMPL node). Chains draw
    their noise from `self.sgld_generator` when the host sets one (e.g. for a reproducible
    amortized cache), else from torch's global RNG (seeded by train.py).
    """

    sgld_generator: Optional[torch.Generator] = None

    def sample_prompts(
        self, anchor: torch.Tensor, energy_fn: EnergyFn, compute_energy_after: bool = True
    ) -> SGLDResult:
        empl = self.cfg.TRAINER.EMPL
        return langevin_sample(
            anchor,
            energy_fn,
            n_chains=empl.N_PROMPTS,
            n_steps=empl.SGLD_STEPS,
            step_size=empl.SGLD_STEP_SIZE,
            noise_std=empl.NOISE_STD,
            init_std=empl.INIT_STD,
            prior_std=empl.PRIOR_STD,
            backprop=empl.BACKPROP,
            compute_energy_after=compute_energy_after,
            generator=self.sgld_generator,
        )
