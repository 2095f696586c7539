"""Budget accounting: sample-visits, effective pruning rate, training-count inequality and
the other per-epoch diagnostics of the score table (docs/design.md, section 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ssl_emp.pruning.score_table import ScoreTable


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


def quantiles(values: np.ndarray, prefix: str) -> dict[str, float | None]:
    """``{prefix}_mean``, ``_std``, ``_q10``, ``_q50`` and ``_q90`` of the finite ``values``
    (None each when there are none: the never-trained samples score ``+inf``)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {f"{prefix}_{name}": None for name in ("mean", "std", "q10", "q50", "q90")}
    q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std()),
        f"{prefix}_q10": float(q10),
        f"{prefix}_q50": float(q50),
        f"{prefix}_q90": float(q90),
    }


def selection_stats(
    table: ScoreTable, epoch: int, kept: np.ndarray, scores: np.ndarray | None
) -> dict[str, Any]:
    """Statistics of one selection: the score's quantiles, the share of the kept set that the
    loss-only top-K also holds, and the mean age of the scores in epochs."""
    stats: dict[str, Any] = {"epoch": epoch, "selected": int(len(kept))}
    if scores is not None:
        stats.update(quantiles(scores, "score"))
        loss = table.loss.double().cpu().numpy()
        loss_top = np.argsort(-loss, kind="stable")[: len(kept)]
        stats["overlap_with_loss_ranking"] = float(
            len(np.intersect1d(loss_top, kept)) / max(len(kept), 1)
        )
    last_seen = table.last_seen.cpu().numpy()
    seen = last_seen >= 0
    stats["score_age_mean"] = float((epoch - last_seen[seen]).mean()) if seen.any() else None
    return stats


def epoch_diagnostics(
    table: ScoreTable, warmup_epochs: int, epoch: int, kept: torch.Tensor
) -> dict[str, Any]:
    """LFL diagnostics after ``epoch`` was trained on the samples ``kept``.

    Returns the Gini coefficient of the training counts, the fraction of samples trained at
    most once, the fraction not trained since warm-up ended (None during warm-up), and the
    memory term's mean, spread and quantiles over all samples and over the kept ones.
    """
    counts = table.train_count
    stats: dict[str, Any] = {
        "train_count_gini": gini(counts),
        "frac_trained_at_most_once": float((counts <= 1).float().mean()),
        "frac_never_revisited": (
            float((table.last_seen < warmup_epochs).float().mean())
            if epoch >= warmup_epochs
            else None
        ),
    }
    memory = table.memory.double().cpu().numpy()
    stats.update(quantiles(memory, "memory"))
    stats.update(quantiles(memory[kept.cpu().numpy()], "memory_kept"))
    return stats
