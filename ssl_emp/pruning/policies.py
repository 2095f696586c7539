"""The selection policies by name (docs/design.md, 2.5): one registry from which the config's
choices are checked and the sweep and compare order derive.

A policy is a selection rule plus what it ranks; the rule gets a :class:`SelectionRequest`
and returns the kept samples (and the scores it ranked, for diagnostics). Every random choice
comes from the request's generator, seeded by (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import numpy as np

from ssl_emp.config import PolicyName
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
        scores: ``scores(use_history)`` -> the score of every sample (``+inf`` = unseen).
    """

    num_samples: int
    keep: int
    rate: float
    eps: float
    rng: np.random.Generator
    scores: Callable[[bool], np.ndarray]


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
    """

    name: str
    rule: Rule
    hard_rate: bool = True
    default_score: str = "loss"
    always_full: bool = False
    full_from_delta: bool = False
    max_rate: tuple[float, str] | None = None
    ranks_history: bool = False


POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        Policy("full", _everything, hard_rate=False, always_full=True),
        Policy("random", _random),
        Policy("topk", _top),
        Policy(
            "infobatch",
            _infobatch,
            hard_rate=False,
            full_from_delta=True,
            max_rate=(0.9, "it keeps at least 10% of below-mean samples (weights up to 10x)"),
        ),
        Policy("ucb", _upper_confidence, ranks_history=True),
        Policy("eps_greedy", _eps_greedy),
        Policy("emp", _eps_greedy, default_score="emp"),
    )
}
if tuple(POLICIES) != get_args(PolicyName):  # one list of names: the config's PolicyName
    raise ImportError(f"policy registry {tuple(POLICIES)} != config {get_args(PolicyName)}")
