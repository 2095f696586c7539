"""The in-memory dataset every trainer consumes: a uint8 image tensor, labels, and indices.

A batch is an index tensor into :class:`ImageData`; images are gathered with one indexing
operation on the data's device, so there is no per-sample Python and no PIL in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ssl_emp.data.store import StoredImages
from ssl_emp.data.streaming import BatchReader, MemoryReader, StoreReader


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset held as tensors.

    Attributes:
        images: uint8 tensor of shape (N, C, H, W), or a prepared store's
            :class:`~ssl_emp.data.store.StoredImages`, indexed the same way but read from disk
            batch by batch.
        labels: int64 tensor of shape (N,).
        num_classes: number of label classes.
        mean: per-channel mean of the source data in [0, 1], for normalisation.
        std: per-channel standard deviation in [0, 1], for normalisation.
        name: short name of the source, for logs.
        class_names: the name of each label, where the source names its classes (image
            folders, Fashion-MNIST, CIFAR), so people can read what a sample is; else None.
        files: the image file of each sample held in memory (image folders), so a sample
            can be traced to its file; None for other sources. A store reads its own list
            on demand, see :meth:`source_files`.
    """

    images: torch.Tensor | StoredImages
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    class_names: tuple[str, ...] | None = None
    files: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError("class_names must have one entry per class")
        if self.files is not None and len(self.files) != len(self):
            raise ValueError("files must have one entry per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of colour channels (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side length of the (square) stored images."""
        return int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.images.device

    def to(self, device: torch.device | str) -> ImageData:
        """The same data on ``device`` (one copy of the whole tensor)."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def facts(self) -> dict[str, Any]:
        """What a model needs to know of this data to be rebuilt without it: name, channels,
        image size, normalisation and class count (checkpoints keep these, so an export need
        not reload the dataset)."""
        return {
            "name": self.name,
            "channels": self.channels,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "num_classes": self.num_classes,
        }

    @classmethod
    def placeholder(cls, facts: dict[str, Any]) -> ImageData:
        """A one-image dataset with the shape and statistics of :meth:`facts`."""
        size, channels = facts["image_size"], facts["channels"]
        return cls(
            images=torch.zeros(1, channels, size, size, dtype=torch.uint8),
            labels=torch.zeros(1, dtype=torch.long),
            num_classes=facts["num_classes"],
            mean=tuple(facts["mean"]),
            std=tuple(facts["std"]),
            name=facts["name"],
        )

    def select(self, indices: np.ndarray | torch.Tensor) -> ImageData:
        """The samples at ``indices`` (a subset), as a new dataset."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        if isinstance(self.images, StoredImages):  # a view: nothing is read
            return replace(self, images=self.images.select(index), labels=self.labels[index])
        files = None if self.files is None else tuple(self.files[i] for i in index.tolist())
        return replace(self, images=self.images[index], labels=self.labels[index], files=files)

    def source_files(self) -> list[str] | None:
        """The image file of each sample, in order, where the samples came from files (image
        folders and stores prepared from them); None otherwise."""
        if isinstance(self.images, StoredImages):
            return self.images.source_files()
        return None if self.files is None else list(self.files)

    def reader(self, workers: int = 0, pin_memory: bool = False) -> BatchReader:
        """How the training loop reads batches of these images: from memory, or from a store
        by ``workers`` persistent reader processes (``data.workers``; pinned memory for a
        GPU)."""
        if isinstance(self.images, StoredImages):
            return StoreReader(self.images, workers=workers, pin_memory=pin_memory)
        return MemoryReader(self.images)

    @property
    def streamed(self) -> bool:
        """Whether the images are read from a store batch by batch (not held in memory)."""
        return isinstance(self.images, StoredImages)


def balanced_subset_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Seeded, class-balanced choice of ``size`` indices (sorted).

    Classes get ``size // C`` samples each and the remainder goes to randomly chosen classes;
    a class with too few samples gives all it has and the rest is filled from the others.

    Args:
        labels: integer class labels, one per sample.
        size: number of indices to return; at most ``len(labels)``.
        seed: seed of the choice.
    """
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: size // len(classes) for c in classes}
    for c in rng.choice(classes, size=size % len(classes), replace=False):
        quota[c] += 1
    chosen = [pools[c][: quota[c]] for c in classes]
    missing = size - sum(len(part) for part in chosen)
    if missing > 0:
        rest = np.concatenate([pools[c][quota[c] :] for c in classes])
        chosen.append(rng.choice(rest, size=missing, replace=False))
    return np.sort(np.concatenate(chosen))
