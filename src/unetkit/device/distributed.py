"""torchrun / SLURM environment -> one process group; rank-0 helpers. Single-process runs use the
same code with world size 1, so there is one training path."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

from unetkit.device import select_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_name: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...).

    NCCL on GPUs, gloo on CPUs. Without those variables, a single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=select_device(device_name))
    rank = _launch_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def teardown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shard(items: Sequence[T], context: DistributedContext) -> list[T]:
    """This rank's share of ``items`` (every item on exactly one rank, none repeated)."""
    return list(items[context.rank :: context.world_size])


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(tensor)
    return tensor


def all_reduce_max(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The elementwise maximum over ranks (a new tensor; ``tensor`` is left as it is)."""
    if not context.enabled:
        return tensor
    result = tensor.clone()
    dist.all_reduce(result, op=dist.ReduceOp.MAX)
    return result


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank. DDP sends them before each forward
    pass, but each rank's last training step updates its own copy, and validation and checkpoints
    must see rank 0's."""
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def all_gather_lists(items: list[T], context: DistributedContext) -> list[T]:
    """Every rank's ``items``, concatenated in rank order, on every rank."""
    if not context.enabled:
        return list(items)
    gathered: list[list[T] | None] = [None] * context.world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part or []]


def from_main(value: T, context: DistributedContext) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def launched_as_main() -> bool:
    """Whether torchrun started this process as rank 0 (or no torchrun at all); readable before
    the process group exists, e.g. to decide who logs."""
    return _launch_rank() == 0


def _launch_rank() -> int:
    return int(os.environ.get("RANK", "0"))
