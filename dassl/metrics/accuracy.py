from typing import List, Sequence

import torch


def compute_accuracy(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> List[torch.Tensor]:
    """Top-k accuracy in percent, one 1-element tensor per k (as Dassl).

    Args:
        output: logits [batch, num_classes] (or a tuple/list whose first item is).
        target: labels [batch].
        topk: the k values, e.g. (1, 5).
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    _, pred = output.topk(max(topk), 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand(pred.size(1), -1))
    batch_size = target.size(0)
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
