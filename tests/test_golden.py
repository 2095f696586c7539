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
    pins = golden_runs.pins_for(golden["machine"])  # AVX2 runs check on AVX-512 CPUs too
    if pins is None:
        pytest.skip(f"golden runs recorded on {golden['machine']}, not {golden_runs.machine()}")
    names = list(golden_runs.GOLDEN_RUNS)
    found = golden_runs.differences(
        {name: golden["runs"][name] for name in names},
        golden_runs.train_all(names, jobs=2, pins=pins),
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


def test_avx2_runs_are_checked_pinned_on_an_avx512_cpu_and_nothing_else_is(monkeypatch) -> None:
    here = {"torch": "2.14.1", "cpu_capability": "AVX512"}
    monkeypatch.setattr(golden_runs, "machine", lambda: here)
    assert golden_runs.pins_for(here) == {}
    pins = golden_runs.pins_for({"torch": "2.14.1", "cpu_capability": "AVX2"})
    assert pins is not None and pins["ATEN_CPU_CAPABILITY"] == "avx2"
    assert pins["MKL_CBWR"] == "AVX2" and pins["FAISS_SIMD_LEVEL"] == "AVX2"
    assert golden_runs.pins_for({"torch": "2.13.0", "cpu_capability": "AVX2"}) is None
    assert golden_runs.pins_for({"torch": "2.14.1", "cpu_capability": "DEFAULT"}) is None
