import torch
from torch.nn import functional as F


def euclidean_squared_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances, [m, d] x [n, d] -> [m, n]."""
    return torch.cdist(input1, input2).pow(2)


def cosine_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """Pairwise 1 - cosine similarity, [m, d] x [n, d] -> [m, n]."""
    return 1 - F.normalize(input1, p=2, dim=1) @ F.normalize(input2, p=2, dim=1).t()


def compute_distance_matrix(input1: torch.Tensor, input2: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Pairwise distance matrix; ``metric`` is 'euclidean' (squared) or 'cosine'."""
    if input1.dim() != 2 or input2.dim() != 2 or input1.size(1) != input2.size(1):
        raise ValueError(f"Expected 2-D inputs with equal feature size, got {tuple(input1.shape)} and {tuple(input2.shape)}")
    if metric == "euclidean":
        return euclidean_squared_distance(input1, input2)
    if metric == "cosine":
        return cosine_distance(input1, input2)
    raise ValueError(f"Unknown distance metric: {metric}. Please choose either 'euclidean' or 'cosine'")
