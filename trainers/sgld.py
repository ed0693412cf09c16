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

Where the data energy's gradient is taken (SGLD_GRADIENT):
- "exact": at every chain state, T x N gradient evaluations per call (the paper's SGLD).
- "anchor": once, at the anchor, and reused by every step and chain: the data energy is
  linearised at the anchor, E_data(H) ~ E_data(anchor) + <g, H - anchor>, the prior stays exact.
  One gradient evaluation per call instead of T x N; exact when E_data is linear in H, and close
  while the chains stay near the anchor (docs/EMPL.md measures both).
"""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

SGLD_GRADIENTS = ("exact", "anchor")

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
    gradient: str = "exact",
) -> SGLDResult:
    """Run n_chains Langevin chains per anchor, all batched.

    anchor: [n_anchors, *prompt_shape] (e.g. [1, M, d] for one shared CoOp context, [K, M, d]
        for ProDA's K prompt sets). prior_std <= 0 turns the anchoring prior off.
    gradient: "exact" or "anchor" (the module docstring). With "anchor" the reported energies
        are those of the linearised data term the chains actually followed.
    """
    if backprop not in ("detach", "full"):
        raise ValueError(f"TRAINER.EMPL.BACKPROP must be 'detach' or 'full', got {backprop!r}")
    if gradient not in SGLD_GRADIENTS:
        raise ValueError(f"TRAINER.EMPL.SGLD_GRADIENT must be one of {SGLD_GRADIENTS}, got {gradient!r}")
    if n_chains < 1 or n_steps < 0:
        raise ValueError(f"need N_PROMPTS >= 1 and SGLD_STEPS >= 0, got {n_chains} and {n_steps}")
    n_anchors = anchor.shape[0]
    prompt_dims = tuple(range(1, anchor.dim()))
    # Scale of the anchor per anchor set, [n_anchors, 1, 1, ...]: a constant of the step.
    r = rms(anchor.detach(), prompt_dims).clamp_min(1e-12)
    r = r.view(n_anchors, 1, *([1] * (anchor.dim() - 1)))
    center = anchor.detach().unsqueeze(1)  # [n_anchors, 1, *prompt_shape]
    sigma = prior_std * r
    data_energy = energy_fn
    if gradient == "anchor" and n_steps > 0:
        data_energy = linearised_energy(energy_fn, anchor.unsqueeze(1), keep_graph=backprop == "full")

    def total_energy(h):
        e = data_energy(h)
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


def linearised_energy(energy_fn: EnergyFn, anchor: torch.Tensor, keep_graph: bool) -> EnergyFn:
    """energy_fn linearised at the anchor: h -> E(a) + <grad E(a), h - a>.

    anchor: [n_anchors, 1, *prompt_shape]; energy_fn is evaluated once, on this one chain. The
    returned function maps h [n_anchors, n_chains, *prompt_shape] to [n_anchors, n_chains], like
    energy_fn. keep_graph (BACKPROP full) keeps the graph of E(a) and of its gradient.
    """
    keep_graph = keep_graph and anchor.requires_grad
    with torch.enable_grad():
        point = anchor if keep_graph else anchor.detach().requires_grad_(True)
        value = energy_fn(point)  # [n_anchors, 1]
        (slope,) = torch.autograd.grad(value.sum(), point, create_graph=keep_graph)
    if not keep_graph:
        value, point = value.detach(), point.detach()

    def energy(h):
        return value + (slope * (h - point)).flatten(2).sum(-1)

    return energy


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
    their noise from `generator`, else from `self.sgld_generator` when the host sets one, else
    from torch's global RNG.
    """

    sgld_generator: Optional[torch.Generator] = None

    def sample_prompts(
        self, anchor: torch.Tensor, energy_fn: EnergyFn, compute_energy_after: bool = True,
        generator: Optional[torch.Generator] = None,
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
            generator=generator if generator is not None else self.sgld_generator,
            gradient=empl.SGLD_GRADIENT,
        )
