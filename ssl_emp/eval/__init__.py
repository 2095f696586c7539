"""Evaluation of frozen backbones (linear probe, weighted kNN) behind one interface, and the
monitors that evaluate during training."""

from ssl_emp.eval.evaluators import (
    EvaluationResult,
    Evaluator,
    LinearProbe,
    WeightedKnn,
    evaluate_run,
)

__all__ = ["EvaluationResult", "Evaluator", "LinearProbe", "WeightedKnn", "evaluate_run"]
