"""The FIFO queue of MoCo keys, stored as buffers so checkpoints carry it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """A ring buffer of the most recent ``size`` keys.

    ``keys``, ``pointer`` (next write position) and ``filled`` (valid rows) are buffers, so the
    queue is part of ``state_dict`` and is restored on resume.

    Args:
        size: number of keys kept (M).
        dim: key dimension.
    """

    keys: torch.Tensor
    pointer: torch.Tensor
    filled: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def negatives(self) -> torch.Tensor:
        """The valid keys (before the queue is full, the first ``filled`` rows)."""
        return self.keys[: int(self.filled)]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write L2-normalised ``keys`` at the pointer, wrapping around the end.

        A batch that crosses the end is split across it, so none of its keys is dropped; a
        batch larger than the queue keeps its last ``size`` keys.
        """
        keys = F.normalize(keys.detach().float(), dim=1)[-self.size :]
        count = len(keys)
        positions = (int(self.pointer) + torch.arange(count, device=keys.device)) % self.size
        self.keys[positions] = keys.to(self.keys.dtype)
        self.pointer.fill_((int(self.pointer) + count) % self.size)
        self.filled.fill_(min(int(self.filled) + count, self.size))
