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


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="BACKPROP"):
        langevin_sample(torch.ones(1, 1, 1), lambda h: h.sum((2, 3)), 1, 1, 0.1, backprop="chain")
    with pytest.raises(ValueError, match="N_PROMPTS"):
        langevin_sample(torch.ones(1, 1, 1), lambda h: h.sum((2, 3)), 0, 1, 0.1)
