"""tools/study_summary.py: the committed study tables come from the finished runs only."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_sweep_compare import _fabricate_run

sys.path.insert(0, str(ROOT / "tools"))
import study_summary  # noqa: E402


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _direction_runs(
    folder: Path,
    random_probe: list[float],
    easy_probe: list[float],
    easy_knn: list[float] | None = None,
) -> None:
    """Finished random and easy-first EMP runs of ssl_direction, seed i with the i-th probes
    (and kNN accuracies: random's 0.7, easy-first's ``easy_knn`` or 0.7)."""
    knns = easy_knn or [0.7] * len(easy_probe)
    for seed, (random_top1, easy_top1, knn) in enumerate(
        zip(random_probe, easy_probe, knns, strict=True)
    ):
        _fabricate_run(folder, f"random_r0.7_s{seed}", "random", 0.7, seed, random_top1, 0.7, 80)
        _fabricate_run(folder, f"emp_r0.7_s{seed}_easy", "emp", 0.7, seed, easy_top1, knn, 80,
                       overrides=("pruning.direction=easy",))  # fmt: skip


def test_export_writes_finished_runs_of_each_setting_and_their_paired_differences(
    tmp_path: Path,
) -> None:
    direction = tmp_path / "study" / "ssl_direction"
    _direction_runs(direction, [0.80, 0.82, 0.81], [0.81, 0.85, 0.83])  # +1, +3, +2 points
    _fabricate_run(direction, "scan_r0.7_s0", "scan", 0.7, 0, 0.9, 0.9, 80)
    (direction / "scan_r0.7_s0" / "probe.json").unlink()  # still training: left out
    # a setting whose own runs have not finished is not exported, though the runs of the
    # setting it is compared with (ssl_direction) have
    _fabricate_run(tmp_path / "study" / "ssl_budget", "infobatch_r0.7_s0", "infobatch", 0.7, 0,
                   0.8, 0.7, 120)  # fmt: skip
    (tmp_path / "study" / "ssl_budget" / "infobatch_r0.7_s0" / "probe.json").unlink()

    written = study_summary.export(tmp_path / "study", tmp_path / "out")

    assert sorted(path.name for path in written) == [
        "ssl_direction_paired.csv",
        "ssl_direction_results.csv",
    ]
    results = _rows(tmp_path / "out" / "ssl_direction_results.csv")
    expected = [f"{name}_s{seed}" for name in ("random_r0.7", "emp_r0.7") for seed in range(3)]
    assert sorted(row["run"].removesuffix("_easy") for row in results) == sorted(expected)
    paired = {(row["variant"], row["metric"]): row for row in _rows(written[1])}
    easy = paired[("emp (batch, easy)", "probe_top1")]
    assert int(easy["n"]) == 3
    assert float(easy["mean_difference"]) == pytest.approx(0.02)  # mean of +1, +3, +2 points
    assert (int(easy["wins"]), int(easy["losses"])) == (3, 0)


def test_the_summary_lists_a_variant_under_the_setting_that_trained_it(tmp_path: Path) -> None:
    root = tmp_path / "study"
    _direction_runs(root / "ssl_direction", [0.80, 0.80], [0.81, 0.81], easy_knn=[0.72, 0.74])
    _fabricate_run(root / "ssl_budget", "full_e6_s0", "full", 0.7, 0, 0.82, 0.7, 80,
                   overrides=("train.epochs=6",))  # fmt: skip
    lines = study_summary.summarise(root)
    easy = [
        line
        for line in lines
        if line.startswith("| ssl_direction | probe_top1 | emp (batch, easy) | 2 |")
    ]
    assert len(easy) == 1
    # kNN: +2 and +4 points; mean +3, standard error 1, t(1, 0.975) = 12.706
    assert easy[0].endswith("| +3.00 [-9.71, +15.71] tie |")
    # ssl_budget is compared with ssl_direction's runs but does not list them again
    assert not any(line.startswith("| ssl_budget | probe_top1 | emp") for line in lines)


def test_the_best_baseline_is_taken_at_the_settings_rate_not_at_a_matched_budget(
    tmp_path: Path,
) -> None:
    direction = tmp_path / "study" / "ssl_direction"
    _direction_runs(direction, [0.80, 0.82], [0.81, 0.83])
    for seed in range(2):  # random trained at SCAN's effective rate: a larger budget
        _fabricate_run(direction, f"random_r0.3_s{seed}", "random", 0.3, seed, 0.90, 0.8, 140)
    lines = study_summary.summarise(tmp_path / "study")
    easy = next(line for line in lines if "| emp (batch, easy) |" in line)
    assert "| random (81.00) |" in easy  # the mean of 0.80 and 0.82, not of all four runs


def test_a_setting_exports_its_own_runs_with_the_random_runs_it_is_compared_with(
    tmp_path: Path,
) -> None:
    root = tmp_path / "study"
    _direction_runs(root / "ssl_direction", [0.80, 0.80], [0.81, 0.81])
    for seed in range(2):
        _fabricate_run(root / "ssl_budget", f"infobatch_r0.7_s{seed}", "infobatch", 0.7, seed,
                       0.83, 0.7, 120)  # fmt: skip
    (root / "ssl_long").mkdir()  # a sweep that has not written its first run's config yet

    study_summary.export(root, tmp_path / "out")

    runs = sorted(row["run"] for row in _rows(tmp_path / "out" / "ssl_budget_results.csv"))
    assert runs == ["infobatch_r0.7_s0", "infobatch_r0.7_s1", "random_r0.7_s0", "random_r0.7_s1"]
    assert not (tmp_path / "out" / "ssl_long_results.csv").exists()
