"""``ssl-emp compare``: runs of a sweep into one table (CSV + Markdown) and plots.

Plots (matplotlib, PNG):

- ``accuracy_vs_effective_rate.png``: probe and kNN top-1 (test top-1 for supervised runs)
  against the effective pruning rate, one line per policy, mean and spread over seeds;
- ``memory_by_rate.png``: the memory term's median and 10-90 % band over the epochs, one line
  per pruning rate, one panel per policy (how the SSL memory terms change with the rate);
- ``train_count_hist.png``: training-frequency histograms per policy and rate with their Gini
  coefficient (the low-frequency-learning view);
- ``cost.png``: wall time and sample-visits per run.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ssl_emp.config import config_from_dict, read_yaml
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.experiments.sweep import find_run_dirs
from ssl_emp.io import atomic_write, read_jsonl
from ssl_emp.pruning import POLICIES

POLICY_ORDER = tuple(POLICIES)
COLUMNS = [
    "run",
    "method",
    "policy",
    "variant",
    "rate",
    "seed",
    "beta",
    "estimator",
    "epochs",
    "effective_rate",
    "visits",
    "wall_time_s",
    "train_count_gini",
    "memory_mean",
    "memory_std",
    "probe_top1",
    "knn_top1",
    "test_top1",
    "label_noise",
]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def variant_name(policy: str, score: str, beta: float, estimator: str, sweep_betas: bool) -> str:
    """Legend label of a run's pruning variant: the policy, plus beta/estimator for EMP."""
    if score != "emp":
        return policy
    label = f"{policy} ({estimator}"
    if sweep_betas:
        label += f", beta {beta:g}"
    return label + ")"


def collect(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per run with its settings, budget and accuracies."""
    configs = {
        path: config_from_dict(read_yaml(RunDirectory(path).config_path)) for path in run_dirs
    }
    emp_betas = {c.pruning.beta for c in configs.values() if c.pruning.policy == "emp"}
    rows = []
    for path, config in configs.items():
        pruning = config.pruning
        score = pruning.score or POLICIES[pruning.policy].default_score
        run = RunDirectory(path)
        metrics = read_jsonl(run.metrics_path)
        last = metrics[-1] if metrics else {}
        results = {
            "probe": _read_json(run.result_path("probe")),
            "knn": _read_json(run.result_path("knn")),
            "eval": _read_json(run.eval_path),
        }
        rows.append(
            {
                "run": path.name,
                "dir": str(path),
                "method": config.method.name,
                "policy": pruning.policy,
                "variant": variant_name(
                    pruning.policy, score, pruning.beta, config.memory.estimator, len(emp_betas) > 1
                ),
                "rate": 0.0 if POLICIES[pruning.policy].always_full else pruning.rate,
                "seed": config.seed,
                "beta": pruning.beta if score == "emp" else None,
                "estimator": config.memory.estimator if score == "emp" else None,
                "epochs": last.get("epoch"),
                "effective_rate": last.get("effective_rate"),
                "visits": last.get("visits"),
                "wall_time_s": sum(record.get("wall_time_s", 0.0) for record in metrics),
                "train_count_gini": last.get("train_count_gini"),
                "memory_mean": last.get("memory_mean"),
                "memory_std": last.get("memory_std"),
                "probe_top1": (results["probe"] or {}).get("top1"),
                "knn_top1": (results["knn"] or {}).get("top1"),
                "test_top1": (results["eval"] or {}).get("top1"),
                "label_noise": config.data.label_noise,
                "metrics": metrics,
            }
        )
    order = {policy: index for index, policy in enumerate(POLICY_ORDER)}
    return sorted(
        rows,
        key=lambda row: (
            order.get(row["policy"], len(order)),
            row["estimator"] or "",
            row["beta"] or 0.0,
            row["rate"],
            row["seed"],
        ),
    )


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``results.csv``: one line per run, the columns of :data:`COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row[key] is None else row[key] for key in COLUMNS})
    atomic_write(path, lambda stream: stream.write(buffer.getvalue().encode()))


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else 0.0


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per (variant, nominal rate)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["variant"], row["rate"])].append(row)
    summary = []
    for (variant, rate), members in groups.items():  # rows arrive in report order
        entry: dict[str, Any] = {"variant": variant, "rate": rate, "seeds": len(members)}
        for key in (
            "effective_rate",
            "probe_top1",
            "knn_top1",
            "test_top1",
            "wall_time_s",
            "visits",
            "train_count_gini",
        ):
            entry[key], entry[f"{key}_std"] = _mean_std([m[key] for m in members])
        summary.append(entry)
    return summary


def _accuracy_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    keys = [("probe_top1", "linear probe"), ("knn_top1", "kNN"), ("test_top1", "test (supervised)")]
    return [(key, label) for key, label in keys if any(row[key] is not None for row in rows)]


def plot_accuracy(
    summary: list[dict[str, Any]], rows: list[dict[str, Any]], path: BinaryIO
) -> None:
    """Accuracy vs effective pruning rate, one line per variant, error bars over seeds."""
    keys = _accuracy_keys(rows) or [("probe_top1", "linear probe")]
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


def _format(value: Any, spread: Any = None, percent: bool = False) -> str:
    if value is None:
        return "-"
    scale = 100 if percent else 1
    text = f"{scale * value:.2f}" if isinstance(value, float) else str(value)
    if spread:
        text += f" ± {scale * spread:.2f}"
    return text


def write_report(
    summary: list[dict[str, Any]], rows: list[dict[str, Any]], out: Path, plots: list[str]
) -> None:
    """``report.md``: the per-variant summary table, the per-run table and the plots."""
    keys = _accuracy_keys(rows)
    lines = [
        "# Comparison report",
        "",
        f"{len(rows)} runs. Accuracies in %, mean ± std over seeds; the effective pruning "
        "rate is 1 - sample-visits / (N x epochs).",
        "",
        "| variant | rate | seeds | effective rate | "
        + " | ".join(label for _, label in keys)
        + " | wall time (s) |",
        "|---|---|---|---|" + "---|" * len(keys) + "---|",
    ]
    for entry in summary:
        accuracies = " | ".join(_format(entry[k], entry[f"{k}_std"], percent=True) for k, _ in keys)
        lines.append(
            f"| {entry['variant']} | {entry['rate']:g} | {entry['seeds']} | "
            f"{_format(entry['effective_rate'], entry['effective_rate_std'])} | {accuracies} | "
            f"{_format(entry['wall_time_s'])} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "| run | effective rate | visits | Gini | " + " | ".join(label for _, label in keys) + " |",
        "|---|---|---|---|" + "---|" * len(keys),
    ]
    for row in rows:
        accuracies = " | ".join(_format(row[k], percent=True) for k, _ in keys)
        lines.append(
            f"| {row['run']} | {_format(row['effective_rate'])} | {row['visits']} | "
            f"{_format(row['train_count_gini'])} | {accuracies} |"
        )
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    text = "\n".join(lines)
    atomic_write(out / "report.md", lambda stream: stream.write(text.encode()))


def compare(paths: Sequence[str], out: str) -> Path:
    """Write ``results.csv``, ``report.md`` and the plots for the runs under ``paths``."""
    rows = collect(find_run_dirs(paths))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "results.csv")
    summary = aggregate(rows)
    plots = {
        "accuracy_vs_effective_rate.png": lambda p: plot_accuracy(summary, rows, p),
        "memory_by_rate.png": lambda p: plot_memory(rows, p),
        "train_count_hist.png": lambda p: plot_train_counts(rows, p),
        "cost.png": lambda p: plot_cost(rows, p),
    }
    for name, draw in plots.items():
        buffer = io.BytesIO()
        draw(buffer)
        atomic_write(out_dir / name, lambda stream, image=buffer: stream.write(image.getvalue()))
    write_report(summary, rows, out_dir, list(plots))
    return out_dir
