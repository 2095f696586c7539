"""The training loop shared by every method (SimCLR, MoCo v2, supervised): epochs and steps.

One step flows one way: index batch -> uint8 images on the device -> method (views, model,
per-sample loss) -> memory estimator -> ``pruner.step`` (records scores, gathers across
ranks, weights the loss) -> backward and optimizer step. Everything around the loop
(checkpoints, metrics, monitors, result files) is a :mod:`callback <ssl_emp.engine.callbacks>`;
the parts are assembled by :func:`ssl_emp.engine.builder.build_parts`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from ssl_emp.collectives import all_gather_objects, barrier
from ssl_emp.data.batch import GlobalBatch, index_batches
from ssl_emp.data.streaming import BatchReader
from ssl_emp.engine.builder import TrainingParts
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.optim import learning_rate_at, set_learning_rate
from ssl_emp.engine.preemption import StopRequest
from ssl_emp.engine.progress import EpochProgress
from ssl_emp.engine.run_dir import resume_command
from ssl_emp.engine.seeding import epoch_generator
from ssl_emp.engine.state import EpochRecord, StepOutcome, TrainState
from ssl_emp.errors import (
    NonFiniteLossError,
    RanksDisagreeError,
    RunPreempted,
    TrainingDivergedError,
)
from ssl_emp.pruning.accounting import effective_rate


def check_ranks_agree(kept: torch.Tensor, epoch: int) -> None:
    """Stop the job when the ranks selected different samples for ``epoch``.

    Every rank selects on its own from its copy of the score table and relies on all copies
    being bit-identical; one all-gather of a digest per epoch turns a silent divergence (or a
    hang on mismatched batch counts) into a clear error.
    """
    digest = hashlib.sha256(kept.numpy().tobytes()).hexdigest()[:16]
    digests = all_gather_objects(digest)
    if len(set(digests)) > 1:
        listing = ", ".join(f"rank {rank}: {value}" for rank, value in enumerate(digests))
        raise RanksDisagreeError(
            f"the processes selected different samples for epoch {epoch + 1} ({listing}); "
            "their score tables diverged, so training would differ per rank. Check that every "
            "rank runs the same code, config and hardware, then --resume"
        )


def autocast_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """Runs the epochs and steps of one run; callbacks do the rest.

    Args:
        parts: the run's device, data, method, optimizer, pruner, estimator and directory.
        callbacks: called in order at the start and end of ``fit``, after each step and after
            each epoch.
    """

    def __init__(self, parts: TrainingParts, callbacks: Sequence[Callback] = ()) -> None:
        self.config = parts.config
        self.context = parts.context
        self.device = parts.device
        self.run = parts.run
        self.data = parts.data
        self.model = parts.model
        self.forward_model = parts.forward_model
        self.optimizer = parts.optimizer
        self.pruner = parts.pruner
        self.estimator = parts.estimator
        self.callbacks = list(callbacks)
        self.state = TrainState()
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._started = time.perf_counter()
        self.stop = StopRequest()
        self.reader: BatchReader | None = None  # reads the epochs' images (store workers)

    @property
    def finished(self) -> bool:
        """Whether every configured epoch has been trained."""
        return self.state.epoch >= self.config.train.epochs

    def log(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.context.is_main:
            print(message, flush=True)

    def train_step(
        self,
        batch: GlobalBatch,
        progress: float,
        images: torch.Tensor | None = None,
        batches_in_epoch: int = 0,
    ) -> StepOutcome | None:
        """One optimizer step on ``batch``; returns what it produced (the gathered, detached
        losses of the whole global batch in ``batch.gathered`` order among it), or None when
        the step was skipped for a non-finite loss.

        Args:
            batch: the global batch; this process trains ``batch.local``.
            progress: training progress in epochs (sets the learning rate and, for MoCo, the
                key encoder's momentum).
            images: the images of ``batch.local`` as the epoch's reader gave them; read from
                the data here when not given.
            batches_in_epoch: the number of batches of the epoch in progress (for callbacks).
        """
        set_learning_rate(self.optimizer, learning_rate_at(progress, self.config.train))
        self.model.before_step(progress, self.config.train.epochs)
        local = batch.local
        if images is None:
            images = self.data.images[local]
        images = images.to(self.device, non_blocking=True)  # no-op for in-memory data
        buffers = self._snapshot_buffers()
        with autocast_context(self.device, self.config.train.amp):
            output = self.forward_model(images, self.data.labels[local])
        memory = self.estimator.batch_memory(batch, output)
        try:
            recorded = self.pruner.record_step(
                batch, output.loss, memory, epoch=self.state.epoch, view_losses=output.view_losses
            )
        except NonFiniteLossError:
            self._non_finite(buffers)
            return None
        self.estimator.observe(batch, output)
        self.optimizer.zero_grad(set_to_none=True)
        recorded.loss.backward()
        self.optimizer.step()
        self.model.commit_step()
        self.state.step += 1
        return StepOutcome(
            batch=batch, losses=recorded.losses, output=output, batches_in_epoch=batches_in_epoch
        )

    def _snapshot_buffers(self) -> list[torch.Tensor] | None:
        """Copies of the model's buffers (BN statistics) when non-finite steps are skipped, so
        a skipped step can be undone."""
        if self.config.train.on_nonfinite != "skip":
            return None
        return [buffer.detach().clone() for buffer in self.model.buffers()]

    def _non_finite(self, buffers: list[torch.Tensor] | None) -> None:
        """Stop (default) or skip a step whose loss is not finite. A skipped step changes no
        model state (weights, BN statistics, MoCo's queue and key encoder), records nothing,
        and its samples do not count as visits."""
        where = f"epoch {self.state.epoch + 1}, step {self.state.step}"
        if self.config.train.on_nonfinite == "stop":
            raise TrainingDivergedError(
                f"non-finite loss at {where}; the last good checkpoint in "
                f"{self.run.checkpoint_dir} is intact. Lower train.lr (now {self.config.train.lr})"
                " and --resume, or set train.on_nonfinite=skip"
            )
        self.state.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        if buffers is not None:
            with torch.no_grad():
                for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
        self.log(
            f"warning: non-finite loss at {where}; step skipped ({self.state.skipped_steps} so far)"
        )

    @torch.no_grad()
    def embed(self, indices: torch.Tensor, layer: str) -> torch.Tensor:
        """Features of fresh views of the samples ``indices``, (V, B, D), through the
        method's side-effect-free ``embed`` in eval mode (no BN statistic, queue or momentum
        changes): the :data:`~ssl_emp.pruning.estimators.Embedder` of the memory estimators."""
        was_training = self.model.training
        self.model.eval()
        try:
            images = self.data.images[indices].to(self.device, non_blocking=True)
            return self.model.embed(images, layer=layer)  # type: ignore[arg-type]
        finally:
            self.model.train(was_training)

    def sync_epoch_progress(self) -> None:
        """Copy the running loss sum and time of the epoch in progress into the state (for a
        mid-epoch checkpoint; kept on the device otherwise, to avoid a sync per step)."""
        self.state.epoch_loss_sum = float(self._loss_sum)
        self.state.epoch_seconds = time.perf_counter() - self._started

    def train_epoch(self) -> EpochRecord:
        """One epoch over the pruner's selection (or the rest of an interrupted one)."""
        config, state, context = self.config, self.state, self.context
        epoch = state.epoch
        if state.epoch_indices is None:
            state.epoch_indices = self.pruner.select(epoch).cpu()
            check_ranks_agree(state.epoch_indices, epoch)
        indices = state.epoch_indices.to(self.device)
        batches = index_batches(
            indices, config.train.batch_size, generator=epoch_generator(config.seed, epoch)
        )
        self.model.train()
        self._loss_sum = torch.tensor(state.epoch_loss_sum, dtype=torch.float64, device=self.device)
        self._started = time.perf_counter() - state.epoch_seconds
        progress = EpochProgress(
            epoch=epoch,
            epochs=config.train.epochs,
            done=state.epoch_batches_done,
            total=len(batches),
            enabled=config.train.progress and context.is_main,
            interval_s=config.train.progress_interval_s,
        )
        shards = [
            GlobalBatch.shard(batch_indices, context.rank, context.world_size)
            for batch_indices in batches[state.epoch_batches_done :]
        ]
        if self.reader is None:  # a store's reader keeps its worker processes for the run
            pin = self.device.type == "cuda"
            self.reader = self.data.reader(workers=config.data.workers, pin_memory=pin)
        read = self.reader.read([shard.local for shard in shards])  # this rank's rows only
        for batch in shards:
            outcome = self.train_step(
                batch,
                progress=epoch + state.epoch_seen / len(indices),
                images=next(read),
                batches_in_epoch=len(batches),
            )
            state.epoch_batches_done += 1
            if outcome is not None:
                state.epoch_seen += len(batch)
                self._loss_sum += outcome.losses.double().sum()
                for callback in self.callbacks:
                    callback.on_step_end(self, outcome)
            progress.step(None if outcome is None else outcome.losses, seen=state.epoch_seen)
            mid_epoch = state.epoch_batches_done < len(batches)
            every = self.config.train.stop_check_every
            if mid_epoch and self.stop.requested(self.device, step=state.step, every=every):
                progress.close()
                self._stop_mid_epoch()
        progress.close()
        return self._close_epoch(epoch, indices)

    def _stop_mid_epoch(self) -> None:
        """Checkpoint the epoch in progress for the callbacks, then stop the run."""
        self.sync_epoch_progress()
        for callback in self.callbacks:
            callback.on_preempt(self)
        raise self._preempted()

    def _preempted(self) -> RunPreempted:
        """The stop, after leaving ``preempted.json`` in the run directory (rank 0)."""
        state, run = self.state, self.run
        stopped_by = self.stop.signal_name or "a signal on another rank"
        command = resume_command(self.config.method.name, run.config_path)
        if self.context.is_main:
            run.mark_preempted(
                {
                    "signal": stopped_by,
                    "step": state.step,
                    "epoch": state.epoch + 1 if state.epoch_indices is not None else state.epoch,
                    "epoch_finished": state.epoch_indices is None,
                    "batches_done": state.epoch_batches_done,
                    "resume": command,
                }
            )
        where = (
            f"epoch {state.epoch + 1}, batch {state.epoch_batches_done}"
            if state.epoch_indices is not None
            else f"the end of epoch {state.epoch}"
        )
        return RunPreempted(
            f"stopped by {stopped_by} after step {state.step} ({where}); checkpoint in "
            f"{run.checkpoint_dir}, {run.preempted_path.name} written; continue with {command}"
        )

    def _close_epoch(self, epoch: int, indices: torch.Tensor) -> EpochRecord:
        """End-of-epoch memory pass, budget accounting and the epoch's record."""
        state = self.state
        seen = state.epoch_seen
        train_wall = time.perf_counter() - self._started
        selection = self.pruner.last_stats
        columns, memory_stats = self.estimator.end_epoch(epoch, embed=self.embed)
        self.pruner.set_columns(columns)
        wall = time.perf_counter() - self._started
        state.finish_epoch()
        return EpochRecord(
            epoch=state.epoch,
            loss=float(self._loss_sum) / max(seen, 1),
            lr=self.optimizer.param_groups[0]["lr"],
            kept=seen,
            visits=state.visits,
            effective_rate=effective_rate(state.visits, len(self.data), state.epoch),
            wall_time_s=wall,
            images_per_s=seen / train_wall if train_wall > 0 else math.inf,
            skipped_steps=state.skipped_steps,
            selection={k: v for k, v in selection.items() if k not in ("epoch", "selected")},
            pruning=self.pruner.epoch_diagnostics(epoch, kept=indices),
            memory=memory_stats,
            kept_indices=indices,
        )

    def fit(self, until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs (or up to ``until_epoch``); returns all metrics records."""
        epochs = self.config.train.epochs
        last_epoch = epochs if until_epoch is None else min(until_epoch, epochs)
        self.stop.install()
        try:
            if self.context.is_main:
                self.run.clear_preempted()  # training again: no longer a stopped run
            for callback in self.callbacks:
                callback.on_fit_start(self)
            while self.state.epoch < last_epoch:
                record = self.train_epoch()
                for callback in self.callbacks:
                    callback.on_epoch_end(self, record)
                if self.state.epoch < last_epoch and self.stop.requested(self.device):
                    raise self._preempted()  # the epoch's checkpoint is written
            for callback in self.callbacks:
                callback.on_fit_end(self)
            barrier()
            return self.run.metrics()
        finally:
            self.stop.uninstall()
            self.run.release()
            self.reader = None  # stops a store's worker processes
