"""Linear probe: a linear classifier trained on frozen, standardised backbone features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_emp.config import EvalConfig
from ssl_emp.data import ImageData
from ssl_emp.eval.features import extract_features


@dataclass
class ProbeResult:
    """Accuracies of one linear probe (fractions in [0, 1])."""

    top1: float
    train_top1: float
    feature_dim: int
    train_samples: int
    test_samples: int
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_linear_classifier(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    config: EvalConfig,
    seed: int,
) -> nn.Linear:
    """Fit a linear layer on standardised features with Adam and a cosine schedule.

    The standardisation (train mean and std) is folded into the returned layer, so it applies
    directly to raw features.
    """
    generator = torch.Generator().manual_seed(seed)
    mean = train_features.mean(dim=0)
    std = train_features.std(dim=0).clamp_min(1e-6)
    features = (train_features - mean) / std
    torch.manual_seed(seed)
    layer = nn.Linear(features.shape[1], num_classes).to(features.device)
    optimizer = torch.optim.Adam(
        layer.parameters(), lr=config.probe_lr, weight_decay=config.probe_weight_decay
    )
    steps_per_epoch = -(-len(features) // config.probe_batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.probe_epochs * steps_per_epoch
    )
    for _ in range(config.probe_epochs):
        order = torch.randperm(len(features), generator=generator).to(features.device)
        for batch in order.split(config.probe_batch_size):
            loss = F.cross_entropy(layer(features[batch]), train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    with torch.no_grad():
        folded = nn.Linear(features.shape[1], num_classes).to(features.device)
        folded.weight.copy_(layer.weight / std)
        folded.bias.copy_(layer.bias - (layer.weight * (mean / std)).sum(dim=1))
    return folded


@torch.no_grad()
def accuracy(layer: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``layer`` on ``features``."""
    return float((layer(features).argmax(dim=1) == labels).float().mean())


def linear_probe(
    backbone: nn.Module,
    train: ImageData,
    test: ImageData,
    image_size: int,
    config: EvalConfig,
    seed: int,
) -> ProbeResult:
    """Extract features once (no augmentation), fit the probe, and score the test split."""
    started = time.perf_counter()
    train_features = extract_features(backbone, train, image_size)
    test_features = extract_features(backbone, test, image_size)
    device = train_features.device
    train_labels, test_labels = train.labels.to(device), test.labels.to(device)
    layer = train_linear_classifier(
        train_features, train_labels, train.num_classes, config, seed=seed
    )
    return ProbeResult(
        top1=accuracy(layer, test_features, test_labels),
        train_top1=accuracy(layer, train_features, train_labels),
        feature_dim=int(train_features.shape[1]),
        train_samples=len(train),
        test_samples=len(test),
        wall_time_s=time.perf_counter() - started,
    )
