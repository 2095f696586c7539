"""Evaluation of frozen backbones (linear probe, weighted kNN) behind one interface. The
monitors that evaluate during training are engine callbacks (:mod:`ssl_emp.engine.monitors`);
evaluating a run directory is :mod:`ssl_emp.experiments.evaluate`."""

from ssl_emp.eval.evaluators import (
    EvaluationResult,
    Evaluator,
    LinearProbe,
    WeightedKnn,
)

__all__ = ["EvaluationResult", "Evaluator", "LinearProbe", "WeightedKnn"]
