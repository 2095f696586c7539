"""Datasets as one uint8 tensor plus labels, the builders for each source, index batches and
batched augmentation on the device.

The names below are imported on first use, so that importing a light submodule (the index
batches of :mod:`ssl_emp.data.batch`, which the pruner uses) does not load torchvision, kornia
or the dataset loaders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, typed, for the type checker
    from ssl_emp.data.batch import GlobalBatch, index_batches
    from ssl_emp.data.dataset import ImageData
    from ssl_emp.data.sources import build_datasets

_EXPORTS = {
    "GlobalBatch": "ssl_emp.data.batch",
    "index_batches": "ssl_emp.data.batch",
    "ImageData": "ssl_emp.data.dataset",
    "build_datasets": "ssl_emp.data.sources",
}
__all__ = ["GlobalBatch", "ImageData", "build_datasets", "index_batches"]


def __getattr__(name: str) -> Any:
    """``from ssl_emp.data import ImageData`` etc., imported when first asked for."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ssl_emp.data' has no attribute '{name}'")
