"""Weighted kNN: faiss and torch agree, separable data ~1.0, random labels ~chance, the CLI."""

import json
from pathlib import Path

import pytest
import torch

from ssl_emp.cli import main
from ssl_emp.eval.knn import knn_predict
from ssl_emp.experiments.train import pretrain
from ssl_emp.neighbours import faiss_available
from tests.conftest import metrics_records, tiny_config_with


def _clusters(count: int, seed: int, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.randn(classes, 32, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.arange(count) % classes
    noise = torch.randn(count, 32, generator=torch.Generator().manual_seed(seed))
    return centres[labels] + noise, labels


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_and_torch_give_the_same_predictions() -> None:
    train, labels = _clusters(2000, seed=1)
    test, _ = _clusters(500, seed=2)
    test = test + 2 * torch.randn(500, 32, generator=torch.Generator().manual_seed(3))  # harder
    with_faiss = knn_predict(train, labels, test, 5, k=200, t=0.1, use_faiss=True)
    with_torch = knn_predict(train, labels, test, 5, k=200, t=0.1, use_faiss=False)
    assert torch.equal(with_faiss, with_torch)


def test_weighted_vote_by_hand() -> None:
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[0.9, 0.1]])
    # k = 3, t = 1: class 0 gets e^{cos(q, a)}, class 1 gets e^{cos(q, b)} + e^{cos(q, c)}
    q = query / query.norm()
    votes = [
        float(torch.exp(q @ train[0])),
        float(torch.exp(q @ train[1]) + torch.exp(q @ train[2])),
    ]
    expected = int(votes[1] > votes[0])
    assert knn_predict(train, labels, query, 2, k=3, t=1.0).item() == expected
    assert knn_predict(train, labels, query, 2, k=1, t=1.0).item() == 0


def test_separable_clusters_are_classified_almost_perfectly() -> None:
    train, labels = _clusters(1000, seed=1)
    test, test_labels = _clusters(500, seed=2)
    predictions = knn_predict(train, labels, test, 5, k=20, t=0.1)
    assert (predictions == test_labels).float().mean() > 0.99


def test_shuffled_labels_give_chance() -> None:
    train, _ = _clusters(2000, seed=1)
    test, _ = _clusters(2000, seed=2)
    generator = torch.Generator().manual_seed(4)
    random_labels = torch.randint(0, 5, (2000,), generator=generator)
    random_test_labels = torch.randint(0, 5, (2000,), generator=generator)
    predictions = knn_predict(train, random_labels, test, 5, k=200, t=0.1)
    assert abs((predictions == random_test_labels).float().mean().item() - 0.2) < 0.04


def test_knn_cli_and_monitor(tmp_path: Path) -> None:
    run = pretrain(tiny_config_with(tmp_path, "eval.knn_every=1", "eval.knn_k=10"))
    records = metrics_records(run.path)
    assert all(0 <= r["knn_top1"] <= 1 for r in records)
    assert main(["knn", str(run.path), "eval.knn_k=10"]) == 0
    result = json.loads((run.path / "knn.json").read_text())
    assert result["top1"] == pytest.approx(records[-1]["knn_top1"])
    assert result["k"] == 10
