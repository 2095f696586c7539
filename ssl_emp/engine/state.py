"""What a training run counts: progress that checkpoints restore, and one record per epoch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ssl_emp.data.batch import GlobalBatch
    from ssl_emp.methods.base import MethodOutput


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
        logger_run_ids: ids of external logger runs (``wandb``), so a resumed run continues
            the same one.
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
    logger_run_ids: dict[str, str] = field(default_factory=dict)

    def finish_epoch(self) -> None:
        """Close the epoch in progress."""
        self.epoch += 1
        self.visits += self.epoch_seen
        self.epoch_indices = None
        self.epoch_batches_done = self.epoch_seen = 0
        self.epoch_loss_sum = self.epoch_seconds = 0.0


@dataclass(frozen=True)
class StepOutcome:
    """What an accepted training step produced, as callbacks receive it (``on_step_end``).

    Attributes:
        batch: the step's global batch (``batch.local`` is what this process trained).
        losses: the detached per-sample losses of the whole global batch, in
            ``batch.gathered`` order, shape (B,).
        output: the method's output for this process's samples (features, projections).
        batches_in_epoch: the number of batches of the epoch in progress.
    """

    batch: GlobalBatch
    losses: torch.Tensor
    output: MethodOutput
    batches_in_epoch: int


@dataclass
class EpochRecord:
    """One epoch's line of ``metrics.jsonl``.

    The trainer fills the budget fields; the pruner and the estimator add their diagnostics;
    callbacks (monitors) add theirs to ``monitors`` before the record is written.

    Attributes:
        epoch: completed epochs (1-based number of the epoch just trained).
        loss: mean per-sample loss over the epoch's trained samples.
        lr: the learning rate at the epoch's end.
        kept: samples trained this epoch.
        visits: sample-visits trained so far.
        effective_rate: ``1 - visits / (N * epochs so far)``.
        wall_time_s: seconds of the epoch, its end-of-epoch memory pass included.
        images_per_s: trained samples per second of training steps.
        skipped_steps: non-finite steps skipped so far.
        selection: the selection's statistics (score quantiles, overlap, score age).
        pruning: LFL diagnostics (Gini, revisits, memory-term quantiles).
        memory: the estimator's end-of-epoch statistics (bank neighbours, pass time).
        monitors: what callbacks measured (test or kNN accuracy, label-noise visits).
        kept_indices: the samples the epoch trained (on the training device; not written).
    """

    epoch: int
    loss: float
    lr: float
    kept: int
    visits: int
    effective_rate: float
    wall_time_s: float
    images_per_s: float
    skipped_steps: int
    selection: dict[str, Any] = field(default_factory=dict)
    pruning: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    monitors: dict[str, Any] = field(default_factory=dict)
    kept_indices: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object of ``metrics.jsonl``."""
        flat: dict[str, Any] = {
            "epoch": self.epoch,
            "loss": self.loss,
            "lr": self.lr,
            "kept": self.kept,
            "visits": self.visits,
            "effective_rate": self.effective_rate,
            "wall_time_s": self.wall_time_s,
            "images_per_s": self.images_per_s,
            "skipped_steps": self.skipped_steps,
        }
        for group in (self.selection, self.pruning, self.memory, self.monitors):
            flat.update(group)
        return flat
