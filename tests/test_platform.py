"""Run directories record the platform they trained on; ``compare`` warns when runs mix them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from ssl_emp.config import Config, load_config
from ssl_emp.engine.platform import ISA_VARIABLES, describe_platform, platform_label
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.experiments.compare import compare
from ssl_emp.experiments.train import build_trainer
from tests.conftest import TINY_OVERRIDES
from tests.test_sweep_compare import _fabricate_run

AVX2 = {"torch": "2.14.1", "cpu_capability": "AVX2", "device": "cpu"}
AVX512 = {"torch": "2.14.1", "cpu_capability": "AVX512", "device": "cpu"}


def test_a_run_records_the_platform_it_trains_on_once(tiny_config: Config) -> None:
    build_trainer(tiny_config).fit(until_epoch=1)
    resumed = load_config(
        None, [*TINY_OVERRIDES, f"run.dir={tiny_config.run.dir}", "run.resume=true"]
    )
    build_trainer(resumed).fit()  # resumed on the same platform: listed once
    saved = json.loads((Path(tiny_config.run.dir) / "platform.json").read_text())
    here = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": "cpu",
    }
    assert saved == {"platforms": [here]}


def test_a_run_resumed_on_another_platform_lists_both(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    assert run.platforms() == []  # a run from before platforms were recorded
    run.record_platform(AVX2)
    run.record_platform(AVX512)
    run.record_platform(AVX2)
    assert run.platforms() == [AVX2, AVX512]
    run.platform_path.write_text("{not json")  # unreadable: described as unknown, never fatal
    assert run.platforms() == []


def _fabricate_pairs(root: Path, platforms: list[dict[str, str]]) -> None:
    """Random and EMP on seeds 0 and 1, the seed-``s`` runs on ``platforms[s]``."""
    for seed, platform in enumerate(platforms):
        for policy, probe in (("random", 0.80), ("emp", 0.81)):
            name = f"{policy}_r0.7_s{seed}"
            _fabricate_run(root, name, policy, 0.7, seed, probe=probe, knn=0.7, visits=80)
            RunDirectory(root / name).record_platform(platform)


def test_compare_warns_when_the_runs_come_from_two_platforms(tmp_path: Path, capsys) -> None:
    _fabricate_pairs(tmp_path / "mixed", [AVX2, AVX512])
    out = compare([str(tmp_path / "mixed")], str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert (
        "compare: the runs come from 2 platforms: torch 2.14.1, AVX2, cpu (2 runs); "
        "torch 2.14.1, AVX512, cpu (2 runs)." in err
    )
    assert "**Note:** The runs come from 2 platforms" in (out / "report.md").read_text()
    with open(out / "results.csv") as handle:
        platforms = {row["run"]: row["platform"] for row in csv.DictReader(handle)}
    assert platforms["emp_r0.7_s1"] == "torch 2.14.1, AVX512, cpu"
    assert platforms["random_r0.7_s0"] == "torch 2.14.1, AVX2, cpu"


def test_compare_says_nothing_when_the_runs_share_one_platform(tmp_path: Path, capsys) -> None:
    _fabricate_pairs(tmp_path / "one", [AVX2, AVX2])
    out = compare([str(tmp_path / "one")], str(tmp_path / "out"))
    assert "platforms" not in capsys.readouterr().err
    assert "**Note:**" not in (out / "report.md").read_text()


def test_pinned_instruction_sets_are_part_of_the_platform(monkeypatch) -> None:
    for key in ISA_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    plain = describe_platform(torch.device("cpu"))
    assert "pinned" not in plain
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    monkeypatch.setenv("FAISS_SIMD_LEVEL", "AVX2")
    pinned = describe_platform(torch.device("cpu"))
    assert pinned["pinned"] == "MKL_CBWR=AVX2 FAISS_SIMD_LEVEL=AVX2"
    assert platform_label(pinned).endswith(", cpu (MKL_CBWR=AVX2 FAISS_SIMD_LEVEL=AVX2)")
