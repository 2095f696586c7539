"""Datasets as one uint8 tensor plus labels, the builders for each source, index batches and
batched augmentation on the device."""

from ssl_emp.data.batch import GlobalBatch, index_batches
from ssl_emp.data.dataset import ImageData
from ssl_emp.data.sources import build_datasets

__all__ = ["GlobalBatch", "ImageData", "build_datasets", "index_batches"]
