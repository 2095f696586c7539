"""Loggers for TensorBoard and Weights & Biases, as callbacks on rank 0.

``metrics.jsonl`` stays the source of truth; these mirror it for people who watch runs in
TensorBoard (``tensorboard --logdir runs/``) or W&B. Per-step values are buffered on the
device and written once per epoch, so a logger adds no device synchronisation per step.
Nothing here touches the random number generators the training draws from: the picture of
the augmented views is drawn under a saved-and-restored RNG state, so a run logs the same
numbers with and without loggers.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchvision

from ssl_emp.config import Config
from ssl_emp.data.augment import ViewAugmentation
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.seeding import capture_rng_state, restore_rng_state
from ssl_emp.engine.state import EpochRecord, StepOutcome
from ssl_emp.errors import UserInputError

if TYPE_CHECKING:
    from ssl_emp.engine.trainer import Trainer

QUANTILES = (0.1, 0.5, 0.9)
PREVIEW_SAMPLES = 8


def pruning_distributions(trainer: Trainer) -> dict[str, np.ndarray]:
    """Per-sample score, memory term and training count at the end of an epoch (finite
    values only: samples not scored yet are left out)."""
    arrays = trainer.pruner.sample_arrays()
    return {
        name: values[np.isfinite(values)]
        for name, values in (
            (name, np.asarray(arrays[name], dtype=np.float64))
            for name in ("score", "memory", "train_count")
        )
    }


def epoch_scalars(record: EpochRecord, distributions: dict[str, np.ndarray]) -> dict[str, float]:
    """The numeric values of the epoch's record plus score and memory quantiles."""
    scalars = {
        key: float(value)
        for key, value in record.to_dict().items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "epoch"
    }
    for name in ("score", "memory"):
        values = distributions[name]
        if values.size:
            for quantile in QUANTILES:
                scalars[f"{name}_q{round(100 * quantile)}"] = float(np.quantile(values, quantile))
    return scalars


def view_preview(trainer: Trainer) -> torch.Tensor | None:
    """A grid of the first samples' augmented views (first row view A, second row view B;
    one row for single-view methods), de-normalised to [0, 1], shape (C, H, W)."""
    augmentation = getattr(trainer.model, "augmentation", None)
    if not isinstance(augmentation, ViewAugmentation):
        return None
    data = trainer.data
    images = data.images[: min(PREVIEW_SAMPLES, len(data))].to(trainer.device)
    saved = capture_rng_state()
    try:
        with torch.no_grad():
            views = (
                augmentation.two_views(images)
                if trainer.model.two_views
                else (augmentation(images),)
            )
    finally:
        restore_rng_state(saved)
    mean = torch.tensor(data.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=images.device).view(1, -1, 1, 1)
    shown = torch.cat([(view.float() * std + mean).clamp(0, 1) for view in views])
    return torchvision.utils.make_grid(shown.cpu(), nrow=len(images), padding=2)


class StepBufferLogger(Callback):
    """Collects per-step loss, learning rate and images/s on the device and hands them over
    once per epoch (:meth:`write_steps`), with the epoch's record (:meth:`write_epoch`)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[torch.Tensor] = []
        self.learning_rates: list[float] = []
        self.images_per_s: list[float] = []
        self.last_time = time.perf_counter()

    def on_fit_start(self, trainer: Trainer) -> None:
        self.last_time = time.perf_counter()
        if trainer.context.is_main:
            self.open(trainer)

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        if not trainer.context.is_main:
            return
        now = time.perf_counter()
        losses = step.losses
        self.steps.append(trainer.state.step)
        self.losses.append(losses.detach().float().mean())
        self.learning_rates.append(trainer.optimizer.param_groups[0]["lr"])
        self.images_per_s.append(len(losses) / max(now - self.last_time, 1e-9))
        self.last_time = now

    def _flush_steps(self, trainer: Trainer) -> None:
        if self.steps:
            losses = torch.stack(self.losses).cpu().tolist()  # one sync per epoch
            rows = list(
                zip(self.steps, losses, self.learning_rates, self.images_per_s, strict=True)
            )
            self.write_steps(trainer, rows)
        self.steps, self.losses, self.learning_rates, self.images_per_s = [], [], [], []

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if not trainer.context.is_main:
            return
        self._flush_steps(trainer)
        distributions = pruning_distributions(trainer)
        self.write_epoch(trainer, record, epoch_scalars(record, distributions), distributions)
        self.last_time = time.perf_counter()  # the epoch-end work is not a step

    def on_preempt(self, trainer: Trainer) -> None:
        if trainer.context.is_main:
            self._flush_steps(trainer)
            self.close()

    def on_fit_end(self, trainer: Trainer) -> None:
        if trainer.context.is_main:
            self._flush_steps(trainer)
            self.close()

    def open(self, trainer: Trainer) -> None:
        """Start logging (rank 0)."""

    def write_steps(self, trainer: Trainer, rows: list[tuple[int, float, float, float]]) -> None:
        """Write ``(step, loss, learning rate, images/s)`` rows."""

    def write_epoch(
        self,
        trainer: Trainer,
        record: EpochRecord,
        scalars: dict[str, float],
        distributions: dict[str, np.ndarray],
    ) -> None:
        """Write the epoch's scalars and distributions."""

    def close(self) -> None:
        """Flush and close."""


class TensorBoardLogger(StepBufferLogger):
    """TensorBoard events under ``RUN/tensorboard/``: ``train/loss``, ``train/lr`` and
    ``train/images_per_s`` per step; ``epoch/*`` (kept, effective rate, Gini, memory-term and
    score quantiles, ...) per epoch; histograms of scores, memory terms and training counts;
    ``data/views``, a grid of the first samples' augmented views."""

    def __init__(self) -> None:
        super().__init__()
        self.writer: Any = None

    def open(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        resumed = trainer.state.step > 0
        # a resumed run drops events past its checkpoint (they were logged, then lost)
        self.writer = SummaryWriter(
            log_dir=str(trainer.run.path / "tensorboard"),
            purge_step=trainer.state.step + 1 if resumed else None,
        )
        if not resumed:
            grid = view_preview(trainer)
            if grid is not None:
                self.writer.add_image("data/views", grid, global_step=0)

    def write_steps(self, trainer: Trainer, rows: list[tuple[int, float, float, float]]) -> None:
        for step, loss, learning_rate, images_per_s in rows:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", learning_rate, step)
            self.writer.add_scalar("train/images_per_s", images_per_s, step)

    def write_epoch(
        self,
        trainer: Trainer,
        record: EpochRecord,
        scalars: dict[str, float],
        distributions: dict[str, np.ndarray],
    ) -> None:
        step = trainer.state.step
        for key, value in scalars.items():
            self.writer.add_scalar(f"epoch/{key}", value, step)
        for name, values in distributions.items():
            if values.size:
                self.writer.add_histogram(f"pruning/{name}", values, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def wandb_mode(config: Config) -> Any:
    """``logging.wandb_mode``, else ``$WANDB_MODE``, else offline."""
    return config.logging.wandb_mode or os.environ.get("WANDB_MODE") or "offline"


class WandbLogger(StepBufferLogger):
    """Weights & Biases: the same values as :class:`TensorBoardLogger`, offline unless
    configured (``logging.wandb_mode`` or ``$WANDB_MODE``). The W&B run id is kept in the
    training state, so a ``--resume`` continues the same W&B run."""

    def __init__(self) -> None:
        super().__init__()
        self.run: Any = None

    def open(self, trainer: Trainer) -> None:
        try:
            import wandb
        except ImportError:
            raise UserInputError(
                "logging.wandb=true needs the wandb package: pip install 'ssl_emp[wandb]'"
            ) from None
        ids = trainer.state.logger_run_ids
        ids.setdefault("wandb", uuid.uuid4().hex[:8])
        config = trainer.config
        self.run = wandb.init(
            project=config.logging.wandb_project,
            id=ids["wandb"],
            name=trainer.run.path.name,
            resume="allow",
            dir=str(trainer.run.path),
            mode=wandb_mode(config),
            config=config.to_dict(),
            settings=wandb.Settings(console="off", silent=True),
        )
        if trainer.state.step == 0:
            grid = view_preview(trainer)
            if grid is not None:
                image = grid.permute(1, 2, 0).numpy()
                self.run.log({"data/views": wandb.Image(image)}, step=0)

    def write_steps(self, trainer: Trainer, rows: list[tuple[int, float, float, float]]) -> None:
        for step, loss, learning_rate, images_per_s in rows:
            values = {"train/loss": loss, "train/lr": learning_rate}
            self.run.log({**values, "train/images_per_s": images_per_s}, step=step)

    def write_epoch(
        self,
        trainer: Trainer,
        record: EpochRecord,
        scalars: dict[str, float],
        distributions: dict[str, np.ndarray],
    ) -> None:
        import wandb

        values: dict[str, Any] = {f"epoch/{key}": value for key, value in scalars.items()}
        for name, array in distributions.items():
            if array.size:
                histogram = np.histogram(array, bins=64)
                values[f"pruning/{name}"] = wandb.Histogram(np_histogram=histogram)
        self.run.log(values, step=trainer.state.step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def loggers_for(config: Config) -> tuple[Callback, ...]:
    """The loggers ``config.logging`` asks for."""
    chosen: list[Callback] = []
    if config.logging.tensorboard:
        chosen.append(TensorBoardLogger())
    if config.logging.wandb:
        chosen.append(WandbLogger())
    return tuple(chosen)
