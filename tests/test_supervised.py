"""The supervised path: per-sample CE, label noise, and EMP end to end through the same trainer."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_emp.cli import main
from ssl_emp.data.label_noise import flip_labels
from ssl_emp.errors import UserInputError
from ssl_emp.experiments.train import build_trainer, pretrain, train_supervised
from ssl_emp.methods.losses import cross_entropy_per_sample
from tests.conftest import ROOT, TINY_OVERRIDES, metrics_records, tiny_config_with

SUPERVISED = ["method.name=supervised", "augment.preset=supervised"]


def test_per_sample_loss_equals_torch_cross_entropy() -> None:
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 4, 2, 2, 1, 3, 0])
    assert torch.allclose(
        cross_entropy_per_sample(logits, labels), F.cross_entropy(logits, labels, reduction="none")
    )


def test_flip_labels_changes_exactly_the_fraction_to_other_classes() -> None:
    labels = torch.arange(1000) % 10
    noisy, flipped = flip_labels(labels, 0.2, 10, seed=0)
    changed = np.flatnonzero((noisy != labels).numpy())
    assert np.array_equal(changed, flipped) and len(flipped) == 200
    counts = np.bincount(noisy[flipped].numpy(), minlength=10)
    assert counts.min() > 5  # spread over classes
    again, _ = flip_labels(labels, 0.2, 10, seed=0)
    assert torch.equal(noisy, again)


def test_supervised_emp_end_to_end(tmp_path: Path) -> None:
    run = train_supervised(
        tiny_config_with(
            tmp_path,
            *SUPERVISED,
            "pruning.policy=emp",
            "pruning.rate=0.5",
            "train.epochs=3",
            "train.batch_size=8",
            "train.lr=0.05",
        )
    )
    records = metrics_records(run.path)
    assert all(0 <= r["test_top1"] <= 1 for r in records)
    evaluation = json.loads((run.path / "eval.json").read_text())
    assert evaluation["top1"] == records[-1]["test_top1"]
    assert records[-1]["kept"] == 24 and 0 <= records[-1]["memory_mean"] <= 1


def test_supervised_learns_the_synthetic_task(tmp_path: Path) -> None:
    run = train_supervised(
        tiny_config_with(
            tmp_path,
            *SUPERVISED,
            "data.synthetic_size=96",
            "train.epochs=6",
            "train.batch_size=16",
            "train.lr=0.1",
        )
    )
    assert json.loads((run.path / "eval.json").read_text())["top1"] > 0.8


def test_label_noise_is_recorded_and_diagnosed(tmp_path: Path) -> None:
    run = train_supervised(
        tiny_config_with(
            tmp_path,
            *SUPERVISED,
            "data.label_noise=0.25",
            "pruning.policy=topk",
            "pruning.rate=0.5",
            "train.epochs=3",
            "train.batch_size=8",
        )
    )
    noise = np.load(run.path / "label_noise.npz")
    assert len(noise["flipped"]) == 12
    assert np.array_equal(
        np.flatnonzero(noise["clean_labels"] != noise["noisy_labels"]), noise["flipped"]
    )
    last = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[-1])
    counts = np.load(run.path / "scores.npz")["train_count"]
    assert last["visits_per_noisy"] == pytest.approx(counts[noise["flipped"]].mean())
    clean = np.setdiff1d(np.arange(48), noise["flipped"])
    assert last["visits_per_clean"] == pytest.approx(counts[clean].mean())


def test_label_noise_on_ssl_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="label_noise only applies to supervised"):
        pretrain(tiny_config_with(tmp_path, "data.label_noise=0.2"))


def test_commands_check_the_method(tmp_path: Path, capsys) -> None:
    with pytest.raises(UserInputError, match="train-supervised needs method.name=supervised"):
        train_supervised(tiny_config_with(tmp_path))
    with pytest.raises(UserInputError, match="trained with `ssl-emp train-supervised`"):
        pretrain(tiny_config_with(tmp_path, *SUPERVISED))
    with pytest.raises(UserInputError, match="bank is an SSL estimator"):
        build_trainer(tiny_config_with(tmp_path, *SUPERVISED, "memory.estimator=bank"))


def test_train_supervised_cli(tmp_path: Path) -> None:

    code = main(
        [
            "train-supervised",
            "-c",
            str(ROOT / "configs" / "supervised_fashion_mnist.yaml"),
            *TINY_OVERRIDES,
            "data.subset=null",
            "train.batch_size=16",
            f"run.dir={tmp_path / 'sup'}",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "sup" / "eval.json").read_text())
    last = metrics_records(tmp_path / "sup")[-1]
    assert result == {"top1": last["test_top1"], "epochs": 2}
    assert 0.0 <= result["top1"] <= 1.0
