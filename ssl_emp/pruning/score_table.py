"""The per-sample score table (docs/design.md, 2.4) and the EMP score built from it.

Per sample it keeps the latest loss and memory term, an EMA mean and variance of the loss
(for UCB), how often the sample was trained and the epoch it was last seen. Unseen samples
have loss ``+inf`` and so rank first; an unknown memory term is NaN.
"""

from __future__ import annotations

import numpy as np
import torch


def standardize(values: np.ndarray) -> np.ndarray:
    """z-scores over the finite entries; ``+inf`` stays ``+inf``, NaN becomes 0 (the mean)."""
    finite = np.isfinite(values)
    out = np.where(np.isnan(values), 0.0, values).astype(np.float64)
    if finite.sum() == 0:
        return out
    mean = values[finite].mean()
    std = values[finite].std()
    out[finite] = (values[finite] - mean) / std if std > 0 else 0.0
    return out


def fill_unknown_memory(memory: np.ndarray) -> np.ndarray:
    """NaN memory terms replaced by the mean of the known ones (0 when none is known)."""
    known = np.isfinite(memory)
    fill = memory[known].mean() if known.any() else 0.0
    return np.where(known, memory, fill)


def combine_scores(loss: np.ndarray, memory: np.ndarray, beta: float, combine: str) -> np.ndarray:
    """The EMP score: ``z(loss) + beta z(memory)`` (``zscore``) or ``loss + beta memory`` (``raw``).

    ``beta == 0`` returns the loss itself, so the ranking is exactly the loss-only one.
    """
    if beta == 0:
        return loss.astype(np.float64)
    memory = fill_unknown_memory(memory)
    if combine == "raw":
        return loss + beta * memory
    return standardize(loss) + beta * standardize(memory)


class ScoreTable:
    """Per-sample statistics on ``device`` (updated every step without host syncs).

    Args:
        num_samples: N.
        ema: factor a of the EMA mean/variance: ``mean <- a mean + (1 - a) x``.
        device: where the table lives (the training device).
    """

    def __init__(self, num_samples: int, ema: float = 0.8, device: torch.device | str = "cpu"):
        self.ema = ema
        self.loss = torch.full((num_samples,), float("inf"), device=device)
        self.memory = torch.full((num_samples,), float("nan"), device=device)
        self.loss_mean = torch.zeros(num_samples, device=device)
        self.loss_var = torch.zeros(num_samples, device=device)
        self.observations = torch.zeros(num_samples, dtype=torch.long, device=device)
        self.train_count = torch.zeros(num_samples, dtype=torch.long, device=device)
        self.last_seen = torch.full((num_samples,), -1, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return int(self.loss.shape[0])

    def record(
        self,
        indices: torch.Tensor,
        loss: torch.Tensor,
        memory: torch.Tensor | None,
        epoch: int,
    ) -> None:
        """Record the losses (and memory terms) of the samples ``indices`` trained in ``epoch``."""
        loss = loss.detach().float()
        first = self.observations[indices] == 0
        old_mean = self.loss_mean[indices]
        delta = loss - old_mean
        new_mean = torch.where(first, loss, old_mean + (1 - self.ema) * delta)
        new_var = torch.where(
            first,
            torch.zeros_like(loss),
            self.ema * (self.loss_var[indices] + (1 - self.ema) * delta.square()),
        )
        self.loss_mean[indices] = new_mean
        self.loss_var[indices] = new_var
        self.loss[indices] = loss
        if memory is not None:
            self.memory[indices] = memory.detach().float()
        self.observations[indices] += 1
        self.train_count[indices] += 1
        self.last_seen[indices] = epoch

    def set_memory(self, memory: torch.Tensor) -> None:
        """Replace every memory term (the bank estimator re-scores all samples)."""
        self.memory.copy_(memory)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The table's tensors, for checkpoints."""
        names = (
            "loss",
            "memory",
            "loss_mean",
            "loss_var",
            "observations",
            "train_count",
            "last_seen",
        )
        return {name: getattr(self, name) for name in names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        for name, value in state.items():
            getattr(self, name).copy_(value)
