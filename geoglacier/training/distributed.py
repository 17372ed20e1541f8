"""torchrun: where this process stands in the job, its share of the data, and the collectives.

Every collective goes through one wrapper that turns a failed or stalled peer (past
``--dist-timeout``) into a :class:`~geoglacier.errors.DistributedError`; run alone, each
helper does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import nn
from torch.utils.data import Sampler

from geoglacier.errors import DistributedError


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env() -> Distributed:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as set by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` in order: each sample exactly once over all ranks.

    Unlike DistributedSampler it never pads with repeated samples, so all-reduced
    validation counts equal those of a single process.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _collective(name: str, call: Callable[[], Any], dist_info: Distributed) -> Any:
    """Run one collective; a peer that failed or stalled past the timeout becomes one clear error."""
    try:
        return call()
    except RuntimeError as exc:  # gloo/NCCL timeouts and lost peers (DistBackendError is one)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {dist_info.rank} of {dist_info.world_size}: {name} failed ({first}); another process "
            "stopped or waited longer than --dist-timeout; see the other ranks' messages"
        ) from exc


def all_reduce(tensor: torch.Tensor, dist_info: Distributed) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place, and return it."""
    if dist_info.active:
        import torch.distributed as dist

        _collective("all_reduce", lambda: dist.all_reduce(tensor, op=dist.ReduceOp.SUM), dist_info)
    return tensor


def barrier(dist_info: Distributed) -> None:
    """Wait until every rank gets here."""
    if dist_info.active:
        import torch.distributed as dist

        _collective("barrier", dist.barrier, dist_info)


def sync_buffers(module: nn.Module, dist_info: Distributed) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics)."""
    if not dist_info.active:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        _collective("broadcast of buffers", lambda b=buffer: dist.broadcast(b, src=0), dist_info)


def agree(flag: bool, dist_info: Distributed, device: torch.device) -> bool:
    """True when any process says True (so all ranks leave the loop together)."""
    if not dist_info.active:
        return flag
    return bool(all_reduce(torch.tensor([int(flag)], device=device), dist_info).item() > 0)


@contextmanager
def process_group(dist_info: Distributed, device: torch.device, timeout: float) -> Iterator[None]:
    """Join the job's process group for the block (unless one is up already) and leave it after.

    Args:
        dist_info: this process in the job; nothing happens when it runs alone.
        device: NCCL on CUDA (with ``device`` made current), gloo elsewhere.
        timeout: seconds a collective waits for the other processes (``--dist-timeout``).
    """
    started_group = False
    if dist_info.active:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
            started_group = True
    try:
        yield
    finally:
        if started_group:
            import torch.distributed as dist

            dist.destroy_process_group()
