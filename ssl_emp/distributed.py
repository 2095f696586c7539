"""Multi-process training with ``torch.distributed`` (DDP), launched by ``torchrun``.

Every rank holds the same score table: each global batch (the same index list on every rank,
from the shared seed) is split into strided shards, each rank trains its shard, and the
per-sample losses, memory terms and bank features of all shards are all-gathered so every rank
records the whole batch. Selections are then identical on every rank without any broadcast.
Rank 0 alone writes logs, checkpoints and results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from lightly.utils.dist import gather as gather_with_grad

from ssl_emp.errors import UserInputError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs, checkpoints and results."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """torchrun (or any launcher that sets WORLD_SIZE > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str, timeout_s: float) -> DistributedContext:
    """Join the process group that torchrun describes in the environment (or stay single).

    NCCL on CUDA, gloo on CPU. ``timeout_s`` bounds every collective, so a job whose peer died
    fails instead of hanging.
    """
    if not launched_by_torchrun():
        return DistributedContext()
    if not dist.is_available():
        raise UserInputError("this torch build has no torch.distributed; run one process")
    context = DistributedContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(context.local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return context


def shard(batch: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """This rank's strided share of a global batch: ``batch[rank::world_size]``."""
    return batch[context.rank :: context.world_size]


def shard_order(batch: torch.Tensor, world_size: int) -> torch.Tensor:
    """The batch's indices in the order of the gathered shards (rank 0's, rank 1's, ...)."""
    if world_size == 1:
        return batch
    return torch.cat([batch[rank::world_size] for rank in range(world_size)])


def shard_sizes(batch_size: int, world_size: int) -> list[int]:
    """Sizes of the strided shards of a batch of ``batch_size`` samples."""
    return [len(range(rank, batch_size, world_size)) for rank in range(world_size)]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gathered_sizes(count: int, device: torch.device) -> list[int]:
    """Every rank's ``count``, in rank order."""
    if not is_distributed():
        return [count]
    value = torch.tensor([count], device=device)
    values = [torch.zeros_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(values, value)
    return [int(v) for v in values]


def all_gather_rows(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order (no gradient).

    Rows may differ in number between ranks: ``sizes`` (per rank) when known, else gathered.
    """
    if not is_distributed():
        return tensor
    world = dist.get_world_size()
    if sizes is None:
        sizes = gathered_sizes(tensor.shape[0], tensor.device)
    longest = max(sizes)
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def gather_rows_with_grad(tensor: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, int]:
    """Every rank's rows (gradients flow back to each rank's own rows) and this rank's offset.

    Returns:
        (all rows in rank order, index of this rank's first row).
    """
    if not is_distributed():
        return tensor, 0
    rank = dist.get_rank()
    longest = max(sizes)
    padding = longest - tensor.shape[0]
    if padding:
        tensor = torch.cat([tensor, tensor.new_zeros((padding, *tensor.shape[1:]))])
    parts = gather_with_grad(tensor.contiguous())
    rows = torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
    return rows, sum(sizes[:rank])


def all_gather_objects(value: object) -> list[object]:
    """Every rank's ``value`` (pickled), in rank order; ``[value]`` for a single process."""
    if not is_distributed():
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_error(message: str | None) -> str | None:
    """Rank 0's error message (or None) on every rank, so all ranks fail together."""
    return all_gather_objects(message)[0]


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
