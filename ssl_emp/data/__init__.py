"""Datasets as one uint8 tensor plus labels, and the builders for each source."""

from ssl_emp.data.dataset import ImageData, index_batches
from ssl_emp.data.sources import build_datasets

__all__ = ["ImageData", "build_datasets", "index_batches"]
