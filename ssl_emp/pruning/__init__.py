"""Dynamic data pruning: score table, selection rules, memory terms (DESIGN 3)."""

from ssl_emp.pruning.memory import batch_memory, supervised_memory
from ssl_emp.pruning.memory_bank import BankMemory
from ssl_emp.pruning.pruner import Pruner

__all__ = ["BankMemory", "Pruner", "batch_memory", "supervised_memory"]
