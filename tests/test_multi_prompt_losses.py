"""Multi-prompt losses against independent, loop-based computations."""
import math

import pytest
import torch
import torch.nn.functional as F

from trainers.multi_prompt_losses import (
    free_energy,
    mixture_nll,
    open_vocabulary_loss,
    per_prompt_cross_entropy,
    proda_diagonal_gaussian_bound_loss,
    proda_gaussian_bound_loss,
    prompt_context_decorrelation,
    prompt_orthogonality,
)


def normalized(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_proda_bound_matches_explicit_covariances():
    K, C, D, B = 3, 4, 5, 2
    text = normalized(K, C, D, seed=1)
    images = normalized(B, D, seed=2)
    labels = torch.tensor([1, 3])
    tau = torch.tensor(7.0, dtype=torch.float64)
    mu = text.mean(0)
    expected = 0.0
    for b in range(B):
        z, y = images[b], labels[b].item()
        terms = []
        for c in range(C):
            cov = lambda i, j: sum(  # noqa: E731  (1/K) sum_k d_ki d_kj^T
                torch.outer(text[k, i] - mu[i], text[k, j] - mu[j]) for k in range(K)
            ) / K
            quad = z @ (cov(c, c) + cov(y, y) - cov(c, y) - cov(y, c)) @ z
            terms.append(tau * z @ mu[c] + 0.5 * tau**2 * quad)
        expected += -(tau * z @ mu[y] - torch.logsumexp(torch.stack(terms), 0))
    expected /= B
    got = proda_gaussian_bound_loss(tau * torch.einsum("bd,kcd->kbc", images, text), labels)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_proda_bound_is_cross_entropy_when_prompts_agree():
    text = normalized(1, 4, 6, seed=3).expand(3, 4, 6)  # K identical prompts: zero covariance
    images, labels, tau = normalized(5, 6, seed=4), torch.tensor([0, 1, 2, 3, 0]), torch.tensor(10.0)
    expected = F.cross_entropy(tau * images @ text[0].t(), labels)
    logits = tau * torch.einsum("bd,kcd->kbc", images, text)
    assert proda_gaussian_bound_loss(logits, labels).item() == pytest.approx(expected.item())


def test_proda_diagonal_bound_matches_per_dimension_covariances():
    """Loop over classes and dimensions: S_ij[d] = (1/(K+1)) sum_k d_kid d_kjd (CLIP_Calibration's form)."""
    K, C, D, B = 4, 3, 5, 2
    text = normalized(K, C, D, seed=5)
    images = normalized(B, D, seed=6)
    labels = torch.tensor([2, 0])
    tau = torch.tensor(9.0, dtype=torch.float64)
    mu = text.mean(0)
    def cov(i, j, d):
        return sum((text[k, i, d] - mu[i, d]) * (text[k, j, d] - mu[j, d]) for k in range(K)) / (K + 1)

    expected = 0.0
    for b in range(B):
        z, y = images[b], labels[b].item()
        terms = []
        for c in range(C):
            quad = sum(z[d] ** 2 * (cov(c, c, d) + cov(y, y, d) - 2 * cov(c, y, d)) for d in range(D))
            terms.append(tau * z @ mu[c] + 0.5 * tau**2 * quad)
        expected += -(tau * z @ mu[y] - torch.logsumexp(torch.stack(terms), 0))
    expected /= B
    got = proda_diagonal_gaussian_bound_loss(text, images, labels, tau)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_proda_diagonal_bound_is_cross_entropy_when_prompts_agree():
    text = normalized(1, 4, 6, seed=3).expand(3, 4, 6)
    images, labels, tau = normalized(5, 6, seed=4), torch.tensor([0, 1, 2, 3, 0]), torch.tensor(10.0)
    expected = F.cross_entropy(tau * images @ text[0].t(), labels)
    assert proda_diagonal_gaussian_bound_loss(text, images, labels, tau).item() == pytest.approx(expected.item())


def test_prompt_context_decorrelation_is_mean_abs_cosine():
    features = normalized(4, 6, seed=7)
    expected = sum(abs(features[i] @ features[j]) for i in range(4) for j in range(4) if i != j) / 12
    assert prompt_context_decorrelation(features).item() == pytest.approx(expected.item())
    assert prompt_context_decorrelation(torch.eye(3)).item() == 0.0
    assert prompt_context_decorrelation(features[:1]).item() == 0.0


def test_mixture_nll_equals_log_of_mean_probability():
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([0, 4, 2, 2])
    probs = logits.softmax(-1).mean(0)
    expected = -torch.log(probs[torch.arange(4), labels]).mean()
    assert mixture_nll(logits, labels).item() == pytest.approx(expected.item())
    # One prompt: plain cross-entropy.
    assert mixture_nll(logits[:1], labels).item() == pytest.approx(F.cross_entropy(logits[0], labels).item())


def test_open_vocabulary_losses():
    seen = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    unseen = torch.tensor([[1.0, 1.0, 1.0], [5.0, 0.0, 0.0]])
    # entropy: row 1 uniform -> -log 3; row 2 by hand.
    q = torch.softmax(unseen[1], 0)
    expected = (-math.log(3) + (q * q.log()).sum().item()) / 2
    assert open_vocabulary_loss(seen, unseen, "entropy").item() == pytest.approx(expected, rel=1e-6)
    # energy: hinge of lse(unseen) - lse(seen) per row.
    gaps = torch.logsumexp(unseen, 1) - torch.logsumexp(seen, 1)
    assert open_vocabulary_loss(seen, unseen, "energy").item() == pytest.approx(gaps.clamp_min(0).mean().item())
    assert open_vocabulary_loss(seen, unseen, "none").item() == 0.0
    with pytest.raises(ValueError, match="OPEN_LOSS"):
        open_vocabulary_loss(seen, unseen, "kl")


def test_free_energy_and_orthogonality():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]])  # [1, B=2, C=2]
    expected = -(math.log(2) + math.log(math.e + math.e**2)) / 2 / 0.5
    assert free_energy(logits, temperature=0.5).item() == pytest.approx(expected)
    eye = torch.eye(3).unsqueeze(1)  # K=3 orthogonal prompts, one class
    assert prompt_orthogonality(eye).item() == 0.0
    same = torch.ones(3, 1, 2) / math.sqrt(2)
    assert prompt_orthogonality(same).item() == pytest.approx(1.0)


def test_per_prompt_cross_entropy_is_the_mean_of_each_prompts_loss():
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.tensor([0, 4, 2, 2])
    expected = sum(F.cross_entropy(logits[s], labels) for s in range(3)) / 3
    # fp32 inside, against a float64 sum of 12 terms: a few float32 ulps.
    assert per_prompt_cross_entropy(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    # Two prompts that classify and a third that does not (uniform): per prompt, the third costs
    # its full cross-entropy (log 5) / 3; in the mixture the others hide it (at most log 3/2).
    good = 10.0 * F.one_hot(labels, 5).double().expand(2, 4, 5)
    with_blind = torch.cat([good, torch.zeros(1, 4, 5, dtype=torch.float64)])
    assert per_prompt_cross_entropy(with_blind, labels) - per_prompt_cross_entropy(good, labels) > 0.5
    assert mixture_nll(with_blind, labels) - mixture_nll(good, labels) < math.log(1.5)
