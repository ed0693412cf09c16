"""Distributed data parallel helpers (torchrun), used by the engine and train.py only.

``torchrun --nproc_per_node N train.py ...`` sets WORLD_SIZE, RANK and LOCAL_RANK;
:func:`init_distributed` reads them and joins the process group (gloo on CPU, nccl on GPU).
Without them every helper here is a no-op and the run is an ordinary single process.
"""
from __future__ import annotations

import os
from typing import Any, List

import torch
import torch.distributed as dist
from .errors import UserValueError

__all__ = [
    "init_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "all_gather_object",
    "broadcast_module",
    "average_gradients_on_backward",
    "all_reduce_mean_dict",
    "cleanup_distributed",
]


def init_distributed(use_cuda: bool = True) -> bool:
    """Join the process group torchrun describes; return True when distributed.

    Backend: nccl when CUDA is used (each process then owns cuda:LOCAL_RANK), else gloo.
    A single process (no WORLD_SIZE, or WORLD_SIZE=1 under torchrun) still joins a group of one,
    so a run launched with ``torchrun --nproc_per_node 1`` takes exactly the code path of N.
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return False
    if dist.is_initialized():
        return True
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise UserValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: "
                "lower --nproc_per_node or check CUDA_VISIBLE_DEVICES"
            )
        torch.cuda.set_device(local_rank)  # torch.device("cuda") now means this rank's GPU
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> List[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] when not distributed)."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (what DDP does at construction)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients_on_backward(module: torch.nn.Module) -> list:
    """Average each trainable parameter's gradient over the ranks as soon as backward has
    accumulated it (DistributedDataParallel's gradient sync, unbucketed).

    Only ``module``'s trainable parameters are synchronised: the frozen CLIP has none. Unlike
    wrapping the module in DDP, this does not depend on the module's ``forward`` being the
    call that builds the graph: EMPL, for instance, reads the context through
    ``prompt_learner.context_sets()``. Every rank must run the same backward passes (same
    graph structure), which holds for same-shaped batches (training drops the last
    incomplete batch). Returns the hook handles.
    """
    if not is_distributed():
        return []
    world = get_world_size()

    def hook(param):
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world)

    return [p.register_post_accumulate_grad_hook(hook) for p in module.parameters() if p.requires_grad]


def all_reduce_mean_dict(values: dict) -> dict:
    """Mean over ranks of a dict of floats (same keys on every rank)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = (t / get_world_size()).cpu().tolist()
    return {k: t[keys.index(k)] for k in values}
