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
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssl_emp.config import config_from_dict, read_yaml
from ssl_emp.engine.platform import platform_label, platform_note
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.errors import UserInputError
from ssl_emp.experiments.paired import (
    baseline_pairs,
    default_baseline,
    paired_results,
    paired_section,
    write_paired_csv,
)
from ssl_emp.experiments.plots import (
    accuracy_keys,
    plot_accuracy,
    plot_cost,
    plot_memory,
    plot_paired,
    plot_train_counts,
)
from ssl_emp.experiments.sweep import find_run_dirs
from ssl_emp.experiments.variants import variant_labels
from ssl_emp.io import read_jsonl, write_bytes
from ssl_emp.pruning import POLICIES
from ssl_emp.pruning.options import score_kind
from ssl_emp.pruning.scores import SCORES

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
    "junk_fraction",
    "junk_visit_share",
    "platform",
    "baseline",
    "probe_top1_vs_baseline",
    "knn_top1_vs_baseline",
    "test_top1_vs_baseline",
]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def collect(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per run with its settings, budget and accuracies."""
    configs = {
        path: config_from_dict(read_yaml(RunDirectory(path).config_path), saved=True)
        for path in run_dirs
    }
    labels = variant_labels({str(path): config for path, config in configs.items()})
    rows = []
    for path, config in configs.items():
        pruning = config.pruning
        score = score_kind(pruning)
        # supervised runs ignore memory.estimator: their memory term is the prediction entropy
        estimator = "prediction" if config.method.name == "supervised" else config.memory.estimator
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
                "variant": labels[str(path)],
                "rate": 0.0 if POLICIES[pruning.policy].always_full else pruning.rate,
                "seed": config.seed,
                "beta": pruning.beta if SCORES[score].memory_term else None,
                "estimator": estimator if SCORES[score].memory_term else None,
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
                "junk_fraction": config.data.junk_fraction,
                "junk_visit_share": last.get("junk_visit_share"),
                "platform": "; ".join(platform_label(p) for p in run.platforms()) or None,
                "metrics": metrics,
            }
        )
    order = {policy: index for index, policy in enumerate(POLICY_ORDER)}
    rows.sort(
        key=lambda row: (
            order.get(row["policy"], len(order)),
            row["variant"],
            row["rate"],
            row["seed"],
            row["dir"],
        )
    )
    return drop_repeated_seeds(rows)


def drop_repeated_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per (variant, rate, seed): two runs with the same settings and seed are the
    same experiment, so pooling both would count one seed twice. The first (by directory) is
    kept, and each one left out is named on stderr."""
    kept: dict[tuple[str, float, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["variant"], row["rate"], row["seed"])
        if key in kept:
            print(
                f"compare: {row['dir']} repeats {kept[key]['dir']} (same settings, seed "
                f"{row['seed']}); counted once",
                file=sys.stderr,
            )
            continue
        kept[key] = row
    return list(kept.values())


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``results.csv``: one line per run, the columns of :data:`COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row[key] is None else row[key] for key in COLUMNS})
    write_bytes(path, buffer.getvalue().encode())


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return float(np.mean(known)), float(np.std(known)) if len(known) > 1 else 0.0


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
            "junk_visit_share",
        ):
            entry[key], entry[f"{key}_std"] = _mean_std([m[key] for m in members])
            # a run still training or unevaluated has no value: the mean is over fewer seeds
            entry[f"{key}_n"] = sum(m[key] is not None for m in members)
        summary.append(entry)
    return summary


def _format(value: Any, spread: Any = None, percent: bool = False) -> str:
    if value is None:
        return "-"
    scale = 100 if percent else 1
    text = f"{scale * value:.2f}" if isinstance(value, float) else str(value)
    if spread:
        text += f" ± {scale * spread:.2f}"
    return text


def partial_note(entry: dict[str, Any], key: str) -> str:
    """`` (3 of 5 seeds)`` when only some of a variant's runs have ``key`` (the others still
    train or are not evaluated yet), else empty: a mean over fewer seeds is said to be one."""
    count = entry[f"{key}_n"]
    return f" ({count} of {entry['seeds']} seeds)" if 0 < count < entry["seeds"] else ""


def write_report(
    summary: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    out: Path,
    plots: list[str],
    paired: list[str] | None = None,
    note: str | None = None,
) -> None:
    """``report.md``: the per-variant summary table, the paired differences (when a baseline
    is given), the per-run table and the plots."""
    keys = accuracy_keys(rows)
    if any(row["junk_visit_share"] is not None for row in rows):
        keys = [*keys, ("junk_visit_share", "junk share of visits")]
    lines = [
        "# Comparison report",
        "",
        f"{len(rows)} runs. Accuracies in %, mean ± std over seeds; the effective pruning "
        "rate is 1 - sample-visits / (N x epochs).",
        "",
        *([f"**Note:** {note[0].upper()}{note[1:]}.", ""] if note else []),
        "| variant | rate | seeds | effective rate | "
        + " | ".join(label for _, label in keys)
        + " | wall time (s) |",
        "|---|---|---|---|" + "---|" * len(keys) + "---|",
    ]
    for entry in summary:
        accuracies = " | ".join(
            _format(entry[k], entry[f"{k}_std"], percent=True) + partial_note(entry, k)
            for k, _ in keys
        )
        lines.append(
            f"| {entry['variant']} | {entry['rate']:g} | {entry['seeds']} | "
            f"{_format(entry['effective_rate'], entry['effective_rate_std'])} | {accuracies} | "
            f"{_format(entry['wall_time_s'])} |"
        )
    lines += ["", *(paired or [])]
    lines += [
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
    write_bytes(out / "report.md", text.encode())


def add_baseline_differences(rows: list[dict[str, Any]], baseline: str | None) -> None:
    """Each run's accuracy minus its paired baseline run's (same seed and budget, see
    :func:`~ssl_emp.experiments.paired.matching_baseline`): per-run columns
    ``<metric>_vs_baseline`` of ``results.csv``; None where there is no such pair."""
    matched = baseline_pairs(rows, baseline) if baseline else {}
    for row in rows:
        other = row if row["variant"] == baseline else matched.get(id(row), (None, False))[0]
        row["baseline"] = baseline
        for metric in ("probe_top1", "knn_top1", "test_top1"):
            difference = None
            if other is not None and row[metric] is not None and other[metric] is not None:
                difference = row[metric] - other[metric]
            row[f"{metric}_vs_baseline"] = difference


def compare(paths: Sequence[str], out: str, baseline: str | None = None) -> Path:
    """Write ``results.csv``, ``report.md`` and the plots for the runs under ``paths``; with a
    baseline policy (default ``random`` when present) also the paired differences
    (``paired.csv``, a report section and ``paired_differences.png``).

    Raises:
        UserInputError: ``baseline`` names no policy of these runs.
    """
    rows = collect(find_run_dirs(paths))
    note = platform_note([row["platform"] for row in rows])
    if note:
        print(f"compare: {note}", file=sys.stderr)
    if baseline is not None and not any(row["variant"] == baseline for row in rows):
        present = ", ".join(dict.fromkeys(row["variant"] for row in rows))
        raise UserInputError(
            f"--baseline {baseline}: no run of that policy to compare against (variants here: "
            f"{present}); pick one of them"
        )
    baseline = default_baseline(rows, baseline)
    add_baseline_differences(rows, baseline)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "results.csv")
    metrics = [key for key, _ in accuracy_keys(rows)]
    paired = paired_results(rows, baseline, metrics) if baseline else []
    if baseline:
        write_paired_csv(paired, baseline, out_dir / "paired.csv")
    summary = aggregate(rows)
    plots: dict[str, Callable[[io.BytesIO], None]] = {
        "accuracy_vs_effective_rate.png": lambda p: plot_accuracy(summary, rows, p),
        "memory_by_rate.png": lambda p: plot_memory(rows, p),
        "train_count_hist.png": lambda p: plot_train_counts(rows, p),
        "cost.png": lambda p: plot_cost(rows, p),
    }
    if baseline and paired:
        plots["paired_differences.png"] = lambda p: plot_paired(paired, baseline, p)
    for name, draw in plots.items():
        buffer = io.BytesIO()
        draw(buffer)
        write_bytes(out_dir / name, buffer.getvalue())
    extra = paired_section(paired, baseline) if baseline and paired else []
    write_report(summary, rows, out_dir, list(plots), extra, note)
    return out_dir
