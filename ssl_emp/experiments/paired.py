"""Paired comparison of pruning variants against a baseline (``ssl-emp compare --baseline``).

Runs with the same seed share their initialisation and augmentation stream, so the difference
between a variant and the baseline at the same seed removes most of the seed-to-seed noise.
For every variant and nominal rate this module pairs each run with a baseline run of the same
seed that spent the same budget, and reports the mean paired difference, a 95 % t-interval,
and how many seeds the variant won, tied or lost.

The budget is what a run trained, in sample-visits, as a share of the baseline run's full
budget (N x its epochs): two runs spent the same when those shares differ by at most
:data:`RATE_TOLERANCE` (for runs of the same length, their effective rates). The baseline run
of the variant's own nominal rate is taken when it spent the same; otherwise the one of the
same seed whose budget is closest, if within the tolerance: so InfoBatch and SCAN, which
cannot reach every rate, are paired with random at the effective rate they reached, and full
data trained for fewer epochs with random at the same number of visits. A variant with no
such baseline run is paired with the one of its nominal rate, flagged, and given no verdict.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_emp.io import write_bytes

# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom; 1.96 beyond
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
RATE_TOLERANCE = 0.02  # effective rates closer than this count as the same budget
TIE_TOLERANCE = 0.0005  # paired differences below 0.05 points count as ties


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The 97.5 % quantile of Student's t (so mean +- q * s / sqrt(n) is a 95 % interval).

    Example:
        >>> t_quantile_975(2), t_quantile_975(9), t_quantile_975(100)
        (4.303, 2.262, 1.96)
    """
    if degrees_of_freedom < 1:
        raise ValueError("a t-interval needs at least two paired runs")
    if degrees_of_freedom <= len(T_975):
        return T_975[degrees_of_freedom - 1]
    return 1.96


@dataclass
class PairedResult:
    """One variant against the baseline at one nominal rate, on one accuracy metric.

    Attributes:
        variant: the variant's label.
        rate: the nominal pruning rate.
        metric: the accuracy column (``probe_top1``, ``knn_top1``, ``test_top1``).
        seeds: the seeds paired (both runs have the metric).
        differences: variant minus baseline per seed (fractions, not points).
        mean: mean paired difference.
        ci_low: lower end of the 95 % t-interval (None with one seed).
        ci_high: upper end of the 95 % t-interval (None with one seed).
        wins: seeds where the variant is better by at least :data:`TIE_TOLERANCE`.
        ties: seeds within :data:`TIE_TOLERANCE`.
        losses: seeds where the variant is worse by at least :data:`TIE_TOLERANCE`.
        effective_rate: the variant's mean effective rate.
        baseline_effective_rate: the baseline's mean effective rate over the same seeds.
        flagged: a pair's budgets differ by more than :data:`RATE_TOLERANCE`.
        baseline_rates: the nominal rates of the baseline runs paired (the variant's own
            unless it was paired by budget).
    """

    variant: str
    rate: float
    metric: str
    seeds: list[int]
    differences: list[float]
    mean: float
    ci_low: float | None
    ci_high: float | None
    wins: int
    ties: int
    losses: int
    effective_rate: float
    baseline_effective_rate: float
    flagged: bool
    baseline_rates: tuple[float, ...] = ()

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` when the interval excludes zero, else ``tie``; ``not
        comparable`` for a flagged budget, ``too few seeds`` without an interval."""
        if self.flagged:
            return "not comparable (other effective rate)"
        if self.ci_low is None or self.ci_high is None:
            return "too few seeds"
        if self.ci_low > 0:
            return "better"
        if self.ci_high < 0:
            return "worse"
        return "tie"


def paired_interval(differences: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95 % t-interval of paired differences (no interval for one difference).

    Example:
        >>> mean, low, high = paired_interval([0.01, 0.02, 0.03])
        >>> round(mean, 4), round(low, 4), round(high, 4)
        (0.02, -0.0048, 0.0448)
    """
    count = len(differences)
    mean = sum(differences) / count
    if count < 2:
        return mean, None, None
    variance = sum((d - mean) ** 2 for d in differences) / (count - 1)
    half_width = t_quantile_975(count - 1) * math.sqrt(variance / count)
    return mean, mean - half_width, mean + half_width


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def budget_gap(run: dict[str, Any], baseline: dict[str, Any]) -> float:
    """How far apart two runs' budgets are, as a share of the baseline's full budget:
    ``|visits - baseline visits| / (N x baseline epochs)`` (N x epochs is
    ``visits / (1 - effective_rate)``); for runs of the same length, the gap between their
    effective rates."""
    full = baseline["visits"] / max(1.0 - baseline["effective_rate"], 1e-12)
    return abs(run["visits"] - baseline["visits"]) / max(full, 1e-12)


def _budget_known(row: dict[str, Any]) -> bool:
    return row.get("visits") is not None and row.get("effective_rate") is not None


def matching_baseline(
    run: dict[str, Any], candidates: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, bool]:
    """The baseline run to pair ``run`` with among ``candidates`` (same seed), and whether the
    pair is flagged: the one of the same nominal rate when it spent the same budget, else the
    closest budget within :data:`RATE_TOLERANCE`, else the same rate's, flagged."""
    same_rate = next((c for c in candidates if c["rate"] == run["rate"]), None)
    if not _budget_known(run):
        return same_rate, False
    known = [c for c in candidates if _budget_known(c)]
    if same_rate in known and budget_gap(run, same_rate) <= RATE_TOLERANCE:
        return same_rate, False
    closest = min(known, key=lambda c: budget_gap(run, c), default=None)
    if closest is not None and budget_gap(run, closest) <= RATE_TOLERANCE:
        return closest, False
    return same_rate, same_rate is not None


def baseline_pairs(
    rows: list[dict[str, Any]], baseline: str
) -> dict[int, tuple[dict[str, Any], bool]]:
    """For every run that is not the baseline, ``id(run) -> (baseline run, flagged)`` (see
    :func:`matching_baseline`); runs without a baseline run of their seed are left out."""
    by_seed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["policy"] == baseline and row["variant"] == baseline:
            by_seed[row["seed"]].append(row)
    pairs = {}
    for row in rows:
        if row["variant"] == baseline:
            continue
        other, flagged = matching_baseline(row, by_seed.get(row["seed"], []))
        if other is not None:
            pairs[id(row)] = (other, flagged)
    return pairs


def paired_results(
    rows: list[dict[str, Any]], baseline: str, metrics: list[str]
) -> list[PairedResult]:
    """Every variant against the ``baseline`` policy's runs of the same seed and budget.

    Args:
        rows: one dict per run (``variant``, ``policy``, ``rate``, ``seed``, ``visits``,
            ``effective_rate`` and the metrics), as
            :func:`ssl_emp.experiments.compare.collect` gives them.
        baseline: the baseline's policy name (its variant label is the policy).
        metrics: the accuracy columns to compare.
    """
    matched = baseline_pairs(rows, baseline)
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["variant"] != baseline:
            groups[(row["variant"], row["rate"])].append(row)
    results = []
    for (variant, rate), members in groups.items():
        for metric in metrics:
            pairs = [
                (row, matched[id(row)][0], matched[id(row)][1])
                for row in members
                if id(row) in matched
                and row[metric] is not None
                and matched[id(row)][0][metric] is not None
            ]
            if not pairs:
                continue
            differences = [row[metric] - other[metric] for row, other, _ in pairs]
            mean, low, high = paired_interval(differences)
            effective = _mean([row["effective_rate"] or 0.0 for row, _, _ in pairs])
            baseline_effective = _mean([other["effective_rate"] or 0.0 for _, other, _ in pairs])
            results.append(
                PairedResult(
                    variant=variant,
                    rate=rate,
                    metric=metric,
                    seeds=[row["seed"] for row, _, _ in pairs],
                    differences=differences,
                    mean=mean,
                    ci_low=low,
                    ci_high=high,
                    wins=sum(d >= TIE_TOLERANCE for d in differences),
                    ties=sum(abs(d) < TIE_TOLERANCE for d in differences),
                    losses=sum(d <= -TIE_TOLERANCE for d in differences),
                    effective_rate=effective,
                    baseline_effective_rate=baseline_effective,
                    flagged=any(flagged for _, _, flagged in pairs),
                    baseline_rates=tuple(sorted({other["rate"] for _, other, _ in pairs})),
                )
            )
    return results


def default_baseline(rows: list[dict[str, Any]], requested: str | None) -> str | None:
    """The baseline policy: ``requested``, else ``random`` when some run used it, else None."""
    if requested is not None:
        return requested
    return "random" if any(row["policy"] == "random" for row in rows) else None


PAIRED_COLUMNS = [
    "variant",
    "rate",
    "metric",
    "baseline",
    "baseline_rate",
    "n",
    "mean_difference",
    "ci_low",
    "ci_high",
    "wins",
    "ties",
    "losses",
    "effective_rate",
    "baseline_effective_rate",
    "verdict",
]


def write_paired_csv(results: list[PairedResult], baseline: str, path: Path) -> None:
    """``paired.csv``: one line per variant, rate and metric (differences as fractions)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PAIRED_COLUMNS)
    writer.writeheader()
    for result in results:
        writer.writerow(
            {
                "variant": result.variant,
                "rate": result.rate,
                "metric": result.metric,
                "baseline": baseline,
                "baseline_rate": ";".join(f"{rate:g}" for rate in result.baseline_rates),
                "n": len(result.seeds),
                "mean_difference": result.mean,
                "ci_low": "" if result.ci_low is None else result.ci_low,
                "ci_high": "" if result.ci_high is None else result.ci_high,
                "wins": result.wins,
                "ties": result.ties,
                "losses": result.losses,
                "effective_rate": result.effective_rate,
                "baseline_effective_rate": result.baseline_effective_rate,
                "verdict": result.verdict,
            }
        )
    write_bytes(path, buffer.getvalue().encode())


def paired_section(results: list[PairedResult], baseline: str) -> list[str]:
    """The report's paired-difference table (points, 95 % t-interval)."""
    lines = [
        f"## Paired differences vs {baseline}",
        "",
        f"Each run minus the `{baseline}` run of the same seed that spent the same budget "
        "(sample-visits within 0.02 of the baseline's full budget: the same nominal rate where "
        "that holds, else the rate given in the baseline column), in points; mean and 95 % "
        "t-interval over seeds; W/T/L = seeds won, tied (within 0.05 points), lost. A variant "
        f"with no `{baseline}` run of its budget is paired at its nominal rate and gets no "
        "verdict.",
        "",
        f"| variant | rate | {baseline} at | metric | n | mean difference | 95 % interval | "
        "W/T/L | effective rate (baseline) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        interval = (
            "-" if r.ci_low is None else f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]"  # type: ignore[operator]
        )
        at = ", ".join(f"{rate:g}" for rate in r.baseline_rates)
        lines.append(
            f"| {r.variant} | {r.rate:g} | {at} | {r.metric} | {len(r.seeds)} | "
            f"{100 * r.mean:+.2f} | {interval} | {r.wins}/{r.ties}/{r.losses} | "
            f"{r.effective_rate:.3f} ({r.baseline_effective_rate:.3f}) | {r.verdict} |"
        )
    return [*lines, ""]
