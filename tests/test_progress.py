"""Progress output: a bar only on a terminal, a few plain lines in files (nohup, clusters)."""

import io
import subprocess
from pathlib import Path

import pytest
import torch

from ssl_emp.engine.progress import EpochProgress
from tests.conftest import TINY_OVERRIDES, pretrain_command


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
def test_a_run_logged_to_a_file_stays_small(tmp_path: Path) -> None:
    """3 epochs of 40 steps with progress on, output not a terminal: at most ~6 KB."""
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("train.", "data.synthetic"))]
    result = subprocess.run(
        pretrain_command(
            *overrides,
            "data.synthetic_size=640",
            "data.subset=null",
            "train.batch_size=16",
            "train.epochs=3",
            "train.progress=true",
            "train.threads=1",
            f"run.dir={tmp_path / 'r'}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert result.stdout.count(b"epoch   3/3") == 1  # 40 steps per epoch ran
    assert len(result.stdout) <= 6 * 1024, result.stdout[-2000:]


def test_plain_lines_come_every_interval_and_never_on_the_last_batch(capsys) -> None:
    progress = EpochProgress(
        epoch=0, epochs=2, done=0, total=5, enabled=True, interval_s=1e-9, stream=io.StringIO()
    )
    for seen in range(1, 6):
        progress.step(torch.full((4,), 2.5), seen=4 * seen)
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[2] for line in lines] == [
        f"batch {n}/5 loss 2.5000" for n in range(1, 5)
    ]


def test_no_lines_inside_the_interval(capsys) -> None:
    progress = EpochProgress(
        epoch=0, epochs=2, done=0, total=50, enabled=True, interval_s=3600, stream=io.StringIO()
    )
    for seen in range(1, 51):
        progress.step(torch.ones(2), seen=seen)
    assert capsys.readouterr().out == ""


def test_a_terminal_gets_the_bar_and_no_lines(capsys) -> None:
    terminal = FakeTerminal()
    progress = EpochProgress(
        epoch=1, epochs=3, done=0, total=4, enabled=True, interval_s=1e-9, stream=terminal
    )
    for seen in range(1, 5):
        progress.step(torch.ones(2), seen=seen)
    progress.close()
    assert "epoch 2/3" in terminal.getvalue()
    assert capsys.readouterr().out == ""


def test_disabled_progress_shows_nothing(capsys) -> None:
    terminal = FakeTerminal()
    progress = EpochProgress(
        epoch=0, epochs=1, done=0, total=3, enabled=False, interval_s=1e-9, stream=terminal
    )
    for seen in range(1, 4):
        progress.step(torch.ones(2), seen=seen)
    assert terminal.getvalue() == "" and capsys.readouterr().out == ""
