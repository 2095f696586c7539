"""Refactors change no number: the golden runs recorded by ``tools/golden_runs.py`` must come
out bit-identical (metrics, scores, label noise, eval and final weights; timing aside)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import golden_runs  # noqa: E402


@pytest.mark.slow
def test_golden_runs_are_bit_identical() -> None:
    golden = json.loads(golden_runs.GOLDEN_FILE.read_text())
    if golden["machine"] != golden_runs.machine():
        pytest.skip(f"golden runs recorded on {golden['machine']}, not {golden_runs.machine()}")
    names = list(golden_runs.GOLDEN_RUNS)
    found = golden_runs.differences(
        {name: golden["runs"][name] for name in names}, golden_runs.train_all(names, jobs=2)
    )
    assert not found, "\n".join(found[:20])


def test_differences_name_every_changed_value() -> None:
    recorded = {"a": {"metrics": [{"loss": 1.0, "kept": 3}]}, "b": 1}
    assert golden_runs.differences(recorded, recorded) == []
    changed = {"a": {"metrics": [{"loss": 1.0000000001, "kept": 3}]}, "c": 1}
    assert golden_runs.differences(recorded, changed) == [
        "/a/metrics[0]/loss: recorded 1.0, now 1.0000000001",
        "/b: only in recorded",
        "/c: only in new",
    ]
