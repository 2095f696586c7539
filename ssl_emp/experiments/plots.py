"""The plots of ``ssl-emp compare`` (matplotlib's object API, no global state): accuracy vs
effective pruning rate, memory-term distributions per rate, training-count histograms, cost."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, BinaryIO

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.experiments.paired import PairedResult


def accuracy_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The accuracy columns some run has, as (column, label)."""
    keys = [("probe_top1", "linear probe"), ("knn_top1", "kNN"), ("test_top1", "test (supervised)")]
    return [(key, label) for key, label in keys if any(row[key] is not None for row in rows)]


def plot_accuracy(
    summary: list[dict[str, Any]], rows: list[dict[str, Any]], path: BinaryIO
) -> None:
    """Accuracy vs effective pruning rate, one line per variant, error bars over seeds."""
    keys = accuracy_keys(rows) or [("probe_top1", "linear probe")]
    figure = Figure(figsize=(6 * len(keys), 4.5))
    axes = figure.subplots(1, len(keys), squeeze=False)
    variants = list(dict.fromkeys(entry["variant"] for entry in summary))
    for axis, (key, label) in zip(axes[0], keys, strict=True):
        for variant in variants:
            points = sorted(
                (e for e in summary if e["variant"] == variant and e[key] is not None),
                key=lambda e: e["effective_rate"] or 0.0,
            )
            if not points:
                continue
            x = [e["effective_rate"] or 0.0 for e in points]
            y = [100 * e[key] for e in points]
            spread = [100 * (e[f"{key}_std"] or 0.0) for e in points]
            if variant == "full":
                axis.axhline(y[0], color="black", linestyle="--", linewidth=1, label="full data")
                continue
            axis.errorbar(x, y, yerr=spread, marker="o", capsize=3, label=variant)
        axis.set_xlabel("effective pruning rate (1 - visits / (N x epochs))")
        axis.set_ylabel(f"{label} top-1 (%)")
        axis.set_title(f"{label} accuracy vs effective pruning rate")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")


def plot_memory(rows: list[dict[str, Any]], path: BinaryIO) -> None:
    """Memory-term median and 10-90 % band over epochs, a line per rate, a panel per variant."""
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    columns = min(3, len(variants))
    lines = math.ceil(len(variants) / columns)
    figure = Figure(figsize=(5.5 * columns, 4 * lines))
    axes = figure.subplots(lines, columns, squeeze=False, sharey=True)
    rates = sorted({row["rate"] for row in rows})
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(rates), 1)))
    for axis, variant in zip(axes.flat, variants, strict=False):
        for rate, colour in zip(rates, colours, strict=True):
            members = [r for r in rows if r["variant"] == variant and r["rate"] == rate]
            if not members:
                continue
            curves = defaultdict(list)
            for member in members:
                for record in member["metrics"]:
                    if record.get("memory_q50") is not None:
                        for q in ("q10", "q50", "q90"):
                            curves[(record["epoch"], q)].append(record[f"memory_{q}"])
            epochs = sorted({epoch for epoch, _ in curves})
            if not epochs:
                continue
            median = [np.mean(curves[(e, "q50")]) for e in epochs]
            low = [np.mean(curves[(e, "q10")]) for e in epochs]
            high = [np.mean(curves[(e, "q90")]) for e in epochs]
            axis.plot(epochs, median, color=colour, label=f"rate {rate:g}")
            axis.fill_between(epochs, low, high, color=colour, alpha=0.15)
        axis.set_title(f"memory term: {variant}")
        axis.set_xlabel("epoch")
        axis.set_ylabel("memory term (median, 10-90 % band)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(variants) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")


def plot_train_counts(rows: list[dict[str, Any]], path: BinaryIO) -> None:
    """Histograms of per-sample training counts (first seed) per variant and rate, with Gini."""
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    rates = sorted({row["rate"] for row in rows})
    figure = Figure(figsize=(3.6 * len(rates), 2.8 * len(variants)))
    axes = figure.subplots(len(variants), len(rates), squeeze=False)
    for i, variant in enumerate(variants):
        for j, rate in enumerate(rates):
            axis = axes[i][j]
            members = [r for r in rows if r["variant"] == variant and r["rate"] == rate]
            scores = RunDirectory(members[0]["dir"]).scores_path if members else None
            if scores is None or not scores.is_file():
                axis.axis("off")
                continue
            counts = np.load(scores)["train_count"]
            axis.hist(counts, bins=np.arange(counts.max() + 2) - 0.5, color="tab:blue")
            gini = members[0]["train_count_gini"] or 0.0
            axis.set_title(f"{variant}, rate {rate:g}\nGini {gini:.3f}", fontsize=9)
            axis.set_xlabel("times trained")
            axis.set_ylabel("samples")
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")


def plot_cost(rows: list[dict[str, Any]], path: BinaryIO) -> None:
    """Wall time and sample-visits per run (bars)."""
    names = [row["run"] for row in rows]
    figure = Figure(figsize=(max(8, 0.45 * len(rows) * 2), 4.5))
    axes = figure.subplots(1, 2)
    positions = np.arange(len(rows))
    axes[0].bar(positions, [row["wall_time_s"] / 60 for row in rows], color="tab:orange")
    axes[0].set_ylabel("training wall time (min)")
    axes[0].set_title("wall time per run")
    axes[1].bar(positions, [row["visits"] or 0 for row in rows], color="tab:green")
    axes[1].set_ylabel("sample-visits")
    axes[1].set_title("sample-visits per run")
    for axis in axes:
        axis.set_xticks(positions, names, rotation=75, fontsize=7)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")


def plot_paired(results: list[PairedResult], baseline: str, path: BinaryIO) -> None:
    """Mean paired difference vs the baseline with its 95 % interval, one row per variant and
    rate, one panel per metric; flagged (other-budget) variants in grey."""
    metrics = list(dict.fromkeys(result.metric for result in results))
    figure = Figure(figsize=(5.5 * max(1, len(metrics)), 0.45 * max(4, len(results)) + 1.5))
    axes = figure.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    for axis, metric in zip(axes, metrics, strict=False):
        members = [result for result in results if result.metric == metric]
        for position, result in enumerate(members):
            low = result.mean if result.ci_low is None else result.ci_low
            high = result.mean if result.ci_high is None else result.ci_high
            color = "tab:gray" if result.flagged else "tab:blue"
            axis.errorbar(
                100 * result.mean,
                position,
                xerr=[[100 * (result.mean - low)], [100 * (high - result.mean)]],
                fmt="o",
                color=color,
                capsize=3,
            )
        labels = [f"{r.variant} @ {r.rate:g} (n={len(r.seeds)})" for r in members]
        axis.set_yticks(range(len(members)), labels, fontsize=8)
        axis.axvline(0.0, color="black", linewidth=1)
        axis.set_xlabel(f"{metric} difference vs {baseline} (points, 95 % CI)")
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
