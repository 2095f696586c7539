"""The ssl-emp command: help texts, exit codes and one-line errors."""

import subprocess
from pathlib import Path

import pytest
import yaml

from ssl_emp.cli import main
from tests.conftest import ROOT, pretrain_command


@pytest.mark.parametrize("command", ["pretrain", "linear-probe", "demo"])
def test_help_documents_options(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: ssl-emp" in text
    if command != "linear-probe":
        assert "train.batch_size" in text and "data.source" in text
    else:
        assert "eval.probe_epochs" in text


def test_bad_key_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        pretrain_command("train.epochz=3", f"run.dir={tmp_path / 'r'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown config key 'train.epochz'" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_linear_probe_on_non_run_dir(tmp_path: Path, capsys) -> None:
    assert main(["linear-probe", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_overrides_after_flags_are_collected(tmp_path: Path) -> None:
    from tests.conftest import TINY_OVERRIDES

    run_dir = tmp_path / "r"
    argv = [
        "pretrain",
        "-c",
        str(ROOT / "configs" / "simclr_fashion_mnist.yaml"),
        *TINY_OVERRIDES[:3],
        "--overwrite",
        *TINY_OVERRIDES[3:],
        "data.subset=null",
        f"run.dir={run_dir}",
    ]
    assert main(argv) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    # the overrides after --overwrite took effect (TINY_OVERRIDES[3:]: backbone, width, ...)
    assert saved["model"]["width"] == 4 and saved["train"]["epochs"] == 2
    assert saved["run"]["overwrite"] is True
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_unknown_flag_is_an_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "-c", "x.yaml", "--frobnicate"])
    assert exit_info.value.code == 2
    assert "--frobnicate" in capsys.readouterr().err
