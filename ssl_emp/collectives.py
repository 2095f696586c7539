"""Collective operations across the processes of a ``torchrun`` job, as no-ops for one process.

The lowest layer: methods (gathered negatives, MoCo's global queue), the pruner (gathered
scores) and the engine (checkpointed RNG states, errors that every rank must share) use these
without knowing how the job was launched.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` for one process)."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


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

    Shape:
        tensor: (sizes[rank], ...) -> (sum(sizes), ...), rank 0's rows first.
    """
    if not is_distributed():
        return tensor
    world = dist.get_world_size()
    if sizes is None:
        sizes = gathered_sizes(tensor.shape[0], tensor.device)
    # all_gather moves equal shapes only: every rank pads its rows with zeros to the longest
    # rank's count, and the padding is cut off each received part before concatenating
    longest = max(sizes)
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]  # world x (longest, ...)
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def gather_rows_with_grad(tensor: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, int]:
    """Every rank's rows (gradients flow back to each rank's own rows) and this rank's offset.

    Returns:
        (all rows in rank order, index of this rank's first row).

    Shape:
        tensor: (sizes[rank], D) -> (sum(sizes), D); this rank's rows are
        ``offset:offset + sizes[rank]`` with ``offset = sum(sizes[:rank])``.
    """
    if not is_distributed():
        return tensor, 0
    # lightly's all-gather lets gradients flow back to each rank's rows; imported here, so
    # that the pruner, which uses this module, does not load lightly
    from lightly.utils.dist import gather as gather_with_grad

    rank = dist.get_rank()
    longest = max(sizes)
    padding = longest - tensor.shape[0]  # equal shapes for all_gather, cut off below
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
    first = all_gather_objects(message)[0]
    return first if isinstance(first, str) else None


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (every rank gets the same answer)."""
    if not is_distributed():
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
