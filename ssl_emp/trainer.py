"""The training loop shared by every method (SimCLR, MoCo v2, supervised).

One step: index batch -> uint8 images on the device -> method (views, model, per-sample loss)
-> pruner (records scores, weights the loss) -> backward/step. The loop keeps the sample-visit
accounting, writes one metrics record per epoch and a checkpoint per epoch (and every
``train.checkpoint_every`` steps), and resumes exactly from the newest checkpoint. Under
torchrun each rank trains its shard of every global batch (see :mod:`ssl_emp.distributed`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ssl_emp.accounting import effective_rate
from ssl_emp.checkpoint import load_latest_checkpoint, save_checkpoint
from ssl_emp.config import Config
from ssl_emp.data import ImageData, build_datasets, index_batches
from ssl_emp.data.label_noise import flip_labels
from ssl_emp.device import resolve_device
from ssl_emp.distributed import (
    all_gather_objects,
    all_gather_rows,
    barrier,
    broadcast_error,
    init_distributed,
    shard,
    shard_order,
    shard_sizes,
)
from ssl_emp.errors import TrainingDivergedError, UserInputError
from ssl_emp.io import atomic_write, write_json
from ssl_emp.knn import knn_accuracy
from ssl_emp.methods import Method, MethodOutput, build_method
from ssl_emp.optim import build_optimizer, learning_rate_at, set_learning_rate
from ssl_emp.pruning import BankMemory, Pruner, batch_memory, supervised_memory
from ssl_emp.run_dir import RunDirectory
from ssl_emp.seeding import capture_rng_state, epoch_generator, restore_rng_state, seed_everything

SCORES_FILE = "scores.npz"
NOISE_FILE = "label_noise.npz"
EVAL_FILE = "eval.json"
MIN_MEMORY_SPREAD = 0.005  # std of the memory term below which it cannot rank samples


@dataclass
class TrainState:
    """Progress counters that a checkpoint must restore (per-sample counts live in the pruner).

    Attributes:
        epoch: completed epochs.
        step: optimizer steps taken.
        visits: sample-visits trained so far (the budget spent).
        skipped_steps: steps skipped for a non-finite loss (``train.on_nonfinite=skip``).
        epoch_indices: the kept samples of the epoch in progress (None between epochs), so a
            mid-epoch resume trains exactly the batches that were left.
        epoch_batches_done: batches of the epoch in progress already trained.
        epoch_seen: samples of the epoch in progress already trained.
        epoch_loss_sum: sum of their per-sample losses.
        epoch_seconds: training seconds spent on the epoch in progress before a resume.
    """

    epoch: int = 0
    step: int = 0
    visits: int = 0
    skipped_steps: int = 0
    epoch_indices: torch.Tensor | None = None
    epoch_batches_done: int = 0
    epoch_seen: int = 0
    epoch_loss_sum: float = 0.0
    epoch_seconds: float = 0.0

    def finish_epoch(self) -> None:
        """Close the epoch in progress."""
        self.epoch += 1
        self.visits += self.epoch_seen
        self.epoch_indices = None
        self.epoch_batches_done = self.epoch_seen = 0
        self.epoch_loss_sum = self.epoch_seconds = 0.0


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
        test_data: test data for the supervised per-epoch accuracy (loaded when needed).
    """

    def __init__(
        self,
        config: Config,
        train_data: ImageData | None = None,
        test_data: ImageData | None = None,
    ) -> None:
        self.config = config
        self.supervised = config.method.name == "supervised"
        self._check_method_options()
        device_type = resolve_device(config.train.device).type
        self.dist = init_distributed(device_type, timeout_s=config.train.dist_timeout_s)
        self.device = resolve_device(config.train.device, local_rank=self.dist.local_rank)
        if config.train.sync_bn and self.device.type != "cuda":
            raise UserInputError("train.sync_bn=true needs CUDA; drop it for CPU runs")
        if config.train.threads is not None:
            torch.set_num_threads(config.train.threads)
        needs_test = self.supervised or config.eval.knn_every > 0
        if train_data is None or (needs_test and test_data is None):
            train_data, test_data = build_datasets(
                config.data, seed=config.seed, image_size=config.augment.image_size
            )
        if config.train.batch_size > len(train_data):
            raise UserInputError(
                f"train.batch_size={config.train.batch_size} exceeds the {len(train_data)} "
                f"training samples; use train.batch_size<={len(train_data)}"
            )
        self.pruner = Pruner(
            config.pruning,
            num_samples=len(train_data),
            epochs=config.train.epochs,
            seed=config.seed,
            device=self.device,
        )
        hard_rate = config.pruning.policy not in ("full", "infobatch")
        if hard_rate and self.pruner.keep < config.train.batch_size:
            raise UserInputError(
                f"train.batch_size={config.train.batch_size} exceeds the {self.pruner.keep} "
                f"samples kept per epoch at pruning.rate={config.pruning.rate}; use "
                f"train.batch_size<={self.pruner.keep} or a lower rate"
            )
        if config.train.batch_size < self.dist.world_size:
            raise UserInputError(
                f"train.batch_size={config.train.batch_size} is smaller than the "
                f"{self.dist.world_size} processes; use at least one sample per process"
            )
        self.run = self._prepare_run_directory()
        self.noisy = torch.zeros(len(train_data), dtype=torch.bool)
        if config.data.label_noise > 0:
            train_data = self._add_label_noise(train_data)
        seed_everything(config.seed + self.dist.rank)  # distinct views per rank
        self.data = train_data.to(self.device)
        self.noisy = self.noisy.to(self.device)
        self.test_data = test_data
        self.model: Method = build_method(config, train_data).to(self.device)
        self.forward_model: nn.Module = self._wrap_for_ddp(self.model)
        self.optimizer = build_optimizer(self.model, config.train)
        self.bank = self._build_bank() if config.memory.estimator == "bank" else None
        self.state = TrainState()
        # samples this process trained (its shards); the pruner's counts are global
        self.local_train_count = torch.zeros(len(train_data), dtype=torch.long, device=self.device)
        self._warned_flat_memory = False
        if config.run.resume:
            self._resume()

    def _prepare_run_directory(self) -> RunDirectory:
        """Rank 0 creates (or checks) the run directory; every rank fails alike if it cannot."""
        error = None
        if self.dist.is_main:
            try:
                run = RunDirectory.prepare(self.config)
            except UserInputError as problem:
                error = str(problem)
        error = broadcast_error(error)
        if error is not None:
            raise UserInputError(error)
        return run if self.dist.is_main else RunDirectory(self.config.run.dir)

    def _wrap_for_ddp(self, model: Method) -> nn.Module:
        """DistributedDataParallel around the method when several processes train."""
        if not self.dist.enabled:
            return model
        if self.config.train.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.model = model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def _check_method_options(self) -> None:
        config = self.config
        if self.supervised and config.memory.estimator == "bank":
            raise UserInputError(
                "memory.estimator=bank is an SSL estimator; supervised runs use the prediction "
                "entropy, so drop memory.estimator=bank"
            )
        if not self.supervised and config.data.label_noise > 0:
            raise UserInputError(
                "data.label_noise only applies to supervised training (ssl-emp train-supervised); "
                "SSL pretraining does not use labels"
            )

    def _add_label_noise(self, data: ImageData) -> ImageData:
        """Flip a seeded fraction of the labels; record which in ``label_noise.npz``."""
        noisy_labels, flipped = flip_labels(
            data.labels, self.config.data.label_noise, data.num_classes, seed=self.config.seed
        )
        arrays = {
            "flipped": flipped,
            "clean_labels": data.labels.numpy(),
            "noisy_labels": noisy_labels.numpy(),
        }
        if self.dist.is_main:
            atomic_write(self.run.path / NOISE_FILE, lambda stream: np.savez(stream, **arrays))
        self.noisy[torch.from_numpy(flipped)] = True
        return replace(data, labels=noisy_labels)

    def _build_bank(self) -> BankMemory:
        memory = self.config.memory
        dim = (
            self.config.model.proj_dim
            if memory.layer == "projection"
            else self.model.backbone.feature_dim
        )
        return BankMemory(
            num_samples=len(self.data),
            dim=dim,
            tau=memory.tau,
            k=memory.k,
            center=memory.center,
            normalize=memory.normalize,
            device=self.device,
        )

    def _memory_features(self, output: MethodOutput) -> torch.Tensor:
        if self.config.memory.layer == "projection":
            return output.projections
        return output.features

    def _resume(self) -> None:
        found = load_latest_checkpoint(self.run.checkpoint_dir)
        if found is None:
            self.log(f"no checkpoint in {self.run.checkpoint_dir} yet; starting from epoch 0")
            return
        path, payload = found
        if payload.get("method") != self.config.method.name:
            raise UserInputError(
                f"checkpoint {path} is from method '{payload.get('method')}', not "
                f"'{self.config.method.name}'; use a run.dir of the same method"
            )
        saved_world = payload.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise UserInputError(
                f"checkpoint {path} was written by {saved_world} process(es) but this run has "
                f"{self.dist.world_size}; resume with the same number (torchrun "
                f"--nproc_per_node={saved_world}), since batch shards and RNG streams depend on it"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.pruner.load_state_dict(payload["pruner"])
        if self.bank is not None:
            self.bank.load_state_dict(payload["bank"])
        self.state = TrainState(**payload["state"])
        restore_rng_state(payload["rng"][self.dist.rank])
        if self.dist.is_main:
            self.run.truncate_metrics(self.state.epoch)
        self.log(f"resumed from {path} (epoch {self.state.epoch})")

    def log(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.dist.is_main:
            print(message, flush=True)

    def _checkpoint(self, mid_epoch: bool = False) -> None:
        payload: dict[str, Any] = {
            "method": self.config.method.name,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": asdict(self.state),
            "pruner": self.pruner.state_dict(),
            "bank": self.bank.state_dict() if self.bank is not None else None,
            "rng": all_gather_objects(capture_rng_state()),  # one state per rank
            "world_size": self.dist.world_size,
        }
        if self.dist.is_main:
            step = self.state.step if mid_epoch else None
            save_checkpoint(self.run.checkpoint_dir, self.state.epoch, payload, step=step)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """Sample indices trained in ``epoch``, as chosen by the pruner."""
        return self.pruner.select(epoch)

    def step_memory(
        self, ordered: torch.Tensor, output: MethodOutput, sizes: list[int]
    ) -> torch.Tensor | None:
        """Memory terms of the whole (global) batch, in the order of ``ordered``; a bank write
        for the bank estimator.

        Supervised: the prediction entropy of each rank's samples, gathered. SSL batch
        estimator: computed on every rank from the gathered features of all shards, so the
        candidates are the global batch's views, exactly as in a single process.
        """
        if output.logits is not None:
            memory = supervised_memory(output.logits, normalize=self.config.memory.normalize)
            return all_gather_rows(memory, sizes)
        features = self._memory_features(output)
        if features is None:
            return None
        features = all_gather_rows(features.transpose(0, 1), sizes).transpose(0, 1)
        if self.bank is not None:
            self.bank.write(ordered, features)
            return None
        memory = self.config.memory
        return batch_memory(
            features, tau=memory.tau, center=memory.center, normalize=memory.normalize
        )

    @torch.no_grad()
    def refresh_bank(self) -> None:
        """Re-embed every sample (eval mode, fresh views) into the bank; ranks share the work."""
        self.model.eval()
        world = self.dist.world_size
        for batch in index_batches(
            torch.arange(len(self.data), device=self.device), self.config.train.batch_size
        ):
            local = shard(batch, self.dist)
            with autocast_context(self.device, self.config.train.amp):
                output = self.model(self.data.images[local], self.data.labels[local])
            features = self._memory_features(output).transpose(0, 1)
            sizes = shard_sizes(len(batch), world)
            gathered = all_gather_rows(features, sizes).transpose(0, 1)
            self.bank.write(shard_order(batch, world), gathered)
        self.model.train()

    def end_of_epoch_memory(self) -> dict[str, Any]:
        """Bank estimator: optional refresh, then re-score every sample; returns statistics."""
        if self.bank is None:
            return {}
        started = time.perf_counter()
        every = self.config.memory.refresh_every
        if every and (self.state.epoch + 1) % every == 0:
            self.refresh_bank()
        memory, stats = self.bank.compute(labels=self.data.labels)
        self.pruner.table.set_memory(memory)
        stats["bank_pass_s"] = time.perf_counter() - started
        return stats

    def train_step(self, batch: torch.Tensor, progress: float) -> torch.Tensor | None:
        """One optimizer step on the samples ``batch``; returns their (detached) losses, or
        None when the step was skipped for a non-finite loss.

        Under torchrun ``batch`` is the global batch: this rank trains its strided shard and
        the losses (and memory terms) of all shards are gathered, so every rank records the
        same values in its score table. The returned losses follow :func:`shard_order`.

        Args:
            batch: sample indices.
            progress: training progress in epochs (sets the learning rate and, for MoCo, the
                key encoder's momentum).
        """
        set_learning_rate(self.optimizer, learning_rate_at(progress, self.config.train))
        self.model.before_step(progress, self.config.train.epochs)
        local = shard(batch, self.dist)
        sizes = shard_sizes(len(batch), self.dist.world_size)
        ordered = shard_order(batch, self.dist.world_size)
        with autocast_context(self.device, self.config.train.amp):
            output = self.forward_model(self.data.images[local], self.data.labels[local])
        local_loss = output.loss.float()
        losses = all_gather_rows(local_loss.detach(), sizes)
        if not bool(torch.isfinite(losses).all()):
            return self._non_finite()
        memory = self.step_memory(ordered, output, sizes)
        self.pruner.record(ordered, losses, memory, epoch=self.state.epoch)
        self.local_train_count[local] += 1
        loss = self.pruner.weighted_loss(local, local_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step += 1
        return losses

    def _non_finite(self) -> None:
        """Stop (default) or skip a step whose loss is not finite; nothing is recorded and
        the skipped samples do not count as visits."""
        where = f"epoch {self.state.epoch + 1}, step {self.state.step}"
        if self.config.train.on_nonfinite == "stop":
            raise TrainingDivergedError(
                f"non-finite loss at {where}; the last good checkpoint in "
                f"{self.run.checkpoint_dir} is intact. Lower train.lr (now {self.config.train.lr})"
                " and --resume, or set train.on_nonfinite=skip"
            )
        self.state.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.log(
            f"warning: non-finite loss at {where}; step skipped ({self.state.skipped_steps} so far)"
        )
        return None

    @torch.no_grad()
    def test_accuracy(self) -> float:
        """Top-1 accuracy of the supervised model on the test split (eval mode, no views)."""
        self.model.eval()
        correct = 0
        for start in range(0, len(self.test_data), 1024):
            images = self.test_data.images[start : start + 1024].to(self.device)
            labels = self.test_data.labels[start : start + 1024].to(self.device)
            correct += int((self.model.predict(images).argmax(dim=1) == labels).sum())
        self.model.train()
        return correct / len(self.test_data)

    def noise_diagnostics(self, kept: torch.Tensor) -> dict[str, Any]:
        """With label noise: how often flipped vs clean samples were selected and trained."""
        if not bool(self.noisy.any()):
            return {}
        counts = self.pruner.table.train_count.float()
        return {
            "noisy_selected_frac": float(self.noisy[kept].float().mean()),
            "visits_per_noisy": float(counts[self.noisy].mean()),
            "visits_per_clean": float(counts[~self.noisy].mean()),
        }

    def train_epoch(self) -> dict[str, Any]:
        """One epoch over the selected samples (or the rest of an interrupted one)."""
        config, state = self.config, self.state
        epoch = state.epoch
        if state.epoch_indices is None:
            state.epoch_indices = self.epoch_indices(epoch).cpu()
        indices = state.epoch_indices.to(self.device)
        batches = index_batches(
            indices, config.train.batch_size, generator=epoch_generator(config.seed, epoch)
        )
        self.model.train()
        loss_sum = torch.tensor(state.epoch_loss_sum, dtype=torch.float64, device=self.device)
        started = time.perf_counter() - state.epoch_seconds
        progress_bar = tqdm(
            batches[state.epoch_batches_done :],
            desc=f"epoch {epoch + 1}/{config.train.epochs}",
            initial=state.epoch_batches_done,
            total=len(batches),
            disable=not (config.train.progress and self.dist.is_main),
            leave=False,
            unit="batch",
        )
        for batch in progress_bar:
            progress = epoch + state.epoch_seen / len(indices)
            per_sample_loss = self.train_step(batch, progress)
            state.epoch_batches_done += 1
            if per_sample_loss is None:
                continue
            state.epoch_seen += len(batch)
            loss_sum += per_sample_loss.double().sum()
            every = config.train.checkpoint_every
            if every and state.step % every == 0 and state.epoch_batches_done < len(batches):
                state.epoch_loss_sum = float(loss_sum)
                state.epoch_seconds = time.perf_counter() - started
                self._checkpoint(mid_epoch=True)
            if config.train.progress:
                elapsed = time.perf_counter() - started
                progress_bar.set_postfix(
                    loss=f"{per_sample_loss.mean().item():.3f}",
                    img_s=f"{state.epoch_seen / elapsed:.0f}",
                )
        seen = state.epoch_seen
        train_wall = time.perf_counter() - started
        selection = self.pruner.last_stats
        bank_stats = self.end_of_epoch_memory()
        wall = time.perf_counter() - started
        state.finish_epoch()
        record: dict[str, Any] = {
            "epoch": self.state.epoch,
            "loss": float(loss_sum) / max(seen, 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "kept": seen,
            "visits": self.state.visits,
            "effective_rate": effective_rate(self.state.visits, len(self.data), self.state.epoch),
            "wall_time_s": wall,
            "images_per_s": seen / train_wall if train_wall > 0 else math.inf,
            "skipped_steps": self.state.skipped_steps,
        }
        record.update({k: v for k, v in selection.items() if k not in ("epoch", "selected")})
        record.update(self.pruner.epoch_diagnostics(epoch, kept=indices))
        record.update(bank_stats)
        record.update(self.noise_diagnostics(indices))
        if self.supervised:
            record["test_top1"] = self.test_accuracy()
        elif config.eval.knn_every and self.state.epoch % config.eval.knn_every == 0:
            record["knn_top1"] = self.knn_monitor()
        return record

    def knn_monitor(self) -> float:
        """Weighted-kNN top-1 of the current backbone on the test split (DESIGN 4)."""
        image_size = self.config.augment.image_size or self.data.image_size
        result = knn_accuracy(
            self.model.backbone,
            self.data,
            self.test_data,
            image_size,
            k=self.config.eval.knn_k,
            t=self.config.eval.knn_t,
        )
        return result.top1

    def write_scores(self) -> None:
        """``scores.npz``: per-sample score, memory, train_count, loss, last_seen and labels."""
        table = self.pruner.table
        arrays = {
            "score": self.pruner.scores(),
            "memory": table.memory.cpu().numpy(),
            "train_count": table.train_count.cpu().numpy(),
            "loss": table.loss.cpu().numpy(),
            "last_seen": table.last_seen.cpu().numpy(),
            "labels": self.data.labels.cpu().numpy(),
        }
        if self.dist.is_main:
            atomic_write(self.run.path / SCORES_FILE, lambda stream: np.savez(stream, **arrays))

    def _warn_if_memory_is_flat(self, record: dict[str, Any]) -> None:
        """Say so when the memory term has (almost) no spread: it then changes no ranking."""
        spread = record.get("memory_std")
        if self.pruner.score_kind != "emp" or spread is None or spread >= MIN_MEMORY_SPREAD:
            return
        if not self._warned_flat_memory:
            self._warned_flat_memory = True
            self.log(
                f"warning: the memory term spreads only {spread:.4f} (mean "
                f"{record['memory_mean']:.4f}); it carries little ranking signal. Check "
                "memory.center=true, or lower memory.tau"
            )

    def fit(self, until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs (or up to ``until_epoch``); returns all metrics records."""
        config = self.config
        last_epoch = min(until_epoch or config.train.epochs, config.train.epochs)
        pruning = config.pruning
        pruning_text = (
            "no pruning"
            if pruning.policy == "full"
            else f"pruning {pruning.policy} rate {pruning.rate} score {self.pruner.score_kind}"
        )
        verb = "training" if self.supervised else "pretraining"
        processes = f" x {self.dist.world_size} processes" if self.dist.enabled else ""
        self.log(
            f"{verb} {config.method.name} / {config.model.backbone} on {self.data.name} "
            f"({len(self.data)} samples, {self.data.image_size}px) on {self.device}{processes} "
            f"for {config.train.epochs} epochs, {pruning_text} -> {self.run.path}"
        )
        record: dict[str, Any] = {}
        while self.state.epoch < last_epoch:
            record = self.train_epoch()
            if self.dist.is_main:
                self.run.append_metrics(record)
            self._checkpoint()
            memory = record.get("memory_mean")
            memory_text = f"  memory {memory:.3f}±{record['memory_std']:.3f}" if memory else ""
            if "test_top1" in record:
                memory_text += f"  test {100 * record['test_top1']:.2f}%"
            if "knn_top1" in record:
                memory_text += f"  kNN {100 * record['knn_top1']:.2f}%"
            self.log(
                f"epoch {record['epoch']:3d}/{config.train.epochs}  loss {record['loss']:.4f}  "
                f"kept {record['kept']}  eff.rate {record['effective_rate']:.3f}  "
                f"gini {record['train_count_gini']:.3f}{memory_text}  "
                f"{record['images_per_s']:.0f} img/s  {record['wall_time_s']:.1f}s"
            )
            self._warn_if_memory_is_flat(record)
        if self.state.epoch >= config.train.epochs:
            self.write_scores()
            if self.supervised and self.dist.is_main:
                top1 = record.get("test_top1", self.run.metrics()[-1]["test_top1"])
                write_json(self.run.path / EVAL_FILE, {"top1": top1, "epochs": self.state.epoch})
                self.log(f"test top1 {100 * top1:.2f} % -> {self.run.path / EVAL_FILE}")
        barrier()
        return self.run.metrics()


def pretrain(config: Config) -> RunDirectory:
    """Run (or resume) a self-supervised pretraining run; returns its run directory."""
    if config.method.name == "supervised":
        raise UserInputError(
            "method.name=supervised is trained with `ssl-emp train-supervised`, not pretrain"
        )
    trainer = Trainer(config)
    trainer.fit()
    return trainer.run


def train_supervised(config: Config) -> RunDirectory:
    """Run (or resume) a supervised classification run; writes ``eval.json``."""
    if config.method.name != "supervised":
        raise UserInputError(
            f"train-supervised needs method.name=supervised (the config says "
            f"'{config.method.name}'); use a supervised config such as "
            "configs/supervised_fashion_mnist.yaml"
        )
    trainer = Trainer(config)
    trainer.fit()
    return trainer.run
