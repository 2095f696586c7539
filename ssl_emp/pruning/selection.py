"""Selection rules (docs/design.md, 2.5): which samples an epoch trains on, given their scores.

All rules run on host numpy arrays with a generator seeded from (seed, epoch), so the kept set
depends only on the score table, the seed and the epoch — not on the device or on a resume.
Ties (e.g. unseen samples, all ``+inf``) are broken by a random key from the same generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Selection:
    """One epoch's kept samples.

    Attributes:
        indices: kept sample indices (sorted).
        weights: per-kept-sample loss weight (InfoBatch rescaling), or None for all ones.
        stats: what the rule reports about its choice (for ``metrics.jsonl``).
    """

    indices: np.ndarray
    weights: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def keep_count(num_samples: int, rate: float) -> int:
    """K = ceil((1 - s) N), at least 1."""
    return max(1, math.ceil((1 - rate) * num_samples - 1e-9))


def ranking(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by descending score, ties in random order."""
    tie_break = rng.random(len(scores))
    return np.lexsort((tie_break, -scores))


def select_top(scores: np.ndarray, keep: int, rng: np.random.Generator) -> Selection:
    """The ``keep`` highest scores."""
    return Selection(np.sort(ranking(scores, rng)[:keep]))


def select_random(num_samples: int, keep: int, rng: np.random.Generator) -> Selection:
    """``keep`` samples uniformly at random."""
    return Selection(np.sort(rng.choice(num_samples, size=keep, replace=False)))


def select_eps_greedy(
    scores: np.ndarray, keep: int, eps: float, rng: np.random.Generator
) -> Selection:
    """(1 - eps) K highest scores plus eps K uniformly from the rest (Raju et al. 2021)."""
    explore = round(eps * keep)
    order = ranking(scores, rng)
    greedy = order[: keep - explore]
    rest = order[keep - explore :]
    explored = rng.choice(rest, size=explore, replace=False) if explore else rest[:0]
    return Selection(np.sort(np.concatenate([greedy, explored])))


def ucb_values(mean: np.ndarray, var: np.ndarray, observations: np.ndarray, c: float) -> np.ndarray:
    """``mean + c * std`` of the score history; unseen samples ``+inf``.

    A sample with fewer than two observations has no variance of its own and takes the
    table's median std, so it is not starved of the exploration bonus.
    """
    std = np.sqrt(np.maximum(var, 0.0))
    with_history = observations >= 2
    prior = float(np.median(std[with_history])) if with_history.any() else 0.0
    std = np.where(with_history, std, prior)
    values = mean + c * std
    return np.where(observations == 0, np.inf, values)


def select_infobatch(scores: np.ndarray, rate: float, rng: np.random.Generator) -> Selection:
    """InfoBatch (Qin et al., ICLR 2024): below-mean samples pruned with probability ``rate``.

    Kept below-mean samples are reweighted by ``1 / (1 - rate)`` so the expected gradient is
    unchanged; samples at or above the mean (and unseen ones) are all kept with weight 1.
    """
    finite = np.isfinite(scores)
    mean = scores[finite].mean() if finite.any() else 0.0
    below = finite & (scores < mean)
    pruned = below & (rng.random(len(scores)) < rate)
    kept = np.flatnonzero(~pruned)
    weights = np.where(below[kept], 1.0 / (1.0 - rate), 1.0)
    return Selection(kept, weights)
