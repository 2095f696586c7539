"""Warm-up + cosine schedule as a function of progress in sample-visits."""

import math

import pytest

from ssl_emp.config import TrainConfig
from ssl_emp.engine.optim import learning_rate_at, peak_learning_rate


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


def test_same_progress_same_rate_whatever_the_steps_per_epoch() -> None:
    config = _config()
    # half of epoch 4 visited: 100 of 200 samples (pruned) or 500 of 1000 (full)
    assert learning_rate_at(4 + 100 / 200, config) == learning_rate_at(4 + 500 / 1000, config)
