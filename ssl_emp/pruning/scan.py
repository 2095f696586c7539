"""SCAN (Guo & Kankanhalli, arXiv:2411.09126): dynamic pruning of both tails of the SSL loss.

Its released MoCo v3 code (guoyang9/SCAN, ``moco-scan/scan_module.py`` and ``main_moco.py``)
works in cycles of ``T + 1`` epochs after a warm-up:

1. a full-data epoch scores every sample: the ``rho_min`` share with the lowest loss is
   "redundant", the ``rho_max`` share with the highest loss "ill-matched". Each view order has
   its own loss (q1 against k2, q2 against k1), so each side is chosen per view order and the
   two choices intersected; an intersection smaller than 90 % of one choice is topped up with
   random members of the symmetric difference to the size of one choice;
2. the next ``T`` epochs prune a random share ``rho(t) = (1 + cos((T - t) / T * pi)) / 2`` of
   those candidates (t = 1..T: 0.25, 0.75, 1.0 for T = 3), an annealed ratio that rises to
   all of them; then a new cycle scores everything again.

Here ``pruning.rate`` s is the candidate share rho_min + rho_max (split by
``pruning.scan_ill_share``; SCAN's defaults rho_min = rho_max = 0.35 are s = 0.7, share 0.5)
and ``pruning.scan_cycle`` is T. Where ours differs (docs/pruning.md): the tails are ranked
over the whole table after the scoring epoch, not within each batch; the warm-up is
``pruning.warmup_epochs`` epochs, not "until the epoch loss falls by less than 30 %"; the
random draws come from the epoch's seeded generator.
"""

from __future__ import annotations

import math

import numpy as np

TOP_UP_BELOW = 0.9  # SCAN tops an intersection up when it holds less than 90 % of a choice


def scan_prune_ratio(phase: int, cycle: int) -> float:
    """SCAN's annealed share of the candidates pruned in the ``phase``-th epoch (1..cycle)
    after a scoring epoch: ``(1 + cos((cycle - phase) / cycle * pi)) / 2``.

    Example:
        >>> [round(scan_prune_ratio(phase, cycle=3), 4) for phase in (1, 2, 3)]
        [0.25, 0.75, 1.0]
    """
    return 0.5 * (1.0 + math.cos((cycle - phase) / cycle * math.pi))


def _tail(losses: np.ndarray, count: int, highest: bool, tie_break: np.ndarray) -> np.ndarray:
    """The ``count`` samples with the highest (or lowest) loss; ties in ``tie_break`` order."""
    order = np.lexsort((tie_break, -losses if highest else losses))
    return order[:count]


def scan_tail(
    view_losses: np.ndarray, count: int, highest: bool, rng: np.random.Generator
) -> np.ndarray:
    """One side of SCAN's candidates: the ``count`` highest (or lowest) losses of each view
    order, intersected, and topped up to ``count`` from the symmetric difference when the
    intersection holds less than 90 % of ``count``.

    Shape:
        view_losses: (N, 2) -> sorted indices, at most ``count``.

    Example:
        Two view orders that agree on the two highest losses of four samples:

        >>> losses = np.array([[4.0, 4.0], [3.0, 3.0], [2.0, 1.0], [1.0, 2.0]])
        >>> scan_tail(losses, 2, highest=True, rng=np.random.default_rng(0)).tolist()
        [0, 1]
    """
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    tie_break = rng.random(len(view_losses))
    first = _tail(view_losses[:, 0], count, highest, tie_break)
    second = _tail(view_losses[:, 1], count, highest, tie_break)
    both = np.intersect1d(first, second)
    if len(both) < TOP_UP_BELOW * len(first):
        either = np.setxor1d(first, second)
        extra = rng.choice(either, size=len(first) - len(both), replace=False)
        both = np.union1d(both, extra)
    return np.sort(both)


def scan_candidates(
    view_losses: np.ndarray, rate: float, ill_share: float, rng: np.random.Generator
) -> np.ndarray:
    """The samples a SCAN cycle may prune: the ill-matched (highest-loss) share
    ``rate * ill_share`` and the redundant (lowest-loss) share ``rate * (1 - ill_share)``,
    each chosen by :func:`scan_tail`.

    Shape:
        view_losses: (N, 2) -> sorted indices.
    """
    total = len(view_losses)
    ill = math.floor(rate * ill_share * total + 1e-9)
    redundant = math.floor(rate * total + 1e-9) - ill
    return np.union1d(
        scan_tail(view_losses, ill, highest=True, rng=rng),
        scan_tail(view_losses, redundant, highest=False, rng=rng),
    )


def scan_pruned(
    candidates: np.ndarray, phase: int, cycle: int, rng: np.random.Generator
) -> np.ndarray:
    """The candidates pruned in the ``phase``-th epoch of a cycle: a uniform random share
    :func:`scan_prune_ratio` of them (``int()`` of the count, as SCAN's ``random.sample``)."""
    count = int(len(candidates) * scan_prune_ratio(phase, cycle))
    return np.sort(rng.choice(candidates, size=count, replace=False))
