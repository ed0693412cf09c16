"""Stochastic gradient Langevin dynamics over prompt embeddings (EMPL's sampler).

The sampler knows nothing of CoOp, ProDA or MaPLe: it takes anchor prompt embeddings, an
energy callable and its settings (sgld_options maps the TRAINER.EMPL config node to them), and
returns samples plus diagnostics.
Formulation: docs/EMPL.md ("Sampling"), summarised:

    r = rms(anchor)                                   (constant, no gradient)
    E(H) = E_data(H) + ||H - anchor||^2 / (2 sigma^2),   sigma = PRIOR_STD * r
    H_0 = anchor + INIT_STD * r * eps
    H_{t+1} = anchor + a (H_t - anchor) - PRIOR_STD^2 (1 - a) r^2 grad E_data(H_t) + NOISE_STD * s r * eps_t
    a = exp(-alpha / (2 PRIOR_STD^2)),  s = PRIOR_STD sqrt(1 - a^2)

i.e. Langevin dynamics in units of r, so SGLD_STEP_SIZE (alpha) means the same thing at every
text layer and for every CLIP. The Gaussian prior's part is integrated exactly
(GaussianPriorStep), and the data term's drift is weighted to match it: over the step the data
gradient is held constant, and the exact solution of that linear problem moves the chain by
PRIOR_STD^2 (1 - a) r^2 grad E_data. For a linear data energy the chains' stationary mean is then
exact (the Euler weight alpha / 2 r^2 overshoots it by x / (1 - e^-x), x = alpha / (2 PRIOR_STD^2):
13% at the defaults); as alpha -> 0 the two weights agree. Without a prior (PRIOR_STD <= 0) the
step is plain Euler-Maruyama, H_t - (alpha / 2) r^2 grad E_data + NOISE_STD sqrt(alpha) r eps. A
step that gives a non-finite chain state is rejected for that chain (it keeps H_t) and counted.

Where the data energy's gradient is taken (SGLD_GRADIENT):
- "exact": at every chain state, T x N gradient evaluations per call (the paper's SGLD).
- "anchor": once, at the anchor, and reused by every step and chain: the data energy is
  linearised at the anchor, E_data(H) ~ E_data(anchor) + <g, H - anchor>, the prior stays exact.
  One gradient evaluation per call instead of T x N; exact when E_data is linear in H, and close
  while the chains stay near the anchor (docs/EMPL.md measures both).
"""
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

SGLD_GRADIENTS = ("exact", "anchor")
BACKPROPS = ("detach", "full")

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
    offsets: torch.Tensor  # (H_T - anchor) / r, detached: where persistent chains restart
    reference_offsets: Optional[torch.Tensor]  # the same for the prior-only chains (None if none ran)
    energy_before: float  # mean total energy of H_0
    energy_after: float  # mean total energy of H_T (nan when not computed)
    distance_to_anchor: float  # mean rms(H_T - anchor) / r
    diversity: float  # mean pairwise rms(H_i - H_j) / r between chains of one anchor
    rejected_steps: int  # chain-steps rejected for non-finite values
    total_steps: int  # chain-steps attempted
    # The true data energy (free-energy term alone) at the chains' ends, and at the ends of
    # prior-only chains run on the same start and noise (nan unless compare_prior_only).
    data_energy_after: float = float("nan")
    data_energy_prior_only: float = float("nan")
    data_energy_prior_only_std: float = float("nan")  # std over the prior-only chains

    @property
    def acceptance(self) -> float:
        return 1.0 - self.rejected_steps / max(self.total_steps, 1)

    def as_dict(self, prefix: str = "sgld/") -> dict:
        out = {
            f"{prefix}energy_before": self.energy_before,
            f"{prefix}energy_after": self.energy_after,
            f"{prefix}distance_to_anchor": self.distance_to_anchor,
            f"{prefix}diversity": self.diversity,
            f"{prefix}rejected_steps": float(self.rejected_steps),
        }
        if not math.isnan(self.data_energy_prior_only):
            # < 0: the data term pulled the chains to lower data energy than the prior alone.
            gain = self.data_energy_after - self.data_energy_prior_only
            out[f"{prefix}data_energy_gain"] = gain
            # The gain in units of how much the data energy varies between prior-only chains.
            if self.data_energy_prior_only_std > 0:
                out[f"{prefix}data_energy_z"] = gain / self.data_energy_prior_only_std
        return out


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
    generator=None,
    gradient: str = "exact",
    compare_prior_only: bool = False,
    init_offset: Optional[torch.Tensor] = None,
    reference_init_offset: Optional[torch.Tensor] = None,
    keep_reference: bool = False,
    gradient_scale: float = 1.0,
) -> SGLDResult:
    """Run n_chains Langevin chains per anchor, all batched, in fp32 whatever the anchor's dtype.

    anchor: [n_anchors, *prompt_shape] (e.g. [1, M, d] for one shared CoOp context, [K, M, d]
        for ProDA's K prompt sets). prior_std <= 0 turns the anchoring prior off.
    generator: the noise's torch.Generator, or a sequence of n_anchors of them: anchor a's
        chains then draw only from generator[a] (per-image chains whose noise depends on their
        image alone, not on the images drawn before them).
    gradient: "exact" or "anchor" (the module docstring). With "anchor" the reported total
        energies are those of the linearised data term the chains actually followed.
    compare_prior_only: also run prior-only chains on the same start and noise, and report the
        true data energy at the end of both (SGLDResult.data_energy_after / _prior_only).
    init_offset: [n_anchors, n_chains, *prompt_shape], where the chains start, in units of r from
        the anchor (persistent chains: the previous call's SGLDResult.offsets); replaces the
        INIT_STD draw.
    reference_init_offset: where the prior-only chains start (persistent: the previous call's
        SGLDResult.reference_offsets; default: where the chains start).
    keep_reference: run the prior-only chains (and return their offsets) even without
        compare_prior_only, which adds the two energy evaluations.
    gradient_scale: the energy is multiplied by it before its gradient is taken and the gradient
        divided by it after, so that a half-precision backward pass never sees a gradient larger
        than the scaled one (EMPL passes ENERGY_TEMP under fp16: the 1 / T_E factor then never
        meets an fp16 value; the result is the same in exact arithmetic).
    BACKPROP full needs an anchor with a gradient in grad mode (training); elsewhere (evaluation,
    under no_grad) there is nothing to backpropagate to and the chains run as with detach.
    """
    if isinstance(generator, (list, tuple)) and len(generator) != anchor.shape[0]:
        raise ValueError(f"got {len(generator)} generators for {anchor.shape[0]} anchors")
    if backprop == "full" and not (anchor.requires_grad and torch.is_grad_enabled()):
        backprop = "detach"  # evaluation: no graph to keep
    n_anchors = anchor.shape[0]
    prompt_dims = tuple(range(1, anchor.dim()))
    # Chains run in fp32: under fp16 the data drift per element is below the spacing of the
    # states' values and would be rounded away. The energy casts states to the model's dtype.
    anchor32 = anchor.float()
    # Scale of the anchor per anchor set, [n_anchors, 1, 1, ...]: a constant of the step.
    r = rms(anchor32.detach(), prompt_dims).clamp_min(1e-12)
    r = r.view(n_anchors, 1, *([1] * (anchor.dim() - 1)))
    # With BACKPROP full the prior's centre keeps its graph, so d(sample)/d(anchor) = 1 plus what
    # flows through the data gradient; with detach the chain is a constant offset.
    center = anchor32.unsqueeze(1) if backprop == "full" else anchor32.detach().unsqueeze(1)
    prior = GaussianPriorStep(prior_std, step_size, noise_std) if prior_std > 0 else None
    drift_weight = prior.drift_weight if prior is not None else 0.5 * step_size  # times r^2 grad E_data
    data_energy = energy_fn
    if gradient == "anchor" and n_steps > 0:
        data_energy = linearised_energy(energy_fn, anchor32.unsqueeze(1), keep_graph=backprop == "full")

    def prior_energy(h):
        return (h - center.detach()).pow(2).flatten(2).sum(-1) / (2 * (prior_std * r.flatten(1)) ** 2)

    def total_energy(h):
        e = data_energy(h)
        return e + prior_energy(h) if prior is not None else e

    def randn_like(t):
        if isinstance(generator, (list, tuple)):  # one generator per anchor, drawn row by row
            return torch.stack([torch.randn(t.shape[1:], generator=g, device=t.device, dtype=t.dtype)
                                for g in generator])
        return torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)

    def prior_and_noise(h, c, noise):
        """A step's part without the data term: the exact prior step, or the Euler noise alone."""
        if prior is not None:
            return prior.step(h, c, r, noise)
        return h if noise is None else h + noise_std * step_size**0.5 * r * noise

    shape = (n_anchors, n_chains) + tuple(anchor.shape[1:])
    h = center.expand(shape).clone()
    if init_offset is not None:
        if tuple(init_offset.shape) != shape:
            raise ValueError(f"init_offset has shape {tuple(init_offset.shape)}, the chains {shape}")
        h = h + r * init_offset.to(h.dtype)
    elif init_std > 0:
        h = h + init_std * r * randn_like(h)
    # Prior-only chains on the same noise: the diagnostics' baseline.
    reference = None
    if reference_init_offset is not None:
        if tuple(reference_init_offset.shape) != shape:
            raise ValueError(f"reference_init_offset has shape {tuple(reference_init_offset.shape)}, the chains {shape}")
        reference = (center.detach() + r * reference_init_offset.to(h.dtype)).expand(shape).clone()
    elif compare_prior_only or keep_reference:
        reference = h.detach().clone()

    rejected = 0
    energy_before = float("nan")
    with torch.enable_grad():
        for step in range(n_steps):
            h_in = h if backprop == "full" else h.detach().requires_grad_(True)
            energy = data_energy(h_in)
            if step == 0:
                energy_before = (energy.detach() + (prior_energy(h_in.detach()) if prior else 0)).float().mean().item()
            (grad,) = torch.autograd.grad(energy.sum() * gradient_scale, h_in, create_graph=backprop == "full")
            grad = grad.float() / gradient_scale
            noise = randn_like(h) if noise_std > 0 else None
            proposal = prior_and_noise(h_in, center, noise) - drift_weight * r**2 * grad
            if reference is not None:  # the same step without the data term
                reference = prior_and_noise(reference, center.detach(), noise)
            finite = torch.isfinite(proposal.detach()).flatten(2).all(-1)  # [n_anchors, n_chains]
            rejected += int((~finite).sum())
            keep = finite.view(n_anchors, n_chains, *([1] * (anchor.dim() - 1)))
            h = torch.where(keep, proposal, h_in)
            if backprop == "detach":
                h = h.detach()

    with torch.no_grad():
        final = h.detach()
        # The true data energy at the chains' ends, evaluated once: the energy-after diagnostic
        # (when the chains followed it) and the prior-only comparison share it.
        true_after = None
        if (compare_prior_only and reference is not None) or (compute_energy_after and data_energy is energy_fn):
            true_after = energy_fn(final).float()
        if n_steps == 0:
            energy_before = total_energy(final).float().mean().item()
        energy_after = float("nan")
        if compute_energy_after:
            followed = true_after if data_energy is energy_fn else data_energy(final).float()
            energy_after = (followed + (prior_energy(final) if prior is not None else 0)).mean().item()
        data_after = data_prior_only = data_prior_only_std = float("nan")
        reference_offsets = None if reference is None else (reference - center.detach()) / r
        if reference is not None and compare_prior_only:
            data_after = true_after.mean().item()
            reference_energy = energy_fn(reference).float()
            data_prior_only = reference_energy.mean().item()
            if reference_energy.numel() > 1:
                data_prior_only_std = reference_energy.std().item()
        offset = (final - center.detach()) / r
        distance = rms(offset, tuple(range(2, offset.dim()))).mean().item()
        diversity = _mean_pairwise_rms(offset)

    if backprop == "detach":
        samples = anchor32.unsqueeze(1) + (final - center)
    else:
        samples = h
    return SGLDResult(
        samples=samples,
        offsets=offset,
        reference_offsets=reference_offsets,
        energy_before=energy_before,
        energy_after=energy_after,
        distance_to_anchor=distance,
        diversity=diversity,
        rejected_steps=rejected,
        total_steps=n_steps * n_anchors * n_chains,
        data_energy_after=data_after,
        data_energy_prior_only=data_prior_only,
        data_energy_prior_only_std=data_prior_only_std,
    )


class GaussianPriorStep:
    """The prior's part of a Langevin step, integrated exactly (an Ornstein-Uhlenbeck step).

    Over Langevin time alpha, the prior ||H - c||^2 / (2 (p r)^2) with its noise moves the offset
    H - c to a * (H - c) + NOISE_STD * p r sqrt(1 - a^2) * eps, a = exp(-alpha / (2 p^2)).
    An Euler step would multiply the offset by (1 - alpha / (2 p^2)): it diverges once
    alpha >= 4 p^2 and leaves a stationary variance of sigma^2 / (1 - alpha / (4 p^2)) below
    that. The exact step is stable at every alpha and keeps the prior's variance sigma^2.
    """

    def __init__(self, prior_std: float, step_size: float, noise_std: float):
        self.decay = math.exp(-step_size / (2 * prior_std**2))
        self.noise_scale = noise_std * prior_std * math.sqrt(-math.expm1(-step_size / prior_std**2))
        # A constant force f over the same time moves the offset by p^2 (1 - a) f (in units of
        # r^2): the data drift's weight that makes a linear energy's stationary mean exact.
        self.drift_weight = prior_std**2 * -math.expm1(-step_size / (2 * prior_std**2))

    def step(self, h: torch.Tensor, center: torch.Tensor, r: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
        out = center + self.decay * (h - center)
        if noise is not None:
            out = out + self.noise_scale * r * noise
        return out


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


def sgld_options(empl) -> dict:
    """The TRAINER.EMPL node's sampler settings as langevin_sample's keyword arguments.

    A plain mapping: the values are checked once, before the trainer is built (EMPLMixin.check_cfg,
    trainers.empl.check_empl_cfg). The per-call keywords (generator, compute_energy_after,
    compare_prior_only, init_offset, reference_init_offset, keep_reference) are the caller's.
    gradient_scale is ENERGY_TEMP, so that the energy's 1 / T_E factor never meets fp16.
    """
    return dict(
        n_chains=empl.N_CHAINS,
        n_steps=empl.SGLD_STEPS,
        step_size=empl.SGLD_STEP_SIZE,
        noise_std=empl.NOISE_STD,
        init_std=empl.INIT_STD,
        prior_std=empl.PRIOR_STD,
        backprop=empl.BACKPROP,
        gradient=empl.SGLD_GRADIENT,
        # The data energy carries 1 / T_E: its gradient is taken of T_E * E, which half
        # precision holds, and divided by T_E in fp32.
        gradient_scale=empl.ENERGY_TEMP,
    )
