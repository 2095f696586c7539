"""Monitors: callbacks that evaluate the model during training (docs/design.md, 8).

- :class:`TestAccuracyMonitor`: supervised top-1 on the test split after every epoch, and
  ``eval.json`` at the end;
- :class:`KnnMonitor`: weighted-kNN top-1 of the backbone every ``eval.knn_every`` epochs.
"""

from __future__ import annotations

import torch

from ssl_emp.data import ImageData
from ssl_emp.engine.builder import TrainingParts
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.state import EpochRecord
from ssl_emp.engine.trainer import Trainer
from ssl_emp.eval.evaluators import WeightedKnn
from ssl_emp.io import write_json

TEST_BATCH = 1024


class TestAccuracyMonitor(Callback):
    """Top-1 accuracy of a supervised model on the test split (eval mode, no views).

    Args:
        test_data: the test split (any device; moved batch by batch).
    """

    def __init__(self, test_data: ImageData) -> None:
        self.test_data = test_data
        self.last_top1: float | None = None

    @torch.no_grad()
    def accuracy(self, trainer: Trainer) -> float:
        """Top-1 of ``trainer.model.predict`` on the test split."""
        model, test = trainer.model, self.test_data
        model.eval()
        correct = 0
        for start in range(0, len(test), TEST_BATCH):
            images = test.images[start : start + TEST_BATCH].to(trainer.device)
            labels = test.labels[start : start + TEST_BATCH].to(trainer.device)
            correct += int((model.predict(images).argmax(dim=1) == labels).sum())  # type: ignore[operator]
        model.train()
        return correct / len(test)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self.last_top1 = self.accuracy(trainer)
        record.monitors["test_top1"] = self.last_top1

    def on_fit_end(self, trainer: Trainer) -> None:
        if not (trainer.finished and trainer.context.is_main):
            return
        top1 = self.last_top1
        if top1 is None:  # resumed after the last epoch: take it from the metrics
            top1 = trainer.run.metrics()[-1]["test_top1"]
        write_json(trainer.run.eval_path, {"top1": top1, "epochs": trainer.state.epoch})
        trainer.log(f"test top1 {100 * top1:.2f} % -> {trainer.run.eval_path}")


class KnnMonitor(Callback):
    """Weighted-kNN top-1 of the current backbone on the test split every ``every`` epochs.

    Args:
        test_data: the test split.
        every: epochs between evaluations.
    """

    def __init__(self, test_data: ImageData, every: int) -> None:
        self.test_data, self.every = test_data, every

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if trainer.state.epoch % self.every != 0:
            return
        result = WeightedKnn().evaluate(
            trainer.model.backbone, trainer.data, self.test_data, trainer.config
        )
        record.monitors["knn_top1"] = result.top1


def monitors_for(parts: TrainingParts) -> tuple[Callback, ...]:
    """The monitors a run's config asks for: test accuracy for supervised runs, the kNN
    monitor with ``eval.knn_every``."""
    test = parts.test_data
    if test is None:
        return ()
    if parts.model.supervised:
        return (TestAccuracyMonitor(test),)
    if parts.config.eval.knn_every:
        return (KnnMonitor(test, every=parts.config.eval.knn_every),)
    return ()
