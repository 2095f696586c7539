"""Paired comparison of pruning variants against a baseline (``ssl-emp compare --baseline``).

Runs with the same seed share their initialisation and augmentation stream, so the difference
between a variant and the baseline at the same seed removes most of the seed-to-seed noise.
For every variant and nominal rate this module pairs each run with the baseline run of the
same rate and seed, and reports the mean paired difference, a 95 % t-interval, and how many
seeds the variant won, tied or lost.

A variant whose effective pruning rate differs from the baseline's by more than
:data:`RATE_TOLERANCE` spent a different budget (InfoBatch cannot reach every rate): it is
flagged, and no verdict is given for it.
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
        flagged: the effective rates differ by more than :data:`RATE_TOLERANCE`.
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


def paired_results(
    rows: list[dict[str, Any]], baseline: str, metrics: list[str]
) -> list[PairedResult]:
    """Every variant against the ``baseline`` policy's runs of the same rate and seed.

    Args:
        rows: one dict per run (``variant``, ``policy``, ``rate``, ``seed``,
            ``effective_rate`` and the metrics), as :func:`ssl_emp.experiments.compare.collect`
            gives them.
        baseline: the baseline's policy name (its variant label is the policy).
        metrics: the accuracy columns to compare.
    """
    base = {
        (row["rate"], row["seed"]): row
        for row in rows
        if row["policy"] == baseline and row["variant"] == baseline
    }
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["variant"] != baseline:
            groups[(row["variant"], row["rate"])].append(row)
    results = []
    for (variant, rate), members in groups.items():
        for metric in metrics:
            pairs = [
                (row, base[(rate, row["seed"])])
                for row in members
                if (rate, row["seed"]) in base
                and row[metric] is not None
                and base[(rate, row["seed"])][metric] is not None
            ]
            if not pairs:
                continue
            differences = [row[metric] - other[metric] for row, other in pairs]
            mean, low, high = paired_interval(differences)
            effective = _mean([row["effective_rate"] or 0.0 for row, _ in pairs])
            baseline_effective = _mean([other["effective_rate"] or 0.0 for _, other in pairs])
            results.append(
                PairedResult(
                    variant=variant,
                    rate=rate,
                    metric=metric,
                    seeds=[row["seed"] for row, _ in pairs],
                    differences=differences,
                    mean=mean,
                    ci_low=low,
                    ci_high=high,
                    wins=sum(d >= TIE_TOLERANCE for d in differences),
                    ties=sum(abs(d) < TIE_TOLERANCE for d in differences),
                    losses=sum(d <= -TIE_TOLERANCE for d in differences),
                    effective_rate=effective,
                    baseline_effective_rate=baseline_effective,
                    flagged=abs(effective - baseline_effective) > RATE_TOLERANCE,
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
        f"Each run minus the `{baseline}` run of the same rate and seed, in points; mean and "
        "95 % t-interval over seeds; W/T/L = seeds won, tied (within 0.05 points), lost. A "
        "variant whose effective rate differs from the baseline's by more than 0.02 spent "
        "another budget and gets no verdict.",
        "",
        "| variant | rate | metric | n | mean difference | 95 % interval | W/T/L | "
        "effective rate (baseline) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        interval = (
            "-" if r.ci_low is None else f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]"  # type: ignore[operator]
        )
        lines.append(
            f"| {r.variant} | {r.rate:g} | {r.metric} | {len(r.seeds)} | {100 * r.mean:+.2f} | "
            f"{interval} | {r.wins}/{r.ties}/{r.losses} | {r.effective_rate:.3f} "
            f"({r.baseline_effective_rate:.3f}) | {r.verdict} |"
        )
    return [*lines, ""]
