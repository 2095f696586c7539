"""Linear probe: separable vs shuffled features, the folded standardisation, the CLI."""

import json
from pathlib import Path

import pytest
import torch

from ssl_emp.cli import main
from ssl_emp.config import EvalConfig
from ssl_emp.eval.probe import accuracy, train_linear_classifier
from ssl_emp.experiments.train import pretrain


def _blobs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 4
    centres = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)) * 4 + 10
    return centres[labels] + torch.randn(count, 16, generator=generator), labels


def test_probe_separates_blobs() -> None:
    features, labels = _blobs(400, seed=1)
    test_features, test_labels = _blobs(200, seed=2)
    layer = train_linear_classifier(features, labels, 4, EvalConfig(probe_epochs=20), seed=0)
    assert accuracy(layer, test_features, test_labels) > 0.98


def test_probe_is_at_chance_on_shuffled_labels() -> None:
    # labels drawn independently of the features, for training and for testing
    features, _ = _blobs(400, seed=1)
    test_features, _ = _blobs(2000, seed=2)
    generator = torch.Generator().manual_seed(3)
    random_labels = torch.randint(0, 4, (400,), generator=generator)
    random_test_labels = torch.randint(0, 4, (2000,), generator=generator)
    layer = train_linear_classifier(features, random_labels, 4, EvalConfig(probe_epochs=20), seed=0)
    assert abs(accuracy(layer, test_features, random_test_labels) - 0.25) < 0.05


def test_folded_layer_equals_standardise_then_classify() -> None:
    features, labels = _blobs(100, seed=1)
    layer = train_linear_classifier(features, labels, 4, EvalConfig(probe_epochs=2), seed=0)
    # recover the layer on standardised inputs and apply it by hand
    mean, std = features.mean(0), features.std(0)
    weight = layer.weight * std
    bias = layer.bias + (weight * (mean / std)).sum(1)
    by_hand = ((features - mean) / std) @ weight.T + bias
    assert torch.allclose(layer(features), by_hand, atol=1e-3)


def test_linear_probe_cli_writes_probe_json(tiny_config, capsys: pytest.CaptureFixture) -> None:
    run = pretrain(tiny_config)
    assert main(["linear-probe", str(run.path), "eval.probe_epochs=3"]) == 0
    result = json.loads((Path(run.path) / "probe.json").read_text())
    assert 0.0 <= result["top1"] <= 1.0
    assert f"{100 * result['top1']:.2f} %" in capsys.readouterr().out


def test_linear_probe_rejects_training_overrides(tiny_config, capsys) -> None:
    run = pretrain(tiny_config)
    assert main(["linear-probe", str(run.path), "train.lr=3"]) == 2
    assert "only eval.* and train.device" in capsys.readouterr().err
