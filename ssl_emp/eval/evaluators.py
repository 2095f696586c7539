"""One interface for evaluating a frozen backbone, implemented by the linear probe and the
weighted kNN, and one function that evaluates a run directory with either."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from torch import nn

from ssl_emp.config import Config
from ssl_emp.data import ImageData
from ssl_emp.eval.knn import knn_accuracy
from ssl_emp.eval.loading import load_run_for_evaluation
from ssl_emp.eval.probe import linear_probe
from ssl_emp.io import WriteError, check_writable, write_json


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


def evaluate_run(
    evaluator: Evaluator, run_dir: str, overrides: list[str] | None = None
) -> EvaluationResult:
    """Evaluate the newest checkpoint of a run; writes ``RUN_DIR/<evaluator.name>.json``.

    Args:
        evaluator: the evaluation to run.
        run_dir: the pretraining run directory.
        overrides: ``eval.*`` (or ``train.device``/``train.threads``) overrides.
    """
    run, config, train, test, backbone = load_run_for_evaluation(run_dir, overrides)
    destination = run.result_path(evaluator.name)
    check_writable(destination)  # before the evaluation, not after it
    result = evaluator.evaluate(backbone, train, test, config)
    try:
        write_json(destination, result.to_dict())
    except WriteError as problem:  # the evaluation is not lost: its result is in the message
        hint = f"; the result was top1 {100 * result.top1:.2f} %"
        raise WriteError(destination, problem.error, hint=hint) from None
    return result
