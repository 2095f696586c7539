"""Joining a multi-process (DDP) job launched by ``torchrun``.

Every rank holds the same score table: each global batch (the same index list on every rank,
from the shared seed) is split into strided shards (:class:`ssl_emp.data.batch.GlobalBatch`),
each rank trains its shard, and the pruner all-gathers the per-sample losses and memory terms
of all shards so every rank records the whole batch. Selections are then identical on every
rank without any broadcast. Rank 0 alone writes logs, checkpoints and results. The collective
operations themselves live in :mod:`ssl_emp.collectives`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

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
