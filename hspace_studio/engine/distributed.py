"""Running index building and PCA on several processes with ``torch.distributed``.

A job started by ``torchrun`` (or ``python -m torch.distributed.run``, ``accelerate
launch``, a cluster launcher that sets the same variables) finds ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment;
:func:`init` then joins the process group (NCCL when the model is on a CUDA device,
gloo on the CPU). Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is
initialised and every helper here is a cheap no-op for a single process, so the
single-process path is unchanged.

The discovery code uses:

- :func:`shard` to give each rank a contiguous block of the seeds;
- :func:`all_reduce_sum` / :func:`reduce_sum_to_main` (float64 arrays summed over
  ranks), :func:`gather_object_to_main`, :func:`all_gather_object` and
  :func:`broadcast_object` to combine PCA statistics and index shards;
- :func:`is_main` so that only rank 0 prints progress and writes the output file.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence

import numpy as np
import torch


def env_world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def is_main() -> bool:
    return rank() == 0


def device_for(device: Optional[str]) -> Optional[str]:
    """The device a rank should use: ``cuda:LOCAL_RANK`` for an automatic or bare ``cuda``
    choice when launched on several processes with GPUs; otherwise ``device`` as given."""
    if env_world_size() > 1 and device in (None, "", "auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return device


def init(device: Optional[torch.device] = None) -> bool:
    """Join the process group described by the launcher's environment variables.

    Returns True when running on several processes. Backend: NCCL for a CUDA ``device``
    (the rank's GPU is made current), gloo otherwise. Does nothing (returns False) when
    ``WORLD_SIZE`` is unset or 1.
    """
    import torch.distributed as dist

    if env_world_size() <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    global _owned
    _owned = True
    return dist.get_world_size() > 1


_owned = False  # whether init() made the process group (then shutdown() ends it)


def shutdown() -> None:
    """End the process group that :func:`init` started (one made by the caller stays)."""
    import torch.distributed as dist

    global _owned
    if _owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def shard(items: Sequence, r: Optional[int] = None, n: Optional[int] = None) -> list:
    """Rank ``r``'s contiguous block of ``items`` (sizes differ by at most one)."""
    r = rank() if r is None else r
    n = world_size() if n is None else n
    items = list(items)
    return items[len(items) * r // n: len(items) * (r + 1) // n]


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier()


def _comm_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(x, inplace: bool = False):
    """Sum ``x`` (a numpy array or tensor) over the ranks, in float64; returns the same
    kind (numpy float64 or a float64 tensor on ``x``'s device). Identity on one process.

    ``inplace=True`` with a C-contiguous float64 numpy array and the gloo backend sums
    into ``x`` itself, without a copy (for large matrices); otherwise ``x`` is untouched.
    """
    import torch.distributed as dist

    is_np = isinstance(x, np.ndarray)
    if not active():
        if is_np:
            return x if inplace and x.dtype == np.float64 else np.array(x, dtype=np.float64)
        return x.double()
    if (is_np and inplace and x.dtype == np.float64 and x.flags.c_contiguous
            and _comm_device().type == "cpu"):
        dist.all_reduce(torch.from_numpy(x), op=dist.ReduceOp.SUM)  # shares x's memory
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)) if is_np else x.double()
    dev = t.device
    buf = t.to(_comm_device()).contiguous().clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    buf = buf.to(dev)
    return buf.numpy() if is_np else buf


def reduce_sum_to_main(x: np.ndarray) -> np.ndarray:
    """Sum the C-contiguous float64 array ``x`` over the ranks into rank 0's ``x`` (in
    place with gloo); other ranks' ``x`` is left undefined. Identity on one process."""
    import torch.distributed as dist

    if not active():
        return x
    assert x.dtype == np.float64 and x.flags.c_contiguous
    if _comm_device().type == "cpu":
        dist.reduce(torch.from_numpy(x), dst=0, op=dist.ReduceOp.SUM)  # shares x's memory
        return x
    buf = torch.from_numpy(x).to(_comm_device())
    dist.reduce(buf, dst=0, op=dist.ReduceOp.SUM)
    if dist.get_rank() == 0:
        x[...] = buf.cpu().numpy()
    return x


def gather_object_to_main(obj: Any) -> Optional[List[Any]]:
    """Every rank's ``obj`` in rank order on rank 0; None on the others."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out: Optional[List[Any]] = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order. ``[obj]`` on one process."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    import torch.distributed as dist

    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
