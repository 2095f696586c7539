"""Callbacks: what happens around the training loop, each in one small object.

The :class:`~ssl_emp.engine.trainer.Trainer` calls every callback, in the order given, at
five points: the start of ``fit``, the end of each step, the end of each epoch (with the
epoch's :class:`~ssl_emp.engine.state.EpochRecord`, which monitors may extend before the
metrics writer sees it), a stop signal inside an epoch, and the end of ``fit``. Monitors
that evaluate the model live in :mod:`ssl_emp.engine.monitors`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ssl_emp.collectives import all_gather_objects
from ssl_emp.engine.checkpoint import load_latest_checkpoint, save_checkpoint
from ssl_emp.engine.run_dir import resume_command
from ssl_emp.engine.seeding import capture_rng_state, restore_rng_state
from ssl_emp.engine.state import EpochRecord, StepOutcome, TrainState
from ssl_emp.errors import UserInputError
from ssl_emp.io import write_arrays

if TYPE_CHECKING:
    from ssl_emp.engine.trainer import Trainer

MIN_MEMORY_SPREAD = 0.005  # std of the memory term below which it cannot rank samples


class Callback:
    """Hooks around the loop; every method is optional."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch of ``fit`` (after a resume is possible)."""

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        """After an accepted optimizer step, with what it produced."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """After an epoch; ``record`` may be extended (``record.monitors``)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """When ``fit`` returns (``trainer.finished`` tells whether all epochs are done)."""

    def on_preempt(self, trainer: Trainer) -> None:
        """A stop signal arrived inside an epoch; the run stops after this hook."""


class Checkpointer(Callback):
    """Exact resume: writes a checkpoint after every epoch and every ``train.checkpoint_every``
    steps inside an epoch; :meth:`restore` loads the newest one (``run.resume``).

    A checkpoint holds the model, optimizer, loop state, pruner, estimator state and every
    rank's RNG states, so a resumed run continues bit for bit.
    """

    def restore(self, trainer: Trainer) -> None:
        """Load the newest readable checkpoint into ``trainer`` (a missing one is no error)."""
        run, config, context = trainer.run, trainer.config, trainer.context
        found = load_latest_checkpoint(run.checkpoint_dir)
        if found is None:
            trainer.log(f"no checkpoint in {run.checkpoint_dir} yet; starting at epoch 1")
            return
        path, payload = found
        if payload.get("method") != config.method.name:
            raise UserInputError(
                f"checkpoint {path} is from method '{payload.get('method')}', not "
                f"'{config.method.name}'; use a run.dir of the same method"
            )
        saved_world = payload.get("world_size", 1)
        if saved_world != context.world_size:
            raise UserInputError(
                f"checkpoint {path} was written by {saved_world} process(es) but this run has "
                f"{context.world_size}; resume with the same number (torchrun "
                f"--nproc_per_node={saved_world}), since batch shards and RNG streams depend on it"
            )
        trainer.model.load_state_dict(payload["model"])
        trainer.optimizer.load_state_dict(payload["optimizer"])
        trainer.pruner.load_state_dict(payload["pruner"])
        trainer.estimator.load_state_dict(payload["bank"])
        trainer.state = TrainState(**payload["state"])
        restore_rng_state(payload["rng"][context.rank])
        if context.is_main:
            run.truncate_metrics(trainer.state.epoch)
        state, epochs = trainer.state, config.train.epochs
        if state.epoch >= epochs:
            where = f"all {epochs} epochs are trained"
        elif state.epoch_indices is not None:
            where = f"continuing epoch {state.epoch + 1} of {epochs} after batch "
            where += f"{state.epoch_batches_done}"
        else:
            where = f"continuing at epoch {state.epoch + 1} of {epochs}"
        trainer.log(f"resumed from {path}: {where}")

    def save(self, trainer: Trainer, mid_epoch: bool = False) -> None:
        """Write a checkpoint (rank 0 writes; every rank contributes its RNG state)."""
        payload: dict[str, Any] = {
            "method": trainer.config.method.name,
            "config": trainer.config.to_dict(),
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "state": asdict(trainer.state),
            "pruner": trainer.pruner.state_dict(),
            "bank": trainer.estimator.state_dict(),
            "rng": all_gather_objects(capture_rng_state()),  # one state per rank
            "world_size": trainer.context.world_size,
            "data": trainer.data.facts(),  # rebuild the model without the data (export)
        }
        if trainer.context.is_main:
            step = trainer.state.step if mid_epoch else None
            save_checkpoint(trainer.run.checkpoint_dir, trainer.state.epoch, payload, step=step)

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        every, state = trainer.config.train.checkpoint_every, trainer.state
        if every and state.step % every == 0 and state.epoch_batches_done < step.batches_in_epoch:
            trainer.sync_epoch_progress()
            self.save(trainer, mid_epoch=True)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self.save(trainer)

    def on_preempt(self, trainer: Trainer) -> None:
        self.save(trainer, mid_epoch=True)


class MetricsLogger(Callback):
    """The run's header line, one ``metrics.jsonl`` record and one console line per epoch."""

    def on_fit_start(self, trainer: Trainer) -> None:
        config, pruning = trainer.config, trainer.config.pruning
        if trainer.finished:
            command = resume_command(config.method.name, trainer.run.config_path)
            trainer.log(
                f"{trainer.run.path} has trained all {config.train.epochs} epochs; nothing to "
                f"train (to train it longer: {command} train.epochs=N)"
            )
            return
        pruning_text = (
            "no pruning"
            if trainer.pruner.policy.always_full
            else f"pruning {pruning.policy} rate {pruning.rate} score {trainer.pruner.score_kind}"
            + (" (easy first)" if trainer.pruner.direction == "easy" else "")
        )
        verb = "training" if trainer.model.supervised else "pretraining"
        world = trainer.context.world_size
        processes = f" x {world} processes" if trainer.context.enabled else ""
        data = trainer.data
        trainer.log(
            f"{verb} {config.method.name} / {config.model.backbone} on {data.name} "
            f"({len(data)} samples, {data.image_size}px) on {trainer.device}{processes} "
            f"for {config.train.epochs} epochs, {pruning_text} -> {trainer.run.path}"
        )
        if trainer.pruner.never_prunes:
            trainer.log(
                f"warning: pruning.policy={pruning.policy} never prunes here: "
                f"pruning.warmup_epochs={pruning.warmup_epochs} and pruning.anneal="
                f"{pruning.anneal} leave no pruned epoch in train.epochs={config.train.epochs}; "
                "lower the warm-up or train longer"
            )

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        values = record.to_dict()
        if trainer.context.is_main:
            trainer.run.append_metrics(values)
        memory = values.get("memory_mean")
        extra = f"  memory {memory:.3f}±{values['memory_std']:.3f}" if memory else ""
        if "test_top1" in values:
            extra += f"  test {100 * values['test_top1']:.2f}%"
        if "knn_top1" in values:
            extra += f"  kNN {100 * values['knn_top1']:.2f}%"
        trainer.log(
            f"epoch {record.epoch:3d}/{trainer.config.train.epochs}  loss {record.loss:.4f}  "
            f"kept {record.kept}  eff.rate {record.effective_rate:.3f}  "
            f"gini {values['train_count_gini']:.3f}{extra}  "
            f"{record.images_per_s:.0f} img/s  {record.wall_time_s:.1f}s"
        )


class FlatMemoryWarning(Callback):
    """Say once when the EMP score's memory term has (almost) no spread: it then changes no
    ranking (e.g. uncentred post-ReLU features)."""

    def __init__(self) -> None:
        self.warned = False

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        spread = record.pruning.get("memory_std")
        if not trainer.pruner.score.memory_term or spread is None or spread >= MIN_MEMORY_SPREAD:
            return
        if not self.warned:
            self.warned = True
            trainer.log(
                f"warning: the memory term spreads only {spread:.4f} (mean "
                f"{record.pruning['memory_mean']:.4f}); it carries little ranking signal. Check "
                "memory.center=true, or lower memory.tau"
            )


class ScoresWriter(Callback):
    """``scores.npz`` at the end of training: per-sample score, memory, train_count, loss,
    last_seen and labels (and prototype_distance where the score ranks it)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        if not trainer.finished:
            return
        arrays = {**trainer.pruner.sample_arrays(), "labels": trainer.data.labels.cpu().numpy()}
        if trainer.context.is_main:
            write_arrays(trainer.run.scores_path, arrays)


class FlaggedSampleDiagnostics(Callback):
    """How the pruner treats known-bad samples (flipped labels, junk images): which they are
    (an ``.npz`` written at the start) and, per epoch, the share of the kept set they make up
    and their visits against the other samples'.

    Args:
        flagged: sorted indices of the flagged samples.
        name: metric prefix (``noisy``: ``noisy_selected_frac``, ``visits_per_noisy``).
        others: name of the rest (``clean``: ``visits_per_clean``).
        record_file: ``RunDirectory`` attribute of the ``.npz`` path.
        arrays: what the ``.npz`` holds besides ``flipped``/``junk`` (e.g. both label sets).
        visit_share: also report ``<name>_visit_share``, the flagged share of all visits.
    """

    def __init__(
        self,
        flagged: np.ndarray,
        name: str,
        others: str,
        record_file: str,
        arrays: dict[str, np.ndarray],
        visit_share: bool = False,
    ) -> None:
        self.flagged, self.name, self.others = flagged, name, others
        self.record_file, self.arrays, self.visit_share = record_file, arrays, visit_share
        self.mask: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        mask = torch.zeros(len(trainer.data), dtype=torch.bool)
        mask[torch.from_numpy(self.flagged)] = True
        self.mask = mask.to(trainer.device)
        if trainer.context.is_main:
            write_arrays(getattr(trainer.run, self.record_file), self.arrays)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        mask = self.mask
        if mask is None or not bool(mask.any()):
            return
        kept = record.kept_indices
        assert kept is not None
        counts = trainer.pruner.column("train_count").float()
        values = {
            f"{self.name}_selected_frac": float(mask[kept].float().mean()),
            f"visits_per_{self.name}": float(counts[mask].mean()),
            f"visits_per_{self.others}": float(counts[~mask].mean()),
        }
        if self.visit_share:
            values[f"{self.name}_visit_share"] = float(counts[mask].sum() / counts.sum())
        record.monitors.update(values)


def label_noise_diagnostics(
    flipped: np.ndarray, clean_labels: torch.Tensor, noisy_labels: torch.Tensor
) -> FlaggedSampleDiagnostics:
    """``label_noise.npz`` and the noisy-vs-clean visit diagnostics (``data.label_noise``)."""
    arrays = {
        "flipped": flipped,
        "clean_labels": clean_labels.numpy(),
        "noisy_labels": noisy_labels.numpy(),
    }
    return FlaggedSampleDiagnostics(flipped, "noisy", "clean", "label_noise_path", arrays)


def junk_diagnostics(junk: np.ndarray) -> FlaggedSampleDiagnostics:
    """``junk.npz`` and the junk-vs-clean visit diagnostics (``data.junk_fraction``)."""
    return FlaggedSampleDiagnostics(
        junk, "junk", "clean_image", "junk_path", {"junk": junk}, visit_share=True
    )


def standard_callbacks(
    diagnostics: tuple[Callback, ...] = (),
    monitors: tuple[Callback, ...] = (),
    loggers: tuple[Callback, ...] = (),
) -> list[Callback]:
    """Every run's callbacks in order: diagnostics and monitors first (they extend the epoch
    record), then the metrics writer, the loggers (TensorBoard, W&B), checkpoints, the
    flat-memory warning and the scores writer."""
    first: list[Callback] = [*diagnostics, *monitors, MetricsLogger(), *loggers]
    return [*first, Checkpointer(), FlatMemoryWarning(), ScoresWriter()]
