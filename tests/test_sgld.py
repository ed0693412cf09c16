"""The SGLD sampler on energies whose stationary law is known in closed form."""
import math

import pytest
import torch

from trainers.sgld import langevin_sample


def gaussian_energy(mu, s):
    """E(H) = ||H - mu||^2 / (2 s^2) per chain; H: [A, N, M, d] -> [A, N]."""
    return lambda h: (h - mu).pow(2).flatten(2).sum(-1) / (2 * s**2)


def test_recovers_gaussian_mean_and_std():
    gen = torch.Generator().manual_seed(0)
    anchor = torch.ones(1, 2, 3)  # rms 1, so step sizes are in the energy's own units
    mu = torch.tensor([[0.5, -0.3, 0.2], [0.0, 0.4, -0.6]])
    s = 0.5
    result = langevin_sample(
        anchor, gaussian_energy(mu, s), n_chains=2000, n_steps=800, step_size=0.01,
        noise_std=1.0, init_std=0.0, prior_std=0.0, generator=gen,
    )
    samples = result.samples[0]  # [2000, 2, 3]
    n = samples.shape[0]
    # Sampling error of the mean is s / sqrt(n) ~ 0.011; allow 4 of those.
    assert torch.allclose(samples.mean(0), mu, atol=4 * s / math.sqrt(n))
    # Discretisation inflates the variance by ~1 / (1 - alpha / (4 s^2)) = 1.01; std error ~1.6%.
    std = samples.std(0)
    assert torch.allclose(std, torch.full_like(std, s), rtol=0.06)
    assert result.rejected_steps == 0 and result.acceptance == 1.0


def test_prior_combines_with_data_energy_as_product_of_gaussians():
    gen = torch.Generator().manual_seed(1)
    anchor = torch.full((1, 1, 4), 2.0)  # rms r = 2
    r, prior_std, s = 2.0, 0.5, 1.0
    mu = torch.zeros(1, 4)
    result = langevin_sample(
        anchor, gaussian_energy(mu, s), n_chains=2000, n_steps=600, step_size=0.005,
        prior_std=prior_std, generator=gen,
    )
    sigma = prior_std * r  # = 1.0 in H units
    precision = 1 / s**2 + 1 / sigma**2
    expected_mean = (2.0 / sigma**2) / precision  # (mu / s^2 + anchor / sigma^2) / precision
    expected_std = precision**-0.5
    samples = result.samples[0, :, 0]
    assert samples.mean().item() == pytest.approx(expected_mean, abs=0.03)
    assert samples.std(0).mean().item() == pytest.approx(expected_std, rel=0.05)


def test_gradient_reaches_anchor_not_chain_and_samples_differ():
    anchor = torch.randn(1, 3, 5, requires_grad=True)
    result = langevin_sample(
        anchor, lambda h: h.pow(2).flatten(2).sum(-1), n_chains=4, n_steps=3, step_size=0.05,
        init_std=0.1, prior_std=0.2, generator=torch.Generator().manual_seed(0),
    )
    samples = result.samples
    assert samples.shape == (1, 4, 3, 5)
    samples.sum().backward()
    # samples = anchor + stopgrad(offset): d(sum)/d(anchor) is exactly n_chains everywhere.
    assert torch.allclose(anchor.grad, torch.full_like(anchor, 4.0))
    flat = samples.detach().flatten(2)[0]
    assert torch.cdist(flat, flat)[~torch.eye(4, dtype=torch.bool)].min() > 0
    assert (flat - anchor.detach().flatten()).abs().max() > 0
    assert result.diversity > 0 and result.distance_to_anchor > 0


def test_non_finite_steps_are_rejected_and_counted():
    anchor = torch.ones(1, 2, 2)

    def energy(h):  # chain 1 gets an infinite gradient, chain 0 a normal one
        e = h.pow(2).flatten(2).sum(-1)
        return e + torch.stack([torch.zeros(()), h[0, 1].sum() * float("inf")]).unsqueeze(0)

    result = langevin_sample(anchor, energy, n_chains=2, n_steps=3, step_size=0.1)
    assert result.rejected_steps == 3 and result.total_steps == 6
    assert torch.equal(result.samples[0, 1], anchor[0])  # the bad chain never moved
    assert torch.isfinite(result.samples).all()
    assert not torch.equal(result.samples[0, 0], anchor[0])


def test_anchor_gradient_equals_exact_on_a_linear_energy():
    """A linear data energy is its own linearisation: both modes draw the same samples."""
    weights = torch.randn(2, 3)
    energy = lambda h: (h * weights).flatten(2).sum(-1)  # noqa: E731
    anchor = torch.randn(1, 2, 3)
    kwargs = dict(n_chains=3, n_steps=4, step_size=0.05, init_std=0.1, prior_std=0.3)
    exact, linear = (
        langevin_sample(anchor, energy, gradient=g, generator=torch.Generator().manual_seed(5), **kwargs)
        for g in ("exact", "anchor")
    )
    assert torch.allclose(exact.samples, linear.samples, atol=1e-6)
    assert exact.energy_before == pytest.approx(linear.energy_before, rel=1e-5)
    assert exact.energy_after == pytest.approx(linear.energy_after, rel=1e-5)


def test_anchor_gradient_follows_the_drift_taken_at_the_anchor():
    """On a curved energy the chain uses grad E(anchor) at every step (checked against the
    recursion written out by hand, without noise), and evaluates the energy once, on one chain."""
    mu, s, prior_std, alpha = torch.tensor([[0.5, -1.0]]), 0.7, 0.4, 0.2
    calls = []

    def energy(h):
        calls.append(tuple(h.shape))
        return gaussian_energy(mu, s)(h)

    anchor = torch.tensor([[[2.0, 1.0]]])
    result = langevin_sample(
        anchor, energy, n_chains=3, n_steps=6, step_size=alpha, noise_std=0.0, prior_std=prior_std,
        gradient="anchor",
    )
    assert calls == [(1, 1, 1, 2)]
    r = anchor.pow(2).mean().sqrt()
    slope = (anchor[0] - mu) / s**2  # grad of the data energy at the anchor
    decay = math.exp(-alpha / (2 * prior_std**2))  # the prior's exact (OU) step
    h = anchor[0].clone()
    for _ in range(6):
        h = anchor[0] + decay * (h - anchor[0]) - prior_std**2 * (1 - decay) * r**2 * slope
    assert torch.allclose(result.samples[0], h.expand(3, 1, 2), atol=1e-6)
    exact = langevin_sample(anchor, energy, n_chains=3, n_steps=6, step_size=alpha, noise_std=0.0, prior_std=prior_std)
    assert not torch.allclose(exact.samples, result.samples, atol=1e-3)  # the curvature matters here
    assert len(calls) == 1 + 6 + 1  # exact: every step, plus the energy after


def test_anchor_gradient_backprop_full_reaches_the_anchor_through_the_slope():
    anchor = torch.randn(1, 2, 3, requires_grad=True)
    result = langevin_sample(
        anchor, lambda h: h.pow(3).flatten(2).sum(-1), n_chains=2, n_steps=2, step_size=0.1,
        noise_std=0.0, backprop="full", gradient="anchor",
    )
    (grad,) = torch.autograd.grad(result.samples.sum(), anchor)
    # samples = anchor - alpha r^2 (...) 3 anchor^2: the slope's own graph adds a non-constant term.
    assert not torch.allclose(grad, torch.full_like(grad, 2.0))


@pytest.mark.parametrize("key, value, message", [
    ("SGLD_GRADIENT", "first-order", "TRAINER.EMPL.SGLD_GRADIENT must be one of"),
    ("BACKPROP", "chain", "TRAINER.EMPL.BACKPROP must be detach or full"),
    ("N_CHAINS", -1, "TRAINER.EMPL.N_CHAINS must be >= 0"),
    ("SGLD_STEP_SIZE", 0.0, "SGLD_STEP_SIZE and ENERGY_TEMP must be > 0"),
])
def test_bad_sampler_settings_are_rejected_before_the_trainer_is_built(key, value, message):
    """The sampler's settings are checked once, in EMPL's check_cfg (the hook every trainer's
    settings go through), which runs before any data or model is built."""
    from launch import extend_cfg
    from dassl.config import get_cfg_default
    from trainers.empl_coop import EMPL_CoOp

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.TRAINER.EMPL[key] = value
    with pytest.raises(ValueError, match=message):
        EMPL_CoOp(cfg)


@pytest.mark.parametrize("step_size", [0.01, 0.1, 1.0])
def test_prior_alone_keeps_its_variance_at_any_step_size(step_size):
    """Prior-only chains (PRIOR_STD 0.1) stay finite and reach the prior's variance sigma^2 at
    step sizes that made the old Euler step diverge (alpha >= 4 PRIOR_STD^2 = 0.04)."""
    gen = torch.Generator().manual_seed(0)
    anchor = torch.full((1, 1, 1), 3.0)  # r = 3, sigma = 0.3
    result = langevin_sample(
        anchor, lambda h: 0.0 * h.sum((2, 3)), n_chains=4000, n_steps=max(int(2 / step_size), 20),
        step_size=step_size, init_std=0.0, prior_std=0.1, generator=gen,
    )
    offsets = (result.samples - 3.0).flatten()
    assert result.rejected_steps == 0
    assert offsets.std().item() == pytest.approx(0.3, rel=0.05)
    assert offsets.mean().item() == pytest.approx(0.0, abs=0.02)


def test_backprop_full_passes_the_whole_gradient_to_the_anchor():
    """With a data energy that is constant in H, a sample is anchor + (noise terms): its
    derivative w.r.t. the anchor is exactly 1 (the prior's centre moves with the anchor)."""
    anchor = torch.randn(1, 2, 3, requires_grad=True)
    result = langevin_sample(
        anchor, lambda h: 0.0 * h.sum((2, 3)), n_chains=2, n_steps=5,
        step_size=0.01, init_std=0.1, prior_std=0.1, backprop="full", generator=torch.Generator().manual_seed(0),
    )
    (grad,) = torch.autograd.grad(result.samples.sum(), anchor)
    # r = rms(anchor) is a constant of the step, so only the centre carries the gradient: 2 chains.
    assert torch.allclose(grad, torch.full_like(grad, 2.0), atol=1e-5)


def test_chains_run_in_fp32_for_an_fp16_anchor():
    """A drift far below fp16's spacing at the anchor's values survives in the samples."""
    anchor = torch.full((1, 1, 4), 8.0, dtype=torch.float16)  # fp16 spacing at 8 is 2**-7
    slope = 1e-2
    result = langevin_sample(
        anchor, lambda h: slope * h.sum((2, 3)), n_chains=1, n_steps=3, step_size=1e-4,
        noise_std=0.0, prior_std=0.0,
    )
    assert result.samples.dtype == torch.float32
    expected = 8.0 - 3 * 0.5 * 1e-4 * 64.0 * slope  # r = 8: three steps of (alpha / 2) r^2 slope
    assert torch.allclose(result.samples, torch.full_like(result.samples, expected), atol=1e-6)
    assert (8.0 - expected) < 2**-8  # the drift is below half of fp16's spacing


def test_data_term_lowers_the_data_energy_against_prior_only_chains():
    """compare_prior_only runs prior-only chains on the same noise: a data energy with a clear
    slope ends lower on the SGLD chains than on those."""
    gen = torch.Generator().manual_seed(0)
    anchor = torch.ones(1, 2, 3)
    data = lambda h: 5.0 * h.sum((2, 3))  # noqa: E731
    result = langevin_sample(anchor, data, n_chains=8, n_steps=10, step_size=0.01, init_std=0.1, prior_std=0.3,
                             generator=gen, compare_prior_only=True)
    assert result.data_energy_after < result.data_energy_prior_only
    assert result.as_dict()["sgld/data_energy_gain"] == pytest.approx(
        result.data_energy_after - result.data_energy_prior_only)
    # The same seed without the comparison draws the same chains.
    plain = langevin_sample(anchor, data, n_chains=8, n_steps=10, step_size=0.01, init_std=0.1, prior_std=0.3,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.samples, result.samples)


def test_init_offset_starts_the_chains_there_in_units_of_r():
    anchor = torch.full((1, 2, 3), 2.0)  # r = 2
    start = torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    result = langevin_sample(anchor, lambda h: 0.0 * h.sum((2, 3)), n_chains=4, n_steps=0, step_size=0.1,
                             init_std=1.0, prior_std=1.0, init_offset=start)
    assert torch.allclose(result.samples, anchor.unsqueeze(1) + 2.0 * start)
    assert torch.allclose(result.offsets, start)
    with pytest.raises(ValueError, match="init_offset"):
        langevin_sample(anchor, lambda h: 0.0 * h.sum((2, 3)), n_chains=3, n_steps=1, step_size=0.1,
                        init_offset=start)


def test_linear_energy_settles_at_the_exact_stationary_mean():
    """For E_data(H) = <g, H> and a prior of std sigma = p r, Langevin dynamics settle at
    anchor - sigma^2 g. The drift weighted p^2 (1 - a) r^2 (matched to the exact prior step) lands
    there at any step size; the Euler weight (alpha / 2) r^2 would overshoot by x / (1 - e^-x),
    x = alpha / (2 p^2). Without noise the chains converge to that point deterministically."""
    slope = torch.tensor([0.3, -0.2, 0.1])
    anchor = torch.tensor([[[1.0, 2.0, 2.0]]])  # r = rms = sqrt(3)
    r2 = anchor.pow(2).mean()
    for prior_std, alpha in ((1.0, 0.5), (0.5, 2.0)):
        result = langevin_sample(anchor, lambda h: (h * slope).flatten(2).sum(-1), n_chains=1, n_steps=400,
                                 step_size=alpha, noise_std=0.0, prior_std=prior_std)
        expected = anchor[0] - prior_std**2 * r2 * slope
        assert torch.allclose(result.samples[0], expected, atol=1e-5), (prior_std, alpha)


def test_backprop_full_runs_under_no_grad_as_evaluation_does():
    """BACKPROP full keeps the chain's graph in training; under no_grad (evaluation) there is no
    graph to keep, and the chains are those of BACKPROP detach."""
    anchor = torch.randn(1, 2, 3)
    energy = lambda h: h.pow(2).flatten(2).sum(-1)  # noqa: E731
    kwargs = dict(n_chains=3, n_steps=2, step_size=0.1, init_std=0.5, prior_std=1.0)
    with torch.no_grad():
        full = langevin_sample(anchor, energy, backprop="full", generator=torch.Generator().manual_seed(0), **kwargs)
    detach = langevin_sample(anchor, energy, backprop="detach", generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(full.samples, detach.samples)


def test_gradient_scale_keeps_a_half_precision_energy_gradient_finite():
    """An fp16 energy with a 1 / T_E factor (T_E = 1e-3) overflows fp16 in its backward pass;
    scaled by T_E before the gradient and unscaled after, the chains follow the fp32 gradient."""
    weight = torch.full((3, 3), 30.0)

    def energy(h):  # fp16 layers, then the free energy in fp32 with its 1 / T_E, as EMPL's energy
        return (h.half() @ weight.half()).float().sum((2, 3)) / 1e-3

    anchor = torch.full((1, 2, 3), 40.0)
    kwargs = dict(n_chains=1, n_steps=1, step_size=1e-6, noise_std=0.0, prior_std=0.0)
    plain = langevin_sample(anchor, energy, **kwargs)
    scaled = langevin_sample(anchor, energy, gradient_scale=1e-3, **kwargs)
    reference = langevin_sample(anchor, lambda h: (h @ weight).sum((2, 3)) / 1e-3, **kwargs)
    assert plain.rejected_steps == 1  # the unscaled fp16 gradient was inf: the step was rejected
    assert scaled.rejected_steps == 0
    assert torch.allclose(scaled.samples, reference.samples, rtol=1e-3)


def test_the_data_energy_at_the_chains_end_is_evaluated_once():
    calls = []

    def energy(h):
        calls.append(h.shape)
        return h.pow(2).flatten(2).sum(-1)

    langevin_sample(torch.ones(1, 2, 3), energy, n_chains=2, n_steps=3, step_size=0.1, prior_std=1.0,
                    generator=torch.Generator().manual_seed(0), compare_prior_only=True)
    # 3 steps, then the chains' end once (energy after and the comparison share it) and the
    # prior-only chains' end.
    assert len(calls) == 3 + 1 + 1
