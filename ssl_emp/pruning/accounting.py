"""Budget accounting: sample-visits, effective pruning rate, and training-count inequality."""

from __future__ import annotations

import torch


def gini(counts: torch.Tensor) -> float:
    """Gini coefficient of non-negative counts (0 = every sample trained equally often).

    Uses the sorted-rank formula ``sum_i (2i - n - 1) c_(i) / (n * sum c)`` with ranks 1..n.
    """
    values = counts.double().flatten().sort().values
    n = values.numel()
    total = values.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
    return float(((2 * ranks - n - 1) * values).sum() / (n * total))


def effective_rate(visits: int, num_samples: int, epochs: int) -> float:
    """``1 - visits / (N * E)``: the fraction of the full-data budget not spent."""
    if num_samples == 0 or epochs == 0:
        return 0.0
    return 1.0 - visits / (num_samples * epochs)
