"""The benchmark and GPU scripts run in their reduced CPU modes, so they cannot rot."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_gpu_check_reduced_mode_prints_every_figure() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), "--reduced"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    fragments = ("1. SimCLR", "emp70", "2. kornia", "3. kNN", "4. ours", "ratio", "5. host")
    for fragment in (*fragments, "of GEMM", "6. train.compile"):
        assert fragment in result.stdout


@pytest.mark.slow
def test_bench_knn_small() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_knn.py"),
            "--database",
            "3000",
            "--queries",
            "300",
            "--dim",
            "32",
            "--k",
            "20",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "same neighbour ids: 100.00 %" in result.stdout


@pytest.mark.slow
def test_study_smoke_run_writes_a_paired_report(tmp_path) -> None:
    out = tmp_path / "study"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "study.py"),
            "--dir",
            str(out),
            "--only",
            "headline",
            "--subset",
            "300",
            "--batch-size",
            "64",
            "--epochs",
            "2",
            "--headline-seeds",
            "0,1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "headline" / "report.md").read_text()
    assert "## Paired differences vs random" in report
    assert "| emp (batch) | 0.7 | 0.7 | probe_top1 | 2 |" in report


@pytest.mark.slow
def test_gpu_study_reduced_mode_prints_the_paired_table(tmp_path) -> None:
    command = [str(ROOT / "tools" / "gpu_study.sh"), "--reduced", "--rules", "easy_emp,scan"]
    result = subprocess.run(
        ["bash", *command, "--dir", str(tmp_path / "g")],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "## Paired differences vs random" in result.stdout
    assert "| emp (batch) | 0.7 | 0.7 | probe_top1 | 2 |" in result.stdout
    assert "| emp (batch, easy) | 0.7 | 0.7 | probe_top1 | 2 |" in result.stdout
    # 2 epochs, the first a warm-up and the second SCAN's scoring epoch: SCAN trains on all
    # data, so it is paired with random trained at its effective rate 0, not at 0.7
    assert "| scan | 0.7 | 0 | probe_top1 | 2 | +0.00 |" in result.stdout


def test_gpu_study_refuses_an_unknown_rule_in_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_study.py"), "--rules", "easy_emp,sacn"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "gpu_study.py: error: unknown rule 'sacn' in --rules; choose from easy_loss, easy_emp, "
        "scan, prototypical\n"
    )


@pytest.mark.slow
def test_bench_bank_quick_prints_the_two_target_lines(tmp_path) -> None:
    from ssl_emp.experiments.train import build_trainer
    from tests.conftest import tiny_config_with

    config = tiny_config_with(tmp_path, "train.epochs=1")
    build_trainer(config).fit()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_bank.py"), config.run.dir, "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bank pass at N=1000:" in result.stdout
    correlation = float(result.stdout.split("rank correlation with exact search: ")[1].split()[0])
    assert 0.9 < correlation <= 1.0
    layouts = result.stdout.split("compact vs views layout (exact search, N=1000): ")[1]
    assert 0.5 < float(layouts.split("rank correlation ")[1].split(",")[0]) <= 1.0
    sampled = float(result.stdout.split("recall@32 at N=2000 (2000 sampled rows")[1].split()[-1])
    assert 0.5 < sampled <= 1.0


@pytest.mark.slow
def test_bench_data_quick_prints_the_two_ratios_and_the_bytes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_data.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "raw store vs in-memory: " in result.stdout
    assert "jpeg store vs PIL ImageFolder loader: " in result.stdout
    assert "bytes read per epoch at rate 0.7: " in result.stdout
    assert "(0.30 of the store)" in result.stdout  # reads scale with the kept fraction
