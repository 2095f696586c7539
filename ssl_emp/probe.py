"""Linear probe: a linear classifier trained on frozen, standardised backbone features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_emp.checkpoint import load_latest_checkpoint
from ssl_emp.config import Config, EvalConfig, config_from_dict
from ssl_emp.data import ImageData, build_datasets
from ssl_emp.errors import UserInputError
from ssl_emp.features import extract_features
from ssl_emp.io import write_json
from ssl_emp.methods import build_method
from ssl_emp.run_dir import RunDirectory
from ssl_emp.trainer import resolve_device


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


def load_trained_backbone(
    run: RunDirectory, config: Config, train: ImageData, device: torch.device
) -> nn.Module:
    """The backbone of the newest checkpoint of ``run``."""
    found = load_latest_checkpoint(run.checkpoint_dir)
    if found is None:
        raise UserInputError(
            f"run directory {run.path} has no checkpoint yet; pretrain it first "
            f"(ssl-emp pretrain ... run.dir={run.path})"
        )
    model = build_method(config, train)
    model.load_state_dict(found[1]["model"])
    return model.backbone.to(device)


def probe_run(run_dir: str, overrides: list[str] | None = None) -> ProbeResult:
    """``ssl-emp linear-probe``: probe the newest checkpoint of a run; writes ``probe.json``.

    Args:
        run_dir: the pretraining run directory.
        overrides: ``eval.*`` (or ``train.device``) overrides, e.g. ``eval.probe_epochs=50``.
    """
    run = RunDirectory(run_dir)
    config = run.load_config()
    for text in overrides or []:
        if not text.startswith(("eval.", "train.device=", "train.threads=")):
            raise UserInputError(
                f"linear-probe takes only eval.* and train.device/threads overrides, got '{text}'"
            )
    if overrides:
        config = config_from_dict(config.to_dict(), overrides)
    device = resolve_device(config.train.device)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    train, test = build_datasets(
        config.data, seed=config.seed, image_size=config.augment.image_size
    )
    backbone = load_trained_backbone(run, config, train, device)
    image_size = config.augment.image_size or train.image_size
    result = linear_probe(backbone, train, test, image_size, config.eval, seed=config.seed)
    write_json(run.path / "probe.json", result.to_dict())
    return result
