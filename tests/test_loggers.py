"""TensorBoard and W&B loggers: what they write, read back with their own readers."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_emp.config import load_config
from ssl_emp.engine.checkpoint import load_latest_checkpoint
from ssl_emp.experiments.train import build_trainer
from tests.conftest import TINY_OVERRIDES, metrics_records

TIMING = {"wall_time_s", "images_per_s"}


def _events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0, "images": 0}
    )
    accumulator.Reload()
    return accumulator


def _config(tmp_path: Path, *overrides: str):
    return load_config(None, [*TINY_OVERRIDES, f"run.dir={tmp_path / 'run'}", *overrides])


def test_tensorboard_holds_one_loss_point_per_step(tmp_path: Path) -> None:
    trainer = build_trainer(_config(tmp_path, "logging.tensorboard=true", "train.epochs=2"))
    trainer.fit()
    events = _events(trainer.run.path)
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2, 3, 4, 5, 6]  # 48 samples / 16, 2 epochs
    records = metrics_records(trainer.run.path)
    for epoch, record in enumerate(records):  # equal batches: the epoch loss is their mean
        steps = losses[3 * epoch : 3 * epoch + 3]
        assert sum(event.value for event in steps) / 3 == pytest.approx(record["loss"], rel=1e-5)
    kept = events.Scalars("epoch/kept")
    assert [(event.step, event.value) for event in kept] == [(3, 48.0), (6, 48.0)]
    tags = events.Tags()
    assert {"pruning/score", "pruning/memory", "pruning/train_count"} <= set(tags["histograms"])
    assert "data/views" in tags["images"]
    assert {"epoch/score_q50", "epoch/memory_q90", "train/lr"} <= set(tags["scalars"])


def test_loggers_change_no_number(tmp_path: Path) -> None:
    plain = build_trainer(_config(tmp_path / "a", "pruning.policy=emp", "pruning.rate=0.5"))
    plain.fit()
    logged = build_trainer(
        _config(
            tmp_path / "b", "pruning.policy=emp", "pruning.rate=0.5", "logging.tensorboard=true"
        )
    )
    logged.fit()
    strip = lambda records: [{k: v for k, v in r.items() if k not in TIMING} for r in records]  # noqa: E731
    assert strip(metrics_records(plain.run.path)) == strip(metrics_records(logged.run.path))


def test_a_resumed_run_continues_the_tensorboard_steps(tmp_path: Path) -> None:
    config = _config(tmp_path, "logging.tensorboard=true", "train.epochs=2")
    build_trainer(config).fit(until_epoch=1)
    resumed = build_trainer(
        _config(tmp_path, "logging.tensorboard=true", "train.epochs=2", "run.resume=true")
    )
    resumed.fit()
    steps = [event.step for event in _events(resumed.run.path).Scalars("train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_resumed_run_keeps_its_wandb_run_id(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = _config(tmp_path, "logging.wandb=true", "train.epochs=2")
    first = build_trainer(config)
    first.fit(until_epoch=1)
    run_id = load_latest_checkpoint(first.run.checkpoint_dir)[1]["state"]["logger_run_ids"]["wandb"]
    resumed = build_trainer(
        _config(tmp_path, "logging.wandb=true", "train.epochs=2", "run.resume=true")
    )
    assert resumed.state.logger_run_ids == {"wandb": run_id}
    resumed.fit()
    saved = load_latest_checkpoint(resumed.run.checkpoint_dir)[1]["state"]["logger_run_ids"]
    assert saved == {"wandb": run_id}
    offline_runs = sorted((resumed.run.path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2  # offline mode: nothing left the machine
    assert all(path.name.endswith(f"-{run_id}") for path in offline_runs)
    assert all((path / f"run-{run_id}.wandb").is_file() for path in offline_runs)
