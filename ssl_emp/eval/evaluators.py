"""One interface for evaluating a frozen backbone, implemented by the linear probe and the
weighted kNN (evaluating a run directory with either is
:func:`ssl_emp.experiments.evaluate.evaluate_run`, a layer up)."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from torch import nn

from ssl_emp.config import Config
from ssl_emp.data import ImageData
from ssl_emp.eval.knn import knn_accuracy
from ssl_emp.eval.probe import linear_probe


class EvaluationResult(Protocol):
    """What every evaluator returns: a top-1 accuracy in [0, 1] and a JSON-able dict."""

    top1: float

    def to_dict(self) -> dict[str, Any]: ...


class Evaluator:
    """Scores a frozen backbone on a train/test split.

    Attributes:
        name: the result's name in a run directory (``RUN_DIR/<name>.json``).
    """

    name: ClassVar[str]

    def evaluate(
        self, backbone: nn.Module, train: ImageData, test: ImageData, config: Config
    ) -> EvaluationResult:
        """Evaluate ``backbone`` with the ``eval`` settings of ``config``."""
        raise NotImplementedError


def evaluation_image_size(config: Config, data: ImageData) -> int:
    """The side length the backbone was trained on."""
    return config.augment.image_size or data.image_size


class LinearProbe(Evaluator):
    """A linear classifier on frozen, standardised features (``eval.probe_*``)."""

    name = "probe"

    def evaluate(
        self, backbone: nn.Module, train: ImageData, test: ImageData, config: Config
    ) -> EvaluationResult:
        size = evaluation_image_size(config, train)
        return linear_probe(backbone, train, test, size, config.eval, seed=config.seed)


class WeightedKnn(Evaluator):
    """Similarity-weighted kNN on L2-normalised features (``eval.knn_k``, ``eval.knn_t``)."""

    name = "knn"

    def evaluate(
        self, backbone: nn.Module, train: ImageData, test: ImageData, config: Config
    ) -> EvaluationResult:
        size = evaluation_image_size(config, train)
        return knn_accuracy(backbone, train, test, size, k=config.eval.knn_k, t=config.eval.knn_t)
