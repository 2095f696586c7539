"""The selection policies by name (docs/design.md, 2.5): one registry from which the config's
choices are checked and the sweep and compare order derive.

A policy is a selection rule plus what it ranks; the rule gets a :class:`SelectionRequest`
and returns the kept samples (and the scores it ranked, for diagnostics). Every random choice
comes from the request's generator, seeded by (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np

from ssl_emp.config.schema import PolicyName
from ssl_emp.pruning.scan import scan_candidates, scan_pruned
from ssl_emp.pruning.selection import (
    Selection,
    select_eps_greedy,
    select_infobatch,
    select_random,
    select_top,
)


@dataclass(frozen=True)
class SelectionRequest:
    """What a rule may use to choose an epoch's samples.

    Attributes:
        num_samples: N.
        keep: K = ceil((1 - s) N), for the hard-rate rules.
        rate: the pruning rate s (InfoBatch's pruning probability).
        eps: share of the kept set explored at random (eps-greedy).
        rng: the epoch's generator.
        scores: ``scores(use_history)`` -> the score of every sample (``+inf`` = unseen),
            oriented so that the rule keeps the highest (see
            :func:`~ssl_emp.pruning.scores.orient`).
        pruned_epoch: epochs since the warm-up ended (0 = the first after it).
        view_losses: ``view_losses()`` -> the latest loss of each view order, (N, 2).
        memo: state the policy keeps between epochs (checkpointed with the pruner).
        scan_cycle: ``pruning.scan_cycle``.
        scan_ill_share: ``pruning.scan_ill_share``.
    """

    num_samples: int
    keep: int
    rate: float
    eps: float
    rng: np.random.Generator
    scores: Callable[[bool], np.ndarray]
    pruned_epoch: int = 0
    view_losses: Callable[[], np.ndarray] | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    scan_cycle: int = 3
    scan_ill_share: float = 0.5


Rule = Callable[[SelectionRequest], tuple[Selection, np.ndarray | None]]


def _random(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    return select_random(request.num_samples, request.keep, request.rng), None


def _top(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    scores = request.scores(False)
    return select_top(scores, request.keep, request.rng), scores


def _upper_confidence(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    scores = request.scores(True)
    return select_top(scores, request.keep, request.rng), scores


def _eps_greedy(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    scores = request.scores(False)
    return select_eps_greedy(scores, request.keep, request.eps, request.rng), scores


def _infobatch(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    scores = request.scores(False)
    return select_infobatch(scores, request.rate, request.rng), scores


def _everything(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    return Selection(np.arange(request.num_samples)), None


def _scan_phase(pruned_epoch: int, cycle: int) -> int:
    """Position in SCAN's cycle: 0 = the full-data scoring epoch, 1..cycle = pruned epochs."""
    return pruned_epoch % (cycle + 1)


def _scan_full(pruned_epoch: int, cycle: int) -> bool:
    return _scan_phase(pruned_epoch, cycle) == 0


def _scan(request: SelectionRequest) -> tuple[Selection, np.ndarray | None]:
    """SCAN (:mod:`ssl_emp.pruning.scan`): in the ``phase``-th epoch of a cycle, prune the
    annealed share of the candidates chosen from the scoring epoch's losses."""
    cycle = request.scan_cycle
    phase = _scan_phase(request.pruned_epoch, cycle)
    scored_in = request.pruned_epoch - phase  # the cycle's full-data scoring epoch
    memo = request.memo
    if memo.get("scored_in") != scored_in:
        # first pruned epoch of the cycle: the table holds the scoring epoch's losses of
        # every sample (it trained them all), so the candidates are fixed here for the cycle
        assert request.view_losses is not None
        memo["candidates"] = scan_candidates(
            request.view_losses(), request.rate, request.scan_ill_share, request.rng
        )
        memo["scored_in"] = scored_in
    candidates = memo["candidates"]
    pruned = scan_pruned(candidates, phase, cycle, request.rng)
    kept = np.setdiff1d(np.arange(request.num_samples), pruned)
    stats = {"scan_candidates": int(len(candidates)), "scan_pruned": int(len(pruned))}
    return Selection(kept, stats=stats), None


@dataclass(frozen=True)
class Policy:
    """A named selection policy.

    Attributes:
        name: the ``pruning.policy`` value.
        rule: chooses an epoch's samples.
        hard_rate: keeps exactly K samples per pruned epoch (``full`` and ``infobatch`` do not).
        default_score: what it ranks unless ``pruning.score`` says otherwise.
        always_full: trains on every sample every epoch.
        full_from_delta: trains on every sample once ``delta * E`` epochs have passed
            (InfoBatch's annealing).
        max_rate: the highest ``pruning.rate`` it supports, and why (None: any rate).
        ranks_history: ranks an upper confidence bound of the score history, not the latest
            score.
        ranks_scores: keeps one end of a ranking of ``pruning.score``, so
            ``pruning.direction`` and every score apply to it.
        default_direction: which end it keeps unless ``pruning.direction`` says otherwise.
        keeps_at_least_k: never keeps fewer than K samples in an epoch (so the batch size
            must fit K).
        full_at: ``full_at(pruned_epoch, scan_cycle)`` -> whether that epoch after the
            warm-up trains on every sample (SCAN's scoring epochs).
        needs_view_losses: reads each view order's loss (SCAN).
        reads_score: its choice depends on ``pruning.score`` (and so on the score's keys).
        in_default_sweep: ``ssl-emp sweep`` trains it unless ``--policies`` says otherwise.
        options: the ``pruning`` keys its rule reads besides rate, warm-up and anneal.
    """

    name: str
    rule: Rule
    hard_rate: bool = True
    default_score: str = "loss"
    always_full: bool = False
    full_from_delta: bool = False
    max_rate: tuple[float, str] | None = None
    ranks_history: bool = False
    ranks_scores: bool = False
    default_direction: str = "hard"
    keeps_at_least_k: bool = True
    full_at: Callable[[int, int], bool] | None = None
    needs_view_losses: bool = False
    reads_score: bool = True
    in_default_sweep: bool = True
    options: tuple[str, ...] = ()


POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        Policy(
            "full",
            _everything,
            hard_rate=False,
            always_full=True,
            keeps_at_least_k=False,
            reads_score=False,
        ),
        Policy("random", _random, reads_score=False),
        Policy("topk", _top, ranks_scores=True, in_default_sweep=False),  # eps_greedy, eps 0
        Policy(
            "infobatch",
            _infobatch,
            hard_rate=False,
            keeps_at_least_k=False,
            full_from_delta=True,
            max_rate=(0.9, "it keeps at least 10% of below-mean samples (weights up to 10x)"),
            options=("delta",),
        ),
        Policy("ucb", _upper_confidence, ranks_history=True, options=("ucb_c", "ema")),
        Policy("eps_greedy", _eps_greedy, ranks_scores=True, options=("eps",)),
        Policy("emp", _eps_greedy, default_score="emp", ranks_scores=True, options=("eps",)),
        # SCAN prunes at most pruning.rate of the samples, fewer in most epochs
        Policy(
            "scan",
            _scan,
            hard_rate=False,
            full_at=_scan_full,
            needs_view_losses=True,
            reads_score=False,
            options=("scan_cycle", "scan_ill_share"),
        ),
        # Sorscher et al.: keep the most prototypical samples, with eps-greedy exploration
        Policy(
            "prototypical",
            _eps_greedy,
            default_score="prototypicality",
            ranks_scores=True,
            default_direction="easy",
            options=("eps",),
        ),
    )
}
if tuple(POLICIES) != get_args(PolicyName):  # one list of names: the config's PolicyName
    raise ImportError(f"policy registry {tuple(POLICIES)} != config {get_args(PolicyName)}")
