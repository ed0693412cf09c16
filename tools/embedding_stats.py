"""Pure tensor statistics behind the analysis tools (no I/O, no trainers): modality gaps and
prompt diversity. Unit-tested on embeddings with analytically known answers
(tests/test_analysis.py).

Shapes: N images, C classes, D embedding width, P prompts, F flattened prompt width.
"""
from typing import Dict

import torch

from trainers.clip_backbone import l2_normalize


# --------------------------------------------------------------------------- modality gap
def direction_consistency(gaps: torch.Tensor) -> torch.Tensor:
    """Cosine of each gap vector with the mean gap direction: [G, D] -> [G].

    1 for gaps that all point the same way; near 0 for gaps that cancel out (the mean direction
    is then set by what is left over). A zero mean gap gives nan (no direction).
    """
    gaps = gaps.double()
    mean_direction = l2_normalize(gaps.mean(dim=0, keepdim=True))  # [1, D]
    return (l2_normalize(gaps) * mean_direction).sum(dim=-1)


def class_text_embeddings(text_per_image: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """One text embedding per class: the normalised mean of its images' text targets.

    text_per_image [N, D] (the class text embedding each image was scored against; identical
    rows within a class unless the prompts were drawn per batch), labels [N] -> [C, D]; rows of
    classes without images are nan.
    """
    return l2_normalize(class_means(text_per_image, labels, n_classes))


def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean feature of each class: [N, D], [N] -> [C, D] (nan rows for empty classes)."""
    features = features.double()
    sums = torch.zeros(n_classes, features.shape[1], dtype=features.dtype).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_classes).to(features.dtype).unsqueeze(1)
    return sums / counts


def modality_gap_stats(
    image_features: torch.Tensor, text_per_image: torch.Tensor, labels: torch.Tensor, n_classes: int
) -> Dict[str, torch.Tensor]:
    """Individual and class-level modality gaps.

    image_features [N, D] and text_per_image [N, D] are used as given (the tool passes
    L2-normalised embeddings; text_per_image[i] is image i's class text embedding); labels [N].

    - individual gap of image i: image_features[i] - text_per_image[i];
    - class gap of class c: (mean image embedding of c) - (class text embedding of c), the latter
      being class_text_embeddings(...) (= the text embedding itself when it is the same for
      every image of the class);
    - magnitude: the gap's L2 norm; direction consistency: cosine with the mean gap direction
      (mean over all images for individual gaps, over classes for class gaps).

    Returns tensors keyed by name:
      individual_magnitude [N], individual_consistency [N],
      class_magnitude [C], class_consistency [C],
      per_class_individual_magnitude [C], per_class_individual_consistency [C] (class means of the
      individual values), class_count [C]. Classes without images are left out of the class
      gap's mean direction and have nan entries.
    """
    labels = labels.long()
    image_features, text_per_image = image_features.double(), text_per_image.double()
    individual = image_features - text_per_image  # [N, D]
    individual_magnitude = individual.norm(dim=-1)
    individual_consistency = direction_consistency(individual)

    counts = torch.bincount(labels, minlength=n_classes)
    present = counts > 0
    class_gaps = class_means(image_features, labels, n_classes) - class_text_embeddings(
        text_per_image, labels, n_classes
    )  # [C, D]
    class_magnitude = class_gaps.norm(dim=-1)
    class_consistency = torch.full((n_classes,), float("nan"), dtype=torch.float64)
    class_consistency[present] = direction_consistency(class_gaps[present])

    def per_class(values):
        return class_means(values.unsqueeze(1), labels, n_classes).squeeze(1)

    return {
        "individual_magnitude": individual_magnitude,
        "individual_consistency": individual_consistency,
        "class_magnitude": class_magnitude,
        "class_consistency": class_consistency,
        "per_class_individual_magnitude": per_class(individual_magnitude),
        "per_class_individual_consistency": per_class(individual_consistency),
        "class_count": counts,
    }


def summarize_gap_stats(stats: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Aggregates of modality_gap_stats: mean and std over images (individual) and over the
    classes that have images (class)."""
    present = stats["class_count"] > 0

    def mean_std(values):
        values = values.double()
        std = values.std().item() if values.numel() > 1 else 0.0
        return values.mean().item(), std

    summary = {}
    for name, values in (
        ("individual_magnitude", stats["individual_magnitude"]),
        ("individual_consistency", stats["individual_consistency"]),
        ("class_magnitude", stats["class_magnitude"][present]),
        ("class_consistency", stats["class_consistency"][present]),
    ):
        summary[f"{name}_mean"], summary[f"{name}_std"] = mean_std(values)
    return summary


# --------------------------------------------------------------------------- prompt diversity
def pairwise_cosine_distance(rows: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity between every pair of different rows: [P, F] -> [P * (P - 1) / 2]
    (upper triangle, row-major). Empty for P < 2."""
    unit = l2_normalize(rows.double())
    i, j = torch.triu_indices(rows.shape[0], rows.shape[0], offset=1)
    return 1.0 - (unit[i] * unit[j]).sum(dim=-1)


def effective_rank(rows: torch.Tensor, center: bool = False) -> float:
    """exp of the entropy of the normalised singular values (Roy & Vetterli): [P, F] -> float
    in [1, min(P, F)]. 1 for a rank-1 matrix, k for k orthonormal rows. center=True subtracts
    the row mean first (spread around the mean prompt); a matrix that is all zeros gives 0."""
    rows = rows.double()
    if center:
        rows = rows - rows.mean(dim=0, keepdim=True)
    singular_values = torch.linalg.svdvals(rows)
    total = singular_values.sum()
    if total <= 0:
        return 0.0
    p = singular_values / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def prompt_set_diversity(prompts: torch.Tensor) -> Dict[str, float]:
    """Diversity of P prompts given as rows [P, F] (flattened context vectors, or text features).

    -> mean_cosine_distance (over pairs; 0 for P < 2), effective_rank (uncentred) and
    effective_rank_centered (of the offsets from the mean prompt).
    """
    distances = pairwise_cosine_distance(prompts)
    return {
        "mean_cosine_distance": distances.mean().item() if distances.numel() else 0.0,
        "effective_rank": effective_rank(prompts),
        "effective_rank_centered": effective_rank(prompts, center=True),
    }
