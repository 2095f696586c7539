"""Exact resume after SIGKILL, mid-epoch checkpoints, and the divergence guard."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_emp.cli import main
from ssl_emp.config import load_config
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.engine.preemption import PREEMPTED_EXIT_CODE
from ssl_emp.engine.state import StepOutcome
from ssl_emp.engine.trainer import Trainer
from ssl_emp.errors import RunPreempted, TrainingDivergedError, UserInputError
from ssl_emp.experiments.train import build_trainer, pretrain
from ssl_emp.methods import MethodOutput
from tests.conftest import (
    ROOT,
    SIMCLR_CONFIG,
    TINY_OVERRIDES,
    metrics_records,
    pretrain_command,
    tiny_config_with,
)

TIMING_KEYS = {"wall_time_s", "images_per_s", "bank_pass_s"}
PRUNED = [
    "pruning.policy=emp",
    "pruning.rate=0.5",
    "memory.estimator=bank",
    "memory.k=4",
    "memory.refresh_every=2",
    "train.batch_size=8",
]


def _records(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in record.items() if k not in TIMING_KEYS}
        for record in metrics_records(run_dir)
    ]


def _assert_same_results(a: Path, b: Path) -> None:
    assert _records(a) == _records(b)
    first, second = np.load(a / "scores.npz"), np.load(b / "scores.npz")
    for key in first.files:
        assert np.array_equal(first[key], second[key], equal_nan=True), key


def _command(run_dir: Path, *extra: str) -> list[str]:
    return pretrain_command(
        *TINY_OVERRIDES,
        "data.subset=null",
        "data.synthetic_size=96",
        "train.threads=1",
        "train.epochs=10",
        "train.checkpoint_every=1",
        *PRUNED,
        f"run.dir={run_dir}",
        *extra,
    )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    subprocess.run(_command(reference), check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            names = [p.name for p in list_checkpoints(killed / "checkpoints")]
            if names and names[-1].startswith("epoch_0005_step_"):  # inside the 5th epoch
                os.kill(process.pid, signal.SIGKILL)
                break
            if process.poll() is not None:
                pytest.fail("the run finished before it could be killed")
            time.sleep(0.005)
        else:
            pytest.fail("no mid-epoch checkpoint appeared in time")
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert not (killed / "scores.npz").exists()

    resumed = subprocess.run(
        _command(killed, "--resume"), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "_step_" in resumed.stdout
    _assert_same_results(reference, killed)


class _SimulatedCrashError(Exception):
    pass


def test_in_process_crash_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    overrides = [*PRUNED, "train.epochs=4", "train.checkpoint_every=2"]
    straight = build_trainer(tiny_config_with(tmp_path / "a", *overrides))
    straight.fit()
    crashing = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    original_step = crashing.train_step

    def step_then_crash(batch, progress, images=None, batches_in_epoch=0):
        result = original_step(batch, progress, images, batches_in_epoch)
        if crashing.state.step == 9:  # inside the third epoch, after a mid-epoch checkpoint
            raise _SimulatedCrashError
        return result

    crashing.train_step = step_then_crash
    with pytest.raises(_SimulatedCrashError):
        crashing.fit()
    resumed = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    assert resumed.state.epoch_indices is not None and resumed.state.epoch_batches_done > 0
    resumed.fit()
    _assert_same_results(straight.run.path, resumed.run.path)


def _nan_after(trainer: Trainer, good_steps: int) -> None:
    forward = trainer.model.forward

    def poisoned(images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        output = forward(images, labels)
        if trainer.state.step + trainer.state.skipped_steps >= good_steps:
            output.loss = output.loss * float("nan")
        return output

    trainer.model.forward = poisoned


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, "train.epochs=3", "train.batch_size=8"))
    _nan_after(trainer, good_steps=8)  # 6 steps per epoch: dies in the second epoch
    with pytest.raises(TrainingDivergedError, match="non-finite loss at epoch 2.*intact"):
        trainer.fit()
    names = [p.name for p in list_checkpoints(trainer.run.checkpoint_dir)]
    assert names == ["epoch_0001.pt"]
    resumed = build_trainer(
        tiny_config_with(tmp_path, "train.epochs=3", "train.batch_size=8", "run.resume=true")
    )
    assert resumed.state.epoch == 1


def test_divergence_can_skip_steps(tmp_path: Path) -> None:
    trainer = build_trainer(
        tiny_config_with(
            tmp_path, "train.epochs=2", "train.batch_size=8", "train.on_nonfinite=skip"
        )
    )
    _nan_after(trainer, good_steps=9)
    trainer.fit()
    last = _records(trainer.run.path)[-1]
    assert last["skipped_steps"] == 3
    counts = np.load(trainer.run.path / "scores.npz")["train_count"]
    assert counts.sum() == last["visits"] == 48 + 48 - 3 * 8


def test_divergence_exit_code_is_1_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    def diverge(self) -> None:
        raise TrainingDivergedError("non-finite loss at epoch 1, step 0; ...")

    monkeypatch.setattr(Trainer, "fit", diverge)
    code = main(
        [
            "pretrain",
            "-c",
            str(ROOT / "configs" / "simclr_fashion_mnist.yaml"),
            *TINY_OVERRIDES,
            "data.subset=null",
            f"run.dir={tmp_path / 'r'}",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_checkpoints_mid_epoch_and_resume_is_bit_identical(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    overrides = ["train.checkpoint_every=0", "data.synthetic_size=256"]  # no periodic checkpoints
    reference = tmp_path / "reference"
    subprocess.run(_command(reference, *overrides), check=True, capture_output=True, timeout=300)
    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        _command(stopped, *overrides), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    try:
        while not (stopped / "metrics.jsonl").is_file() or not metrics_records(stopped):
            assert process.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.005)
        time.sleep(0.05)  # into the second epoch (the in-process test pins the step)
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == PREEMPTED_EXIT_CODE, stderr
    assert f"stopped by {stop_signal.name}" in stderr and "--resume" in stderr
    assert stderr.count("\n") == 1  # one line
    assert not (stopped / "scores.npz").exists()
    resumed = subprocess.run(
        _command(stopped, *overrides, "--resume"), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_results(reference, stopped)


def test_a_second_process_on_a_run_directory_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [*TINY_OVERRIDES, "data.subset=null", "train.epochs=1", f"run.dir={run_dir}"]
    first = build_trainer(load_config(SIMCLR_CONFIG, overrides))  # holds the lock
    before = sorted(p.name for p in run_dir.rglob("*"))
    for flag in ("--resume", "--overwrite"):
        second = subprocess.run(
            pretrain_command(*overrides, flag), capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"is in use by process {os.getpid()} on" in second.stderr
        assert second.stderr.count("\n") == 1
        assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing touched
    first.fit()
    assert len(metrics_records(run_dir)) == 1


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    pretrain(tiny_config_with(tmp_path, "train.epochs=1"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from ssl_emp.engine.lock import RunLock;"
            f"lock = RunLock(Path({str(tmp_path / 'run')!r})); lock.acquire();"
            "print('locked', flush=True);"
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        resume = tiny_config_with(tmp_path, "train.epochs=1", "run.resume=true")
        with pytest.raises(UserInputError, match=f"in use by process {holder.pid} on"):
            build_trainer(resume)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    build_trainer(resume).fit()  # the kernel released the dead holder's lock
    assert len(metrics_records(tmp_path / "run")) == 1


class _SignalAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        if trainer.state.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_inside_an_epoch_stops_at_that_step_and_resumes_exactly(tmp_path: Path) -> None:
    overrides = [*PRUNED, "train.epochs=3"]
    straight = build_trainer(tiny_config_with(tmp_path / "a", *overrides))
    straight.fit()
    stopped = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    stopped.callbacks.append(_SignalAtStep(step=8))  # 6 full-data steps, then 3 per epoch
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunPreempted, match="stopped by SIGTERM after step 8 .epoch 2, batch 2"):
        stopped.fit()
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    names = [p.name for p in list_checkpoints(stopped.run.checkpoint_dir)]
    assert names[-1] == "epoch_0002_step_00000008.pt"  # inside epoch 2
    resumed = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    assert resumed.state.epoch_batches_done == 2
    resumed.fit()
    _assert_same_results(straight.run.path, resumed.run.path)
