"""ssl_emp: contrastive self-supervised pretraining with memory-aware dynamic data pruning.

``ssl_emp.load_backbone(FILE)`` and ``ssl_emp.export_metadata(FILE)`` read encoders written
by ``ssl-emp export`` (imported on first use, so ``import ssl_emp`` stays light).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "export_metadata", "load_backbone"]


def __getattr__(name: str) -> Any:
    """The public loaders of :mod:`ssl_emp.models.portable`, imported when first asked for."""
    if name in ("load_backbone", "export_metadata"):
        from ssl_emp.models import portable

        return getattr(portable, name)
    raise AttributeError(f"module 'ssl_emp' has no attribute '{name}'")
