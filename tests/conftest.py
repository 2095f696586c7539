"""Shared fixtures: tiny synthetic configs and run directories, CPU only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_emp.config import Config, load_config

TINY_OVERRIDES = [
    "data.source=synthetic",
    "data.synthetic_size=48",
    "data.synthetic_classes=3",
    "model.backbone=resnet_small",
    "model.width=4",
    "model.proj_dim=16",
    "train.epochs=2",
    "train.batch_size=16",
    "train.progress=false",
    "train.device=cpu",
    "eval.probe_epochs=5",
]


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Config:
    """A SimCLR config that trains in well under a second per epoch."""
    return load_config(None, [*TINY_OVERRIDES, f"run.dir={tmp_path / 'run'}"])


def tiny_config_with(tmp_path: Path, *overrides: str) -> Config:
    """``tiny_config`` plus extra overrides."""
    return load_config(None, [*TINY_OVERRIDES, f"run.dir={tmp_path / 'run'}", *overrides])
