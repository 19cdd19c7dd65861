"""Several processes on one data set: ``torchrun`` ranks, one device and a fair share of the CPU
threads per rank, and the collective steps a data-set run needs (broadcast, gather, barrier).

    torchrun --nproc-per-node 2 -m brgm_pyro reconstruct DIR --task super-resolution

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT;
``init_distributed`` joins the process group from them (NCCL for CUDA devices, gloo for CPUs).
Without WORLD_SIZE nothing is initialised and the run is a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes, its device, and
    whether a process group was initialised (False for a plain single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: str = "cpu"
    backend: str | None = None

    @property
    def initialized(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc


def rank_device(device: str | None, local_rank: int = 0) -> str:
    """The device of one rank: ``cuda:LOCAL_RANK`` for "cuda" (or by default when a GPU is
    present), "cpu" otherwise; an explicit index ("cuda:1") is kept."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was given but torch finds no CUDA device")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                             "start at most that many processes per node")
        return f"cuda:{local_rank}"
    return device


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the ``torchrun`` process group when WORLD_SIZE is set (else: a single process).

    The backend follows the device: NCCL for CUDA, gloo for the CPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if "WORLD_SIZE" not in os.environ:
        return DistributedContext(device=rank_device(device, 0))
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    dev = rank_device(device, local_rank)
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    import torch.distributed as dist

    if not dist.is_initialized():
        if dev.startswith("cuda"):
            torch.cuda.set_device(torch.device(dev))
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, local_world_size, dev, backend)


def configure_threads(threads: int | None, ctx: DistributedContext) -> int:
    """Set torch's intra-op thread count so that the processes on a node never oversubscribe
    the cores, and return it.

    ``threads`` (``--threads``) wins; else, for several processes on a node, OMP_NUM_THREADS
    (``torchrun`` sets it to 1 unless given) or the node's cores divided by the processes per
    node; a single process keeps torch's default (OMP_NUM_THREADS, else all cores).
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    elif ctx.local_world_size > 1:
        env = _env_int("OMP_NUM_THREADS", 0)
        n = env if env > 0 else max(1, (os.cpu_count() or 1) // ctx.local_world_size)
        torch.set_num_threads(n)
    return torch.get_num_threads()


def shard(items: Sequence[T], ctx: DistributedContext) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th one, starting at its rank
    (round-robin, so the shares differ in size by at most one)."""
    return list(items[ctx.rank::ctx.world_size])


def broadcast_object(obj: Any, ctx: DistributedContext) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself for a single process)."""
    if not ctx.initialized:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, ctx: DistributedContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for a single process)."""
    if not ctx.initialized:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistributedContext) -> None:
    if ctx.initialized:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistributedContext, *, wait_for_all: bool = True) -> None:
    """Leave the process group (no-op for a single process).

    With ``wait_for_all`` (a normal end) every rank first waits at a barrier, so that no rank
    tears down its gloo connections while another still uses the group (rank 0 writes the
    tables of ``brgm evaluate`` after the others are done; a rank that left early could abort
    with "terminate called without an active exception"). After an error the barrier is
    skipped: the failing rank must not wait for ranks that may never arrive.
    """
    if ctx.initialized:
        import torch.distributed as dist

        if dist.is_initialized():
            if wait_for_all:
                dist.barrier()
            dist.destroy_process_group()
