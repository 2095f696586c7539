"""A run's life from the user's side: messages that count epochs from 1, resuming a finished
run, training one longer, a leftover directory of a failed start, preemption's marker, and
writes that the system refuses."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssl_emp.cli import main
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.engine.state import StepOutcome
from ssl_emp.engine.trainer import Trainer
from ssl_emp.errors import RunPreempted
from ssl_emp.experiments.train import build_trainer
from tests.conftest import (
    ROOT,
    SIMCLR_CONFIG,
    TINY_OVERRIDES,
    metrics_records,
    pretrain_command,
    tiny_config_with,
)

BASE = [*TINY_OVERRIDES, "data.subset=null"]


def _cli(run_dir: Path, *extra: str) -> int:
    return main(["pretrain", "-c", SIMCLR_CONFIG, *BASE, f"run.dir={run_dir}", *extra])


class _StopAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        if trainer.state.step == self.step:
            trainer.stop.signal_name = "SIGTERM"


def test_messages_and_checkpoint_names_count_epochs_from_one(tmp_path: Path, capsys) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, "train.epochs=3"))
    trainer.callbacks.append(_StopAtStep(step=4))  # 3 steps per epoch: inside epoch 2
    with pytest.raises(RunPreempted, match=r"after step 4 \(epoch 2, batch 1\)"):
        trainer.fit()
    names = [path.name for path in list_checkpoints(trainer.run.checkpoint_dir)]
    assert names == ["epoch_0001.pt", "epoch_0002_step_00000004.pt"]  # in epoch 2, not "0"
    capsys.readouterr()
    build_trainer(tiny_config_with(tmp_path, "train.epochs=3", "run.resume=true"))
    assert "continuing epoch 2 of 3 after batch 1" in capsys.readouterr().out


def test_checkpoints_are_ordered_by_training_time_not_by_name() -> None:
    from ssl_emp.engine.checkpoint import _training_order

    names = ["epoch_0002.pt", "epoch_0002_step_00000009.pt", "epoch_0001.pt"]
    ordered = sorted((Path(name) for name in names), key=_training_order)
    assert [path.name for path in ordered] == [
        "epoch_0001.pt",
        "epoch_0002_step_00000009.pt",  # inside epoch 2, before it ended
        "epoch_0002.pt",
    ]


def test_resuming_a_finished_run_says_so_and_trains_nothing(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert _cli(run_dir) == 0
    before = metrics_records(run_dir)
    capsys.readouterr()
    assert _cli(run_dir, "--resume") == 0
    out = capsys.readouterr().out
    assert "all 2 epochs are trained" in out and "has trained all 2 epochs" in out
    assert "pretraining simclr" not in out  # no header as if it trained
    assert metrics_records(run_dir) == before


def test_a_finished_run_is_trained_longer_by_raising_train_epochs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert _cli(run_dir) == 0
    config = str(run_dir / "config.yaml")
    longer = ["pretrain", "-c", config, "--resume", "train.epochs=4"]
    assert main(longer) == 0
    assert [record["epoch"] for record in metrics_records(run_dir)] == [1, 2, 3, 4]
    assert "epochs: 4" in (run_dir / "config.yaml").read_text()  # later resumes read it
    assert main(["pretrain", "-c", config, "--resume"]) == 0  # finished again, no error


def test_training_shorter_on_resume_is_refused(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert _cli(run_dir) == 0
    capsys.readouterr()
    assert _cli(run_dir, "--resume", "train.epochs=1") == 2
    assert "trained longer, not shorter" in capsys.readouterr().err


def test_a_changed_config_on_resume_names_the_command_that_works(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert _cli(run_dir, "pruning.policy=random", "pruning.rate=0.5") == 0
    capsys.readouterr()
    assert _cli(run_dir, "--resume") == 2  # the overrides were not repeated
    error = capsys.readouterr().err
    assert f"ssl-emp pretrain -c {run_dir / 'config.yaml'} --resume" in error
    assert error.count("\n") == 1


def test_a_directory_left_by_a_failed_start_is_started_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 0\n")  # what a start that failed leaves
    (run_dir / "checkpoints").mkdir()
    assert _cli(run_dir) == 0
    assert len(metrics_records(run_dir)) == 2
    assert _cli(run_dir) == 2  # now it holds a run: refused without --resume/--overwrite


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_last_one_survives(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    run_dir = tmp_path / "run"
    assert _cli(run_dir, "train.epochs=1") == 0
    import ssl_emp.engine.checkpoint as checkpoint

    def full_disk(payload, stream) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    capsys.readouterr()
    assert _cli(run_dir, "--resume", "train.epochs=2") == 2
    error = capsys.readouterr().err
    assert "No space left on device" in error and "--resume" in error
    assert error.count("\n") == 1
    names = [path.name for path in list_checkpoints(run_dir / "checkpoints")]
    assert names == ["epoch_0001.pt"]  # intact, and no temporary file left beside it
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch_0001.pt"]
    monkeypatch.undo()
    assert _cli(run_dir, "--resume", "train.epochs=2") == 0


def test_an_unwritable_result_fails_before_the_evaluation(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    run_dir = tmp_path / "run"
    assert _cli(run_dir) == 0
    import ssl_emp.eval.evaluators as evaluators
    import ssl_emp.io as io

    evaluated = []
    monkeypatch.setattr(evaluators, "knn_accuracy", lambda *args, **kwargs: evaluated.append(1))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    capsys.readouterr()
    assert main(["knn", str(run_dir)]) == 2
    assert "Read-only file system" in capsys.readouterr().err
    assert evaluated == []  # refused before the (long) evaluation


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path, capsys) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("seed: 0\n# caf\xe9\n".encode("latin-1"))
    assert main(["pretrain", "-c", str(config), *BASE, f"run.dir={tmp_path / 'r'}"]) == 2
    error = capsys.readouterr().err
    assert "is not UTF-8 text" in error and error.count("\n") == 1


def test_a_stopped_run_leaves_preempted_json_until_it_resumes(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, "train.epochs=3"))
    trainer.callbacks.append(_StopAtStep(step=4))
    with pytest.raises(RunPreempted):
        trainer.fit()
    marker = json.loads((trainer.run.path / "preempted.json").read_text())
    assert marker["signal"] == "SIGTERM" and marker["epoch"] == 2 and marker["step"] == 4
    assert marker["resume"].endswith("--resume")
    build_trainer(tiny_config_with(tmp_path, "train.epochs=3", "run.resume=true")).fit()
    assert not (trainer.run.path / "preempted.json").exists()


def test_a_preempted_rank_under_torchrun_exits_0_and_only_rank_0_reports(
    capsys, monkeypatch
) -> None:
    import ssl_emp.cli as cli

    def stopped(args) -> int:
        raise RunPreempted("stopped by SIGTERM after step 4")

    monkeypatch.setattr(cli, "dispatch", stopped)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    for rank, printed in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        assert cli.main(["pretrain", "-c", SIMCLR_CONFIG]) == 0
        assert capsys.readouterr().err.count("stopped by SIGTERM") == printed
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["pretrain", "-c", SIMCLR_CONFIG]) == 75  # a single process: EX_TEMPFAIL


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


@pytest.mark.slow
def test_sigterm_under_torchrun_leaves_the_marker_and_one_line(tmp_path: Path) -> None:
    from tests.test_distributed import DDP_OVERRIDES, _free_port

    run_dir = tmp_path / "ddp"
    command = pretrain_command(
        *BASE, *DDP_OVERRIDES, "data.synthetic_size=256", "train.epochs=20",
        "train.threads=1", f"run.dir={run_dir}",
    )[1:]  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                f"--master_port={_free_port()}"]  # fmt: skip
    process = subprocess.Popen(
        [*launcher, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "metrics.jsonl").is_file() or not metrics_records(run_dir):
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.01)
        for worker in _children(process.pid):  # the ranks, as a scheduler signals them
            os.kill(worker, signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    assert err.count("stopped by SIGTERM") == 1 and "Traceback" not in err
    assert "done:" not in out
    marker = json.loads((run_dir / "preempted.json").read_text())
    assert marker["signal"] == "SIGTERM"
