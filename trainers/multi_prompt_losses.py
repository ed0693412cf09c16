"""Losses of the multi-prompt learners (ProDA, EMPL) as pure tensor functions.

Kept apart from the trainers so each is unit-tested against an independent computation.
Shapes: B images, C classes, K (or S) prompts, D feature width. Features are L2-normalised.
"""
import torch
import torch.nn.functional as F
from .errors import UserValueError


def free_energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """-(1/|B|) sum_x logsumexp_c s_c(x) / T_E.  logits: [..., B, C] -> [...]."""
    return -torch.logsumexp(logits.float(), dim=-1).mean(dim=-1) / temperature


def mixture_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_in = -(1/|B|) sum_x log((1/S) sum_s softmax(logits_s(x))[y]).

    logits: [S, B, C] (S prompts: the anchor and the SGLD samples); labels: [B].
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)  # [S, B, C]
    log_mixture = torch.logsumexp(log_probs, dim=0) - torch.log(
        torch.tensor(float(logits.shape[0]), device=logits.device)
    )
    return F.nll_loss(log_mixture, labels)


def per_prompt_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean over prompts of each prompt's cross-entropy: every prompt must classify on its
    own (EMPL's IN_LOSS per_prompt). logits: [S, B, C]; labels: [B]."""
    n_prompts, batch = logits.shape[:2]
    return F.cross_entropy(logits.float().flatten(0, 1), labels.repeat(n_prompts))


def mixture_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log of the mean of the S softmaxes: [S, B, C] -> [B, C] (EMPL's prediction)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(logits.shape[0])))


def open_vocabulary_loss(seen_logits: torch.Tensor, unseen_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """L_out on the unseen words U_i.

    seen_logits [B, |V|], unseen_logits [B, |U|].
    - "entropy": (1/|B|) sum_x sum_u q_u log q_u with q = softmax over U (minimising it makes the
      prediction over unseen words uncertain);
    - "energy": (1/|B|) sum_x [logsumexp_U s_u - logsumexp_V s_c]_+ (unseen words must explain
      an image less well than the seen classes do);
    - "none": 0.
    """
    if kind == "none" or unseen_logits.shape[-1] == 0:
        return seen_logits.new_zeros(())
    if kind == "entropy":
        log_q = F.log_softmax(unseen_logits.float(), dim=-1)
        return (log_q.exp() * log_q).sum(-1).mean()
    if kind == "energy":
        gap = torch.logsumexp(unseen_logits.float(), -1) - torch.logsumexp(seen_logits.float(), -1)
        return F.relu(gap).mean()
    raise UserValueError(f"TRAINER.EMPL.OPEN_LOSS must be 'entropy', 'energy' or 'none', got {kind!r}")


def proda_gaussian_bound_loss(prompt_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ProDA's upper bound of the expected cross-entropy under a Gaussian over text features.

    prompt_logits [K, B, C]: l_kc = tau z.t_kc for each of K prompts' text features t_kc;
    labels [B]. With mu_c the mean over K and Sigma the (biased, 1/K) covariance across prompts,

        L = -log exp(tau z.mu_y) / sum_c exp(tau z.mu_c + tau^2/2 z^T (S_cc + S_yy - 2 S_cy) z)

    z^T S_cy z = (1/K) sum_k (z.d_kc)(z.d_ky) with d_kc = t_kc - mu_c, and tau z.d_kc = l_kc - mean_k l_kc,
    so the bound needs only the per-prompt logits: no D x D matrix, and each image may have its
    own prompts (EMPL's per-image chains).
    """
    centered = prompt_logits - prompt_logits.mean(0, keepdim=True)  # [K, B, C]
    label_centered = centered.gather(2, labels.view(1, -1, 1).expand(centered.shape[0], -1, 1))
    variance = (centered - label_centered).pow(2).mean(0)  # [B, C]
    logits = prompt_logits.mean(0) + 0.5 * variance
    # The label's own variance term is 0, so this is cross-entropy on the inflated logits.
    return F.cross_entropy(logits.float(), labels)


def prompt_orthogonality(text_features: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine between different prompts' features of a class. [K, C, D] -> scalar."""
    k = text_features.shape[0]
    if k < 2:
        return text_features.new_zeros(())
    per_class = text_features.permute(1, 0, 2)  # [C, K, D]
    gram = per_class @ per_class.transpose(1, 2)  # [C, K, K]
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=gram.device)
    return gram[:, off_diagonal].pow(2).mean()


def proda_diagonal_gaussian_bound_loss(
    text_features: torch.Tensor, image_features: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor,
) -> torch.Tensor:
    """ProDA's Gaussian bound with each covariance block Sigma_ij kept to its diagonal, as
    CLIP_Calibration's ProDA computes it (trainers/classification/proda.py, CustomCLIP.forward).

    text_features [K, C, D]: K prompts' normalised features of C classes; image_features [B, D];
    labels [B]; logit_scale: tau, the multiplier (CLIP's logit_scale.exp()). With mu_c the mean
    over the K prompts, d_kc = t_kc - mu_c and the per-dimension covariance
    S_ij[d] = (1/(K+1)) sum_k d_kid d_kjd (K + 1: CLIP_Calibration's normaliser),

        L = CE( tau z.mu_c + tau^2/2 sum_d z_d^2 (S_cc + S_yy - 2 S_cy)[d],  y )

    i.e. proda_gaussian_bound_loss's z^T (S_cc + S_yy - 2 S_cy) z without the products of two
    different feature dimensions. No [D, C, C] tensor is formed: the sum is split into each
    class's own term and the label-class cross term.
    """
    feats, z = text_features.float(), image_features.float()
    n_prompts = feats.shape[0]
    mean = feats.mean(0)  # [C, D]
    centered = feats - mean  # [K, C, D]
    z_squared = z * z  # [B, D]
    own = z_squared @ centered.pow(2).sum(0).t()  # [B, C]: sum_d z_d^2 sum_k d_kcd^2
    label_centered = centered[:, labels]  # [K, B, D]
    cross = torch.einsum("kbd,kcd->bc", label_centered * z_squared, centered)  # sum_d z_d^2 sum_k d_kyd d_kcd
    spread = (own.gather(1, labels.view(-1, 1)) + own - 2 * cross) / (n_prompts + 1)
    tau = logit_scale.float()
    logits = tau * z @ mean.t() + 0.5 * tau**2 * spread
    return F.cross_entropy(logits, labels)


def prompt_context_decorrelation(context_features: torch.Tensor) -> torch.Tensor:
    """Mean |cos| between different prompts' features of the prompt without a class name
    ("ctx_1 .. ctx_M ."), ProDA's decorrelation term as CLIP_Calibration computes it (loss_m).

    context_features [N, D] normalised -> scalar (0 for N < 2).
    """
    n = context_features.shape[0]
    if n < 2:
        return context_features.new_zeros(())
    gram = context_features.float() @ context_features.float().t()  # [N, N]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=gram.device)
    return gram[off_diagonal].abs().mean()
