"""The FIFO queue of MoCo keys (and NNCLR's support set), stored as buffers so checkpoints
carry it, with its position mirrored on the host so using it never waits for the device."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """A ring buffer of the most recent ``size`` keys.

    ``keys``, ``pointer`` (next write position) and ``filled`` (valid rows) are buffers, so the
    queue is part of ``state_dict`` and is restored on resume. ``pointer`` and ``filled`` are
    also kept as Python ints, which the queue reads: reading the buffers (``int(pointer)``)
    would make the host wait for the device twice per step on a GPU. The ints are set from the
    buffers when a state dict is loaded; every rank enqueues the same keys, so they agree.

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
        self.next_position = 0  # == int(self.pointer), without reading the device
        self.valid_rows = 0  # == int(self.filled)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.next_position = int(self.pointer)  # once per load, not per step
        self.valid_rows = int(self.filled)

    def negatives(self) -> torch.Tensor:
        """The valid keys (before the queue is full, the first ``filled`` rows)."""
        return self.keys[: self.valid_rows]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write L2-normalised ``keys`` at the pointer, wrapping around the end.

        A batch that crosses the end is split across it, so none of its keys is dropped; a
        batch larger than the queue keeps its last ``size`` keys.
        """
        keys = F.normalize(keys.detach().float(), dim=1)[-self.size :]
        count = len(keys)
        # rows next_position, next_position + 1, ... modulo the size: a batch that crosses the
        # end continues at row 0
        positions = (self.next_position + torch.arange(count, device=keys.device)) % self.size
        self.keys[positions] = keys.to(self.keys.dtype)
        self.next_position = (self.next_position + count) % self.size
        self.valid_rows = min(self.valid_rows + count, self.size)
        self.pointer.fill_(self.next_position)  # a host value written to the device: no wait
        self.filled.fill_(self.valid_rows)
