"""End-to-end training on tiny synthetic data: run directory, determinism, resume, errors."""

from pathlib import Path

import pytest
import torch
import yaml

from ssl_emp.config import Config
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.errors import UserInputError
from ssl_emp.experiments.train import build_trainer, pretrain
from tests.conftest import metrics_records, tiny_config_with

METRIC_KEYS = {
    "epoch",
    "loss",
    "kept",
    "effective_rate",
    "train_count_gini",
    "memory_mean",
    "wall_time_s",
    "images_per_s",
}


def test_run_directory_contents(tiny_config: Config) -> None:
    run = pretrain(tiny_config)
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert saved == tiny_config.to_dict()
    records = metrics_records(run.path)
    assert [r["epoch"] for r in records] == [1, 2]
    assert set(records[0]) >= METRIC_KEYS
    assert records[0]["kept"] == 48 and records[1]["effective_rate"] == 0.0
    assert [p.name for p in list_checkpoints(run.checkpoint_dir)] == [
        "epoch_0001.pt",
        "epoch_0002.pt",
    ]


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    first = pretrain(tiny_config_with(tmp_path / "a"))
    second = pretrain(tiny_config_with(tmp_path / "b"))
    losses = [[r["loss"] for r in metrics_records(run.path)] for run in (first, second)]
    assert losses[0] == losses[1]
    third = pretrain(tiny_config_with(tmp_path / "c", "seed=1"))
    assert [r["loss"] for r in metrics_records(third.path)] != losses[0]


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = pretrain(tiny_config_with(tmp_path / "straight", "train.epochs=3"))
    interrupted = build_trainer(tiny_config_with(tmp_path / "split", "train.epochs=3"))
    interrupted.fit(until_epoch=2)
    resumed = build_trainer(
        tiny_config_with(tmp_path / "split", "train.epochs=3", "run.resume=true")
    )
    assert resumed.state.epoch == 2
    resumed.fit()
    expected = [r["loss"] for r in metrics_records(straight.path)]
    assert [r["loss"] for r in metrics_records(resumed.run.path)] == expected
    final = torch.load(list_checkpoints(resumed.run.checkpoint_dir)[-1], weights_only=False)
    reference = torch.load(list_checkpoints(straight.checkpoint_dir)[-1], weights_only=False)
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, final["model"][name]), name


def test_only_last_two_checkpoints_kept(tmp_path: Path) -> None:
    run = pretrain(tiny_config_with(tmp_path, "train.epochs=4"))
    assert [p.name for p in list_checkpoints(run.checkpoint_dir)] == [
        "epoch_0003.pt",
        "epoch_0004.pt",
    ]


def test_existing_run_dir_needs_resume_or_overwrite(tiny_config: Config) -> None:
    run = pretrain(tiny_config)
    before = (run.path / "metrics.jsonl").read_bytes()
    with pytest.raises(UserInputError, match="already exists; pass --resume .* or --overwrite"):
        pretrain(tiny_config)
    assert (run.path / "metrics.jsonl").read_bytes() == before


def test_resume_with_changed_config_names_keys(tmp_path: Path) -> None:
    pretrain(tiny_config_with(tmp_path))
    changed = tiny_config_with(tmp_path, "run.resume=true", "train.lr=0.1", "seed=3")
    with pytest.raises(UserInputError, match="changed config: seed, train.lr differ"):
        build_trainer(changed)


def test_batch_larger_than_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="train.batch_size=64 exceeds the 48"):
        build_trainer(tiny_config_with(tmp_path, "train.batch_size=64"))


def test_corrupt_checkpoint_names_previous(tmp_path: Path) -> None:
    config = tiny_config_with(tmp_path, "train.epochs=2")
    run = pretrain(config)
    newest = list_checkpoints(run.checkpoint_dir)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    from ssl_emp.engine.checkpoint import load_checkpoint

    with pytest.raises(UserInputError, match="epoch_0002.pt is corrupt.*epoch_0001.pt"):
        load_checkpoint(newest, previous=list_checkpoints(run.checkpoint_dir)[0])
    resumed = build_trainer(tiny_config_with(tmp_path, "train.epochs=2", "run.resume=true"))
    assert resumed.state.epoch == 1


def test_resume_of_a_run_that_predates_a_config_key(tmp_path: Path) -> None:
    run = pretrain(tiny_config_with(tmp_path, "train.epochs=1"))
    text = run.config_path.read_text()
    assert "deterministic: false" in text
    run.config_path.write_text(text.replace("  deterministic: false\n", ""))
    resumed = build_trainer(tiny_config_with(tmp_path, "train.epochs=1", "run.resume=true"))
    assert resumed.state.epoch == 1


def test_deterministic_option_turns_on_deterministic_algorithms(tmp_path: Path) -> None:
    try:
        trainer = build_trainer(tiny_config_with(tmp_path, "train.deterministic=true"))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        trainer.fit()  # every op of a CPU run has a deterministic implementation
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
