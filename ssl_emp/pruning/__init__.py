"""Dynamic data pruning: score table, selection policies, memory terms (docs/design.md, 2)."""

from ssl_emp.pruning.estimators import (
    FeatureBank,
    InBatchEntropy,
    MemoryEstimator,
    PredictionEntropy,
    build_estimator,
)
from ssl_emp.pruning.memory import batch_memory, supervised_memory
from ssl_emp.pruning.memory_bank import BankMemory
from ssl_emp.pruning.policies import POLICIES, Policy
from ssl_emp.pruning.pruner import Pruner

__all__ = [
    "POLICIES",
    "BankMemory",
    "FeatureBank",
    "InBatchEntropy",
    "MemoryEstimator",
    "Policy",
    "PredictionEntropy",
    "Pruner",
    "batch_memory",
    "build_estimator",
    "supervised_memory",
]
