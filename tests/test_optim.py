"""Warm-up + cosine schedule as a function of progress in sample-visits."""

import math
from pathlib import Path

import pytest

from ssl_emp.config import TrainConfig
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.optim import learning_rate_at, peak_learning_rate
from ssl_emp.engine.state import StepOutcome
from ssl_emp.engine.trainer import Trainer
from ssl_emp.experiments.train import build_trainer
from tests.conftest import tiny_config_with


def _config() -> TrainConfig:
    return TrainConfig(epochs=11, warmup_epochs=1.0, lr=0.4, batch_size=128)


def test_peak_uses_linear_scaling() -> None:
    assert peak_learning_rate(_config()) == pytest.approx(0.2)


def test_warmup_is_linear() -> None:
    config = _config()
    assert learning_rate_at(0.0, config) == 0.0
    assert learning_rate_at(0.25, config) == pytest.approx(0.05)
    assert learning_rate_at(1.0, config) == pytest.approx(0.2)


@pytest.mark.parametrize("progress", [1.0, 3.5, 6.0, 8.25, 11.0])
def test_cosine_after_warmup_matches_formula(progress: float) -> None:
    config = _config()
    fraction = (progress - 1.0) / 10.0
    expected = 0.2 * (1 + math.cos(math.pi * fraction)) / 2
    assert learning_rate_at(progress, config) == pytest.approx(expected, abs=1e-5)


def test_the_trainer_steps_the_schedule_by_sample_visits(tmp_path: Path) -> None:
    # a pruned run: 48 samples in the warm-up epoch, 24 after; 10 per batch (near-equal)
    config = tiny_config_with(
        tmp_path,
        "train.epochs=3",
        "train.batch_size=10",
        "train.warmup_epochs=1.5",
        "pruning.policy=random",
        "pruning.rate=0.5",
    )
    trainer = build_trainer(config)
    seen: list[float] = []

    class RecordRate(Callback):
        def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    trainer.callbacks.append(RecordRate())
    trainer.fit()
    expected = []
    for epoch, kept, sizes in ((0, 48, [10, 10, 10, 9, 9]), (1, 24, [8, 8, 8]), (2, 24, [8] * 3)):
        done = 0
        for size in sizes:  # the rate of a step is set by the visits before it
            expected.append(learning_rate_at(epoch + done / kept, config.train))
            done += size
    assert seen == pytest.approx(expected, rel=1e-12)
    assert len(set(seen[:5])) == 5  # it moves inside an epoch, not per epoch
