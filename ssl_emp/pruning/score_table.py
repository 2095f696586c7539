"""The per-sample score table (docs/design.md, 2.4) and the EMP score built from it.

Per sample it keeps the latest loss (and the latest loss of each view order, for SCAN) and
memory term, the distance to the nearest prototype (for the prototypicality score), an EMA
mean and variance of the loss (for UCB), how often the sample was trained and the epoch it was
last seen. Unseen samples have loss ``+inf`` and so rank first; an unknown memory term or
distance is NaN.
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
        self.view_loss = torch.full((num_samples, 2), float("inf"), device=device)
        self.prototype_distance = torch.full((num_samples,), float("nan"), device=device)
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
        view_losses: torch.Tensor | None = None,
    ) -> None:
        """Record the losses (and memory terms) of the samples ``indices`` trained in ``epoch``.

        Args:
            indices: the samples, (B,).
            loss: their losses, (B,).
            memory: their memory terms, (B,), or None to keep the recorded ones.
            epoch: the epoch they were trained in.
            view_losses: the loss of each view order, (B, 2); None (one loss per sample)
                records ``loss`` for both.
        """
        loss = loss.detach().float()
        # Exponentially weighted mean and variance with weight a = self.ema on the past
        # (Welford's update for an EMA): with delta = x - mean,
        #   mean <- mean + (1 - a) delta              (= a mean + (1 - a) x)
        #   var  <- a (var + (1 - a) delta^2)
        # The first observation sets mean = x and var = 0, so no sample starts pulled
        # towards 0. The indices of one call are distinct (a global batch is a slice of one
        # permutation of the kept samples), so the gather-compute-scatter below is exact.
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
        # one loss per sample (supervised) stands for both view orders: (B,) -> (B, 2)
        per_view = loss[:, None].expand(-1, 2) if view_losses is None else view_losses
        self.view_loss[indices] = per_view.detach().float()
        if memory is not None:
            self.memory[indices] = memory.detach().float()
        self.observations[indices] += 1
        self.train_count[indices] += 1
        self.last_seen[indices] = epoch

    COLUMNS = ("memory", "prototype_distance")  # set for every sample at epoch ends

    def set_column(self, name: str, values: torch.Tensor) -> None:
        """Replace a whole per-sample column (an estimator that re-scores every sample)."""
        if name not in self.COLUMNS:
            raise ValueError(f"unknown score-table column {name!r}: use one of {self.COLUMNS}")
        getattr(self, name).copy_(values)

    def set_memory(self, memory: torch.Tensor) -> None:
        """Replace every memory term (the bank estimator re-scores all samples)."""
        self.set_column("memory", memory)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The table's tensors, for checkpoints."""
        names = (
            "loss",
            "memory",
            "view_loss",
            "prototype_distance",
            "loss_mean",
            "loss_var",
            "observations",
            "train_count",
            "last_seen",
        )
        return {name: getattr(self, name) for name in names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (a checkpoint without the per-view losses or prototype
        distances, written before they existed, keeps their initial values)."""
        for name, value in state.items():
            getattr(self, name).copy_(value)
