"""The demo: full data vs random vs EMP at rate 0.7 with the same seed, each probed."""

import json
from pathlib import Path

import pytest

from ssl_emp.experiments.demo import load_demo_config, run_demo
from tests.conftest import TINY_OVERRIDES, metrics_records


def test_demo_trains_three_variants_with_one_seed_and_reports_them(tmp_path: Path, capsys) -> None:
    root = tmp_path / "demo"
    config = load_demo_config(
        None,
        [
            *TINY_OVERRIDES,
            "data.subset=null",
            "train.epochs=3",
            "train.batch_size=8",
            f"run.dir={root}",
        ],
    )
    summary = run_demo(config)
    saved = json.loads((root / "demo.json").read_text())
    assert saved["variants"].keys() == {"full", "random_r0.7", "emp_r0.7"}
    for name, entry in saved["variants"].items():
        run = root / name
        probe = json.loads((run / "probe.json").read_text())
        assert entry["probe_top1"] == probe["top1"] == summary["variants"][name]["probe_top1"]
        assert entry["effective_rate"] == metrics_records(run)[-1]["effective_rate"]
        assert len(metrics_records(run)) == 3
    rates = {name: entry["effective_rate"] for name, entry in saved["variants"].items()}
    # warm-up epoch on all 48 samples, then ceil(0.3 * 48) = 15 per epoch
    assert rates["full"] == 0.0
    assert rates["random_r0.7"] == rates["emp_r0.7"] == pytest.approx(1 - (48 + 2 * 15) / 144)
    out = capsys.readouterr().out
    assert "SimCLR demo on synthetic" in out  # the real source, not always Fashion-MNIST
    assert "EMP vs random at the same budget and seed" in out
    assert 0.0 <= saved["random_init_top1"] <= 1.0
