"""Weighted kNN classification on frozen, L2-normalised features (docs/design.md, 8).

Each test sample takes its k most similar training samples (cosine similarity); neighbour j
votes for its class with weight ``exp(sim_j / t)``; the class with the largest vote wins
(k = 200, t = 0.1 as in lightly's benchmarks). The neighbour search is faiss's exact
inner-product index when faiss is installed, else a torch matmul + top-k; both agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_emp.data import ImageData
from ssl_emp.eval.features import extract_features
from ssl_emp.neighbours import faiss_available, search


@dataclass
class KnnResult:
    """Accuracy of one kNN evaluation (fraction in [0, 1])."""

    top1: float
    k: int
    t: float
    backend: str
    train_samples: int
    test_samples: int
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    t: float = 0.1,
    use_faiss: bool = True,
) -> torch.Tensor:
    """Predicted class of every test sample by similarity-weighted kNN, shape (Q,)."""
    database = F.normalize(train_features.float(), dim=1)
    queries = F.normalize(test_features.float(), dim=1)
    k = min(k, len(database))
    similarities, neighbours = search(database, queries, k, use_faiss=use_faiss)
    weights = (similarities / t).exp()
    votes = torch.zeros(len(queries), num_classes, device=queries.device)
    votes.scatter_add_(
        1,
        train_labels.to(queries.device)[neighbours.to(queries.device)],
        weights.to(queries.device),
    )
    return votes.argmax(dim=1)


def knn_accuracy(
    backbone: nn.Module,
    train: ImageData,
    test: ImageData,
    image_size: int,
    k: int,
    t: float,
) -> KnnResult:
    """Extract features once (no augmentation) and score the test split by weighted kNN."""
    started = time.perf_counter()
    train_features = extract_features(backbone, train, image_size)
    test_features = extract_features(backbone, test, image_size)
    predictions = knn_predict(
        train_features, train.labels, test_features, train.num_classes, k=k, t=t
    )
    top1 = float((predictions.cpu() == test.labels.cpu()).float().mean())
    return KnnResult(
        top1=top1,
        k=min(k, len(train)),
        t=t,
        backend="faiss" if faiss_available() else "torch",
        train_samples=len(train),
        test_samples=len(test),
        wall_time_s=time.perf_counter() - started,
    )
