"""Choosing the training device."""

from __future__ import annotations

import torch

from ssl_emp.errors import UserInputError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error.

    Under torchrun each process takes the GPU of its ``local_rank``.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            "train.device=cuda but no CUDA device is visible; use train.device=cpu"
        )
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)
