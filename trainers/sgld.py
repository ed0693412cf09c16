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
from typing import Callable, Optional, Tuple

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
    """Run n_chains Langevin chains per anchor, all batched, in fp32 whatever the anchor's dtype:
    the sampling (LangevinChains), then the diagnostics (PriorOnlyChains, sgld_result).

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
    chains = LangevinChains(anchor, energy_fn, n_chains, n_steps, step_size, noise_std, prior_std, backprop,
                            gradient, generator)
    h = chains.start(init_std, init_offset)
    reference = None
    if reference_init_offset is not None or compare_prior_only or keep_reference:
        reference = PriorOnlyChains(chains, h, reference_init_offset)
    h, rejected, energy_before = chains.run(h, n_steps, gradient_scale,
                                            on_noise=reference.step if reference is not None else None)
    return sgld_result(chains, h, rejected, energy_before, n_steps, reference, compute_energy_after,
                       compare_prior_only)


class LangevinChains:
    """One call's chains: the anchor's scale r, the prior and the data energy they follow, where
    they start and their steps (the module docstring's update).

    States h are [n_anchors, n_chains, *prompt_shape], fp32: under fp16 the data drift per
    element is below the spacing of the states' values and would be rounded away. The energy
    casts states to the model's dtype.
    """

    def __init__(self, anchor: torch.Tensor, energy_fn: EnergyFn, n_chains: int, n_steps: int, step_size: float,
                 noise_std: float, prior_std: float, backprop: str, gradient: str, generator):
        self.n_anchors, self.n_chains = anchor.shape[0], n_chains
        self.prompt_dim = anchor.dim() - 1
        self.step_size, self.noise_std, self.prior_std = step_size, noise_std, prior_std
        self.backprop, self.generator, self.energy_fn = backprop, generator, energy_fn
        self.anchor32 = anchor.float()
        # Scale of the anchor per anchor set, [n_anchors, 1, 1, ...]: a constant of the step.
        r = rms(self.anchor32.detach(), tuple(range(1, anchor.dim()))).clamp_min(1e-12)
        self.r = r.view(self.n_anchors, 1, *([1] * self.prompt_dim))
        # With BACKPROP full the prior's centre keeps its graph, so d(sample)/d(anchor) = 1 plus
        # what flows through the data gradient; with detach the chain is a constant offset.
        self.center = self.anchor32.unsqueeze(1) if backprop == "full" else self.anchor32.detach().unsqueeze(1)
        self.prior = GaussianPriorStep(prior_std, step_size, noise_std) if prior_std > 0 else None
        # The data gradient's weight in a step, times r^2.
        self.drift_weight = self.prior.drift_weight if self.prior is not None else 0.5 * step_size
        self.data_energy = energy_fn  # the data energy the chains follow
        if gradient == "anchor" and n_steps > 0:
            self.data_energy = linearised_energy(energy_fn, self.anchor32.unsqueeze(1), keep_graph=backprop == "full")
        self.shape = (self.n_anchors, n_chains) + tuple(anchor.shape[1:])

    def prior_energy(self, h: torch.Tensor) -> torch.Tensor:
        """||h - anchor||^2 / (2 sigma^2) per chain: [n_anchors, n_chains]."""
        return (h - self.center.detach()).pow(2).flatten(2).sum(-1) / (2 * (self.prior_std * self.r.flatten(1)) ** 2)

    def total_energy(self, h: torch.Tensor) -> torch.Tensor:
        e = self.data_energy(h)
        return e + self.prior_energy(h) if self.prior is not None else e

    def randn_like(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(self.generator, (list, tuple)):  # one generator per anchor, drawn row by row
            return torch.stack([torch.randn(t.shape[1:], generator=g, device=t.device, dtype=t.dtype)
                                for g in self.generator])
        return torch.randn(t.shape, generator=self.generator, device=t.device, dtype=t.dtype)

    def prior_and_noise(self, h: torch.Tensor, center: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
        """A step's part without the data term: the exact prior step, or the Euler noise alone."""
        if self.prior is not None:
            return self.prior.step(h, center, self.r, noise)
        return h if noise is None else h + self.noise_std * self.step_size**0.5 * self.r * noise

    def start(self, init_std: float, init_offset: Optional[torch.Tensor]) -> torch.Tensor:
        """The chains' first states: init_offset (in units of r) from the anchor, else the anchor
        plus init_std * r * noise."""
        h = self.center.expand(self.shape).clone()
        if init_offset is not None:
            self.check_offset(init_offset, "init_offset")
            h = h + self.r * init_offset.to(h.dtype)
        elif init_std > 0:
            h = h + init_std * self.r * self.randn_like(h)
        return h

    def check_offset(self, offset: torch.Tensor, name: str) -> None:
        """A start given as offsets from the anchor must have one per chain: the chains' shape."""
        if tuple(offset.shape) != self.shape:
            raise ValueError(f"{name} has shape {tuple(offset.shape)}, the chains {self.shape}")

    def run(self, h: torch.Tensor, n_steps: int, gradient_scale: float,
            on_noise: Optional[Callable[[Optional[torch.Tensor]], None]] = None) -> Tuple[torch.Tensor, int, float]:
        """n_steps steps from h -> (last states, chain-steps rejected for non-finite values, mean
        total energy of h, nan without steps). on_noise(noise) sees each step's noise (PriorOnlyChains)."""
        rejected = 0
        energy_before = float("nan")
        with torch.enable_grad():
            for step in range(n_steps):
                h_in = h if self.backprop == "full" else h.detach().requires_grad_(True)
                energy = self.data_energy(h_in)
                if step == 0:
                    prior_part = self.prior_energy(h_in.detach()) if self.prior else 0
                    energy_before = (energy.detach() + prior_part).float().mean().item()
                (grad,) = torch.autograd.grad(energy.sum() * gradient_scale, h_in,
                                              create_graph=self.backprop == "full")
                grad = grad.float() / gradient_scale
                noise = self.randn_like(h) if self.noise_std > 0 else None
                proposal = self.prior_and_noise(h_in, self.center, noise) - self.drift_weight * self.r**2 * grad
                if on_noise is not None:
                    on_noise(noise)
                finite = torch.isfinite(proposal.detach()).flatten(2).all(-1)  # [n_anchors, n_chains]
                rejected += int((~finite).sum())
                keep = finite.view(self.n_anchors, self.n_chains, *([1] * self.prompt_dim))
                h = torch.where(keep, proposal, h_in)
                if self.backprop == "detach":
                    h = h.detach()
        return h, rejected, energy_before

    def offsets(self, h: torch.Tensor) -> torch.Tensor:
        """(h - anchor) / r, detached."""
        return (h.detach() - self.center.detach()) / self.r


class PriorOnlyChains:
    """The diagnostics' baseline: chains that take the same steps as the SGLD chains without
    the data term (the same start, unless told, and the same noise)."""

    def __init__(self, chains: LangevinChains, h: torch.Tensor, init_offset: Optional[torch.Tensor]):
        self.chains = chains
        if init_offset is not None:
            chains.check_offset(init_offset, "reference_init_offset")
            start = chains.center.detach() + chains.r * init_offset.to(h.dtype)
            self.states = start.expand(chains.shape).clone()
        else:
            self.states = h.detach().clone()

    def step(self, noise: Optional[torch.Tensor]) -> None:
        self.states = self.chains.prior_and_noise(self.states, self.chains.center.detach(), noise)


def sgld_result(chains: LangevinChains, h: torch.Tensor, rejected: int, energy_before: float, n_steps: int,
                 reference: Optional[PriorOnlyChains], compute_energy_after: bool,
                 compare_prior_only: bool) -> SGLDResult:
    """The samples of the chains' last states h, and what the chains did: energies, distance to
    the anchor, diversity, and (compare_prior_only) the data energy against the prior-only chains."""
    final = h.detach()
    with torch.no_grad():
        report = _diagnostics(chains, final, energy_before, n_steps, reference, compute_energy_after,
                              compare_prior_only)
    # Outside no_grad: with detach the samples are anchor + stopgrad(H_T - anchor), so the
    # gradient reaches the anchor.
    if chains.backprop == "detach":
        samples = chains.anchor32.unsqueeze(1) + (final - chains.center)
    else:
        samples = h
    return SGLDResult(samples=samples, rejected_steps=rejected, total_steps=n_steps * chains.n_anchors * chains.n_chains,
                      **report)


def _diagnostics(chains: LangevinChains, final: torch.Tensor, energy_before: float, n_steps: int,
                 reference: Optional[PriorOnlyChains], compute_energy_after: bool, compare_prior_only: bool) -> dict:
    """SGLDResult's diagnostic fields for the chains' last states ``final`` (detached)."""
    energy_fn, data_energy = chains.energy_fn, chains.data_energy
    # The true data energy at the chains' ends, evaluated once: the energy-after diagnostic
    # (when the chains followed it) and the prior-only comparison share it.
    true_after = None
    if (compare_prior_only and reference is not None) or (compute_energy_after and data_energy is energy_fn):
        true_after = energy_fn(final).float()
    if n_steps == 0:
        energy_before = chains.total_energy(final).float().mean().item()
    energy_after = float("nan")
    if compute_energy_after:
        followed = true_after if data_energy is energy_fn else data_energy(final).float()
        energy_after = (followed + (chains.prior_energy(final) if chains.prior is not None else 0)).mean().item()
    data_after = data_prior_only = data_prior_only_std = float("nan")
    reference_offsets = None if reference is None else chains.offsets(reference.states)
    if reference is not None and compare_prior_only:
        data_after = true_after.mean().item()
        reference_energy = energy_fn(reference.states).float()
        data_prior_only = reference_energy.mean().item()
        if reference_energy.numel() > 1:
            data_prior_only_std = reference_energy.std().item()
    offset = chains.offsets(final)
    return dict(
        offsets=offset,
        reference_offsets=reference_offsets,
        energy_before=energy_before,
        energy_after=energy_after,
        distance_to_anchor=rms(offset, tuple(range(2, offset.dim()))).mean().item(),
        diversity=_mean_pairwise_rms(offset),
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
    trainers.empl_config.check_empl_cfg). The per-call keywords (generator, compute_energy_after,
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
