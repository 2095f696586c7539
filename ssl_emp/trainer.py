"""The training loop shared by every method.

One step: index batch -> uint8 images on the device -> method (views, model, per-sample loss)
-> scalar loss -> backward/step. The loop keeps the sample-visit accounting, writes one
metrics record and one checkpoint per epoch, and resumes from the newest checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ssl_emp.accounting import effective_rate, gini
from ssl_emp.checkpoint import load_latest_checkpoint, save_checkpoint
from ssl_emp.config import Config
from ssl_emp.data import ImageData, build_datasets, index_batches
from ssl_emp.errors import UserInputError
from ssl_emp.methods import build_method
from ssl_emp.optim import build_optimizer, learning_rate_at, set_learning_rate
from ssl_emp.run_dir import RunDirectory
from ssl_emp.seeding import capture_rng_state, epoch_generator, restore_rng_state, seed_everything


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            "train.device=cuda but no CUDA device is visible; use train.device=cpu"
        )
    return torch.device(name)


@dataclass
class TrainState:
    """Progress counters that a checkpoint must restore.

    Attributes:
        epoch: completed epochs.
        step: optimizer steps taken.
        visits: sample-visits trained so far (the budget spent).
        train_counts: per-sample number of times trained, shape (N,).
    """

    epoch: int = 0
    step: int = 0
    visits: int = 0
    train_counts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


def autocast_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """Train ``config.method`` on ``config.data`` into ``config.run.dir``.

    Args:
        config: the resolved run configuration.
        train_data: training data (loaded from ``config.data`` when omitted).
    """

    def __init__(self, config: Config, train_data: ImageData | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.train.device)
        if config.train.threads is not None:
            torch.set_num_threads(config.train.threads)
        if train_data is None:
            train_data, _ = build_datasets(
                config.data, seed=config.seed, image_size=config.augment.image_size
            )
        if config.train.batch_size > len(train_data):
            raise UserInputError(
                f"train.batch_size={config.train.batch_size} exceeds the {len(train_data)} "
                f"training samples; use train.batch_size<={len(train_data)}"
            )
        self.run = RunDirectory.prepare(config)
        seed_everything(config.seed)
        self.data = train_data.to(self.device)
        self.model: nn.Module = build_method(config, train_data).to(self.device)
        self.optimizer = build_optimizer(self.model, config.train)
        self.state = TrainState(train_counts=torch.zeros(len(train_data), dtype=torch.long))
        if config.run.resume:
            self._resume()

    def _resume(self) -> None:
        found = load_latest_checkpoint(self.run.checkpoint_dir)
        if found is None:
            print(f"no checkpoint in {self.run.checkpoint_dir} yet; starting from epoch 0")
            return
        path, payload = found
        if payload.get("method") != self.config.method.name:
            raise UserInputError(
                f"checkpoint {path} is from method '{payload.get('method')}', not "
                f"'{self.config.method.name}'; use a run.dir of the same method"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainState(**payload["state"])
        restore_rng_state(payload["rng"])
        self.run.truncate_metrics(self.state.epoch)
        print(f"resumed from {path} (epoch {self.state.epoch})")

    def _checkpoint(self) -> None:
        payload: dict[str, Any] = {
            "method": self.config.method.name,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": asdict(self.state),
            "rng": capture_rng_state(),
        }
        save_checkpoint(self.run.checkpoint_dir, self.state.epoch, payload)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """Sample indices trained in ``epoch`` (all of them; pruning policies narrow this)."""
        del epoch
        return torch.arange(len(self.data), device=self.device)

    def train_step(self, batch: torch.Tensor, lr: float) -> torch.Tensor:
        """One optimizer step on the samples ``batch``; returns their (detached) losses."""
        set_learning_rate(self.optimizer, lr)
        with autocast_context(self.device, self.config.train.amp):
            output = self.model(self.data.images[batch])
        loss = output.loss.float().mean()
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"non-finite loss at epoch {self.state.epoch + 1}, step {self.state.step}; "
                f"lower train.lr (now {self.config.train.lr}); the last good checkpoint is kept"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step += 1
        self.state.train_counts[batch.cpu()] += 1
        return output.loss.detach()

    def train_epoch(self) -> dict[str, Any]:
        """One epoch over the selected samples; returns its metrics record."""
        config = self.config
        epoch = self.state.epoch
        indices = self.epoch_indices(epoch)
        batches = index_batches(
            indices, config.train.batch_size, generator=epoch_generator(config.seed, epoch)
        )
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        started = time.perf_counter()
        progress_bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{config.train.epochs}",
            disable=not config.train.progress,
            leave=False,
            unit="batch",
        )
        for batch in progress_bar:
            lr = learning_rate_at(epoch + seen / len(indices), config.train)
            per_sample_loss = self.train_step(batch, lr)
            seen += len(batch)
            loss_sum += per_sample_loss.double().sum()
            if config.train.progress:
                elapsed = time.perf_counter() - started
                progress_bar.set_postfix(
                    loss=f"{per_sample_loss.mean().item():.3f}", img_s=f"{seen / elapsed:.0f}"
                )
        wall = time.perf_counter() - started
        self.state.epoch += 1
        self.state.visits += seen
        return {
            "epoch": self.state.epoch,
            "loss": float(loss_sum) / max(seen, 1),
            "lr": lr,
            "kept": seen,
            "visits": self.state.visits,
            "effective_rate": effective_rate(self.state.visits, len(self.data), self.state.epoch),
            "train_count_gini": gini(self.state.train_counts),
            "memory_mean": None,
            "wall_time_s": wall,
            "images_per_s": seen / wall if wall > 0 else math.inf,
        }

    def fit(self, until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs (or up to ``until_epoch``); returns all metrics records."""
        config = self.config
        last_epoch = min(until_epoch or config.train.epochs, config.train.epochs)
        print(
            f"pretraining {config.method.name} / {config.model.backbone} on {self.data.name} "
            f"({len(self.data)} samples, {self.data.image_size}px) on {self.device} for "
            f"{config.train.epochs} epochs -> {self.run.path}"
        )
        while self.state.epoch < last_epoch:
            record = self.train_epoch()
            self.run.append_metrics(record)
            self._checkpoint()
            print(
                f"epoch {record['epoch']:3d}/{config.train.epochs}  loss {record['loss']:.4f}  "
                f"kept {record['kept']}  {record['images_per_s']:.0f} img/s  "
                f"{record['wall_time_s']:.1f}s",
                flush=True,
            )
        return self.run.metrics()


def pretrain(config: Config) -> RunDirectory:
    """Run (or resume) a pretraining run; returns its run directory."""
    trainer = Trainer(config)
    trainer.fit()
    return trainer.run
