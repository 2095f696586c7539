"""Host-device synchronisations per training step, counted on the CPU: each
``aten._local_scalar_dense`` (``.item()``, ``bool(t)``, ``int(t)``) would make the host wait
for a GPU. A steady-state step makes exactly one: the finiteness check of the gathered
losses, which must precede recording them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_emp.engine.syncs import HostSyncCounter
from ssl_emp.experiments.train import build_trainer
from tests.conftest import tiny_config_with

SYNCS_PER_STEP = 1  # Pruner.record_step: bool(torch.isfinite(losses).all())


def _syncs_per_step(tmp_path: Path, *overrides: str) -> tuple[float, HostSyncCounter]:
    """Train 3 epochs (the first a full warm-up) and count the syncs of every step and
    every step-end callback after the first epoch."""
    trainer = build_trainer(
        tiny_config_with(
            tmp_path, "pruning.policy=emp", "pruning.rate=0.5", "train.epochs=3", *overrides
        )  # fmt: skip
    )
    counter = HostSyncCounter()
    steps = 0
    train_step = trainer.train_step

    def counted_step(*args, **kwargs):
        nonlocal steps
        if trainer.state.epoch == 0:
            return train_step(*args, **kwargs)
        steps += 1
        with counter:
            return train_step(*args, **kwargs)

    trainer.train_step = counted_step
    for callback in trainer.callbacks:
        on_step_end = callback.on_step_end

        def counted_end(trainer_, outcome, on_step_end=on_step_end):
            if trainer.state.epoch == 0:
                return on_step_end(trainer_, outcome)
            with counter:
                return on_step_end(trainer_, outcome)

        callback.on_step_end = counted_end
    trainer.fit()
    assert steps >= 4
    return counter.count / steps, counter


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "simsiam", "nnclr", "supervised"])
def test_a_training_step_waits_for_the_device_once(tmp_path: Path, method: str) -> None:
    per_step, counter = _syncs_per_step(tmp_path, f"method.name={method}")
    assert per_step == SYNCS_PER_STEP, dict(counter.sites)
    (site,) = counter.sites
    assert site.startswith("pruner.py")


def test_logging_and_the_bank_estimator_add_no_wait_per_step(tmp_path: Path) -> None:
    per_step, counter = _syncs_per_step(
        tmp_path, "memory.estimator=bank", "logging.tensorboard=true"
    )
    assert per_step == SYNCS_PER_STEP, dict(counter.sites)


def test_the_counter_sees_each_kind_of_wait() -> None:
    """The oracle for the counter itself: four hand-made waits, and none from a pure op."""
    counter = HostSyncCounter()
    value = torch.arange(3.0)
    with counter:
        _ = value * 2
        assert counter.count == 0
        _ = value.sum().item(), bool(value.any()), int(value[1]), float(value[2])
    assert counter.count == 4
