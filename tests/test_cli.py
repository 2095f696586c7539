"""The ssl-emp command: help texts, exit codes and one-line errors."""

import subprocess
from pathlib import Path

import pytest
import yaml

from ssl_emp.cli import attach_negative_lists, main
from ssl_emp.config import load_config
from ssl_emp.errors import UserInputError
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


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sweep", "--betas", "-1,3"], ["sweep", "--betas=-1,3"]),
        (["sweep", "--betas", "-0.5"], ["sweep", "--betas=-0.5"]),
        (
            ["sweep", "--betas", "1,-3", "--seeds", "0"],
            ["sweep", "--betas", "1,-3", "--seeds", "0"],
        ),
        (["sweep", "--betas", "--no-eval"], ["sweep", "--betas", "--no-eval"]),
    ],
)
def test_negative_number_lists_are_joined_to_their_option(argv, expected) -> None:
    assert attach_negative_lists(argv) == expected


def test_sweep_accepts_a_beta_list_starting_with_a_negative_value(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *pretrain_command()[:3],
            "sweep",
            "-c",
            str(ROOT / "configs" / "simclr_fashion_mnist.yaml"),
            "--dir",
            str(tmp_path / "s"),
            "--policies",
            "emp",
            "--rates",
            "0.5",
            "--betas",
            "-1,3",
            "--no-eval",
            "data.source=synthetic",
            "data.subset=64",
            "train.epochs=1",
            "train.batch_size=32",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert sorted(path.name for path in (tmp_path / "s").iterdir() if path.is_dir()) == [
        "emp_r0.5_s0_b-1",
        "emp_r0.5_s0_b3",
    ]


def test_a_numeric_run_dir_is_a_directory_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, ["run.dir=123"]).run.dir == "123"
    with pytest.raises(UserInputError, match="'pruning.policy' must be"):
        load_config(None, ["pruning.policy=123"])
