"""Index batches: how an epoch's kept samples become the batches every process trains.

A batch is a tensor of sample indices, never images; under ``torchrun`` the same global
batch is drawn on every rank from the shared seed and split into strided shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_emp.collectives import all_gather_rows, gathered_sizes, rank_and_world_size


def index_batches(
    indices: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Split ``indices`` (shuffled when a generator is given) into near-equal batches.

    Every index is used exactly once: ``ceil(n / batch_size)`` batches whose sizes differ by at
    most one, none larger than ``batch_size``, so no sample is silently dropped and the
    sample-visit accounting stays exact.

    Shape:
        indices: (N,) -> a list of ``ceil(N / batch_size)`` tensors of N indices in all.

    Example:
        >>> [b.tolist() for b in index_batches(torch.arange(5), batch_size=2)]
        [[0, 1], [2, 3], [4]]
    """
    if generator is not None:
        order = torch.randperm(len(indices), generator=generator).to(indices.device)
        indices = indices[order]
    num_batches = max(1, -(-len(indices) // batch_size))
    return list(torch.tensor_split(indices, num_batches))


def shard_sizes(batch_size: int, world_size: int) -> list[int]:
    """Sizes of the strided shards of a batch of ``batch_size`` samples."""
    return [len(range(rank, batch_size, world_size)) for rank in range(world_size)]


@dataclass(frozen=True)
class GlobalBatch:
    """One step's samples across all processes, and this process's share of them.

    Attributes:
        gathered: the indices of every rank's shard, concatenated in rank order: the order in
            which per-sample values of all ranks come back from an all-gather.
        local: the indices this process trains.
        sizes: the number of samples of each rank's shard.

    Shape:
        gathered: (B,); local: (sizes[rank],); ``sum(sizes) == B``.

    Example:
        >>> batch = GlobalBatch.shard(torch.tensor([7, 3, 5, 1, 9]), rank=1, world_size=2)
        >>> batch.local.tolist(), batch.gathered.tolist(), batch.sizes
        ([3, 1], [7, 5, 9, 3, 1], [3, 2])
    """

    gathered: torch.Tensor
    local: torch.Tensor
    sizes: list[int]

    def __len__(self) -> int:
        return int(self.gathered.shape[0])

    @classmethod
    def single(cls, indices: torch.Tensor) -> GlobalBatch:
        """The batch of a single process: all samples are local."""
        return cls(gathered=indices, local=indices, sizes=[len(indices)])

    @classmethod
    def shard(cls, indices: torch.Tensor, rank: int, world_size: int) -> GlobalBatch:
        """Split a global batch (identical on every rank) into strided shards:
        rank r trains ``indices[r::world_size]``."""
        if world_size == 1:
            return cls.single(indices)
        shards = [indices[r::world_size] for r in range(world_size)]
        return cls(
            gathered=torch.cat(shards),
            local=shards[rank],
            sizes=shard_sizes(len(indices), world_size),
        )

    @classmethod
    def from_local(cls, local: torch.Tensor) -> GlobalBatch:
        """The global batch made of every rank's own ``local`` indices (gathered; for loops in
        which each rank draws its own batches, e.g. with a ``DistributedSampler``)."""
        _, world_size = rank_and_world_size()
        if world_size == 1:
            return cls.single(local)
        sizes = gathered_sizes(len(local), device=local.device)
        return cls(gathered=all_gather_rows(local, sizes), local=local, sizes=sizes)
