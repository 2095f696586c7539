"""The grid of a sweep: policies x pruning rates x seeds (x beta, x memory estimator,
x direction), each cell a run name and the config overrides that make it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ssl_emp.errors import UserInputError
from ssl_emp.pruning import POLICIES
from ssl_emp.pruning.scores import SCORES

ESTIMATORS = ("batch", "bank")


@dataclass(frozen=True)
class SweepRun:
    """One cell of the grid.

    Attributes:
        name: directory name under the sweep directory.
        overrides: config overrides that make this run.
    """

    name: str
    overrides: tuple[str, ...] = field(default=())


def _number(value: float) -> str:
    return f"{value:g}"


def _directions(policy: str, directions: Sequence[str]) -> list[str | None]:
    """The direction axis of one policy: None (its default) unless it ranks a score."""
    if not directions or not POLICIES[policy].ranks_scores:
        return [None]
    return list(dict.fromkeys(directions))


def plan_runs(
    policies: Sequence[str],
    rates: Sequence[float],
    seeds: Sequence[int],
    betas: Sequence[float] = (),
    estimators: Sequence[str] = (),
    directions: Sequence[str] = (),
) -> list[SweepRun]:
    """The grid, in a stable order. ``full`` runs once per seed (it has no rate); the beta and
    estimator axes apply to policies that rank the EMP score (``emp``) only, the direction
    axis to policies that rank a score (a run in a policy's own default direction gets no
    suffix); a policy whose score reads the feature bank (``prototypical``) gets
    ``memory.estimator=bank``.

    Raises:
        UserInputError: an unknown policy or direction, or a rate outside [0, 1).
    """
    for policy in policies:
        if policy not in POLICIES:
            raise UserInputError(
                f"unknown policy '{policy}' in --policies; choose from {', '.join(POLICIES)}"
            )
    for direction in directions:
        if direction not in ("hard", "easy"):
            raise UserInputError(f"unknown direction '{direction}' in --directions; use hard,easy")
    for rate in rates:
        if not 0.0 <= rate < 1.0:
            raise UserInputError(f"--rates: {rate:g} is outside [0, 1); use rates like 0.3,0.7")
    for name in estimators:
        if name not in ESTIMATORS:
            raise UserInputError(
                f"unknown memory estimator '{name}' in --estimators; use {','.join(ESTIMATORS)}"
            )
    for seed in seeds:
        if seed < 0:
            raise UserInputError(f"--seeds: {seed} is negative; seeds are 0, 1, 2, ...")
    runs = []
    for policy in policies:
        for seed in seeds:
            if POLICIES[policy].always_full:
                runs.append(SweepRun(f"full_s{seed}", ("pruning.policy=full", f"seed={seed}")))
                continue
            for rate in rates:
                base: tuple[str, ...] = (
                    f"pruning.policy={policy}",
                    f"pruning.rate={rate}",
                    f"seed={seed}",
                )
                if SCORES[POLICIES[policy].default_score].needs_bank:
                    base = (*base, "memory.estimator=bank")
                name = f"{policy}_r{_number(rate)}_s{seed}"
                emp = SCORES[POLICIES[policy].default_score].memory_term
                beta_axis: list[float | None] = [*betas] if emp and betas else [None]
                estimator_axis: list[str | None] = [*estimators] if emp and estimators else [None]
                for way in _directions(policy, directions):
                    for beta in beta_axis:
                        for estimator in estimator_axis:
                            extra, suffix = [], ""
                            if beta is not None:
                                extra.append(f"pruning.beta={beta}")
                                suffix += f"_b{_number(beta)}"
                            if estimator is not None:
                                extra.append(f"memory.estimator={estimator}")
                                suffix += f"_{estimator}"
                            if way is not None:
                                extra.append(f"pruning.direction={way}")
                                if way != POLICIES[policy].default_direction:
                                    suffix += f"_{way}"
                            runs.append(SweepRun(name + suffix, (*base, *extra)))
    return runs
