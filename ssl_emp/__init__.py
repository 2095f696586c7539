"""ssl_emp: contrastive self-supervised pretraining with memory-aware dynamic data pruning."""

__version__ = "0.1.0"
