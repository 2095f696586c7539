"""Shared fixtures: tiny synthetic configs and run directories, CPU only."""

from __future__ import annotations

import json
import sys
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


ROOT = Path(__file__).resolve().parent.parent
SIMCLR_CONFIG = str(ROOT / "configs" / "simclr_fashion_mnist.yaml")


def metrics_records(run_dir: Path) -> list[dict]:
    """Every line of ``run_dir/metrics.jsonl``, parsed strictly (a torn line fails the test)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def pretrain_command(*arguments: str) -> list[str]:
    """``python -m ssl_emp pretrain -c configs/simclr_fashion_mnist.yaml ARGUMENTS...``."""
    return [sys.executable, "-m", "ssl_emp", "pretrain", "-c", SIMCLR_CONFIG, *arguments]
