"""Reading an epoch's kept samples from a store ahead of the training step.

The trainer knows every batch of an epoch when the epoch starts (the pruner's kept indices in
the trainer's order, this rank's shard of each). :class:`StoreReader` hands that list to a
torch ``DataLoader`` whose worker processes read the rows from the store (a gather from the
memory map, or slices of the JPEG file and a decode) while the model trains on the previous
batches; with a CUDA device the batches arrive in pinned memory so the copy to the device can
overlap compute. Only the kept rows are read, so an epoch at pruning rate 0.7 reads about 30 %
of the bytes.

The workers are started once per run, with the ``spawn`` method, and kept across epochs: the
epoch's batches reach them through the loader's sampler, which lives in the training process.
Spawned workers do not inherit the training process's memory (a forked worker would count
every per-sample table of the pruner again), so a store of any size costs the workers the
same. Like any ``DataLoader`` with spawned workers, a script that trains from a store must
guard its entry point with ``if __name__ == "__main__":`` (the ``ssl-emp`` command does);
``data.workers=0`` reads in the training process instead.

A store error met in a worker (a corrupt JPEG, say) comes back as the batch's value, not as
an exception: a ``DataLoader`` re-raises a worker's exception with the worker's whole
traceback in its message, which the command line would print as dozens of lines. The reader
raises it again where the batch is used, as the same one-line :class:`UserInputError` as in
the training process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_emp.data.store import StoredImages
from ssl_emp.errors import UserInputError


@dataclass(frozen=True)
class _ReadFailure:
    """A batch that could not be read: the one-line message of its :class:`UserInputError`."""

    message: str


class _Rows(Dataset):
    """``rows[key]`` is the images of one batch: the key is the batch's index tensor."""

    def __init__(self, images: StoredImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: torch.Tensor) -> torch.Tensor | _ReadFailure:
        try:
            return self.images[key]
        except UserInputError as error:  # returned, so no worker traceback is wrapped round it
            return _ReadFailure(str(error))


def _raise_failures(batches: Iterator[torch.Tensor | _ReadFailure]) -> Iterator[torch.Tensor]:
    """The batches, with a failed read raised again as its one-line error."""
    for batch in batches:
        if isinstance(batch, _ReadFailure):
            raise UserInputError(batch.message)
        yield batch


class _EpochBatches(Sampler):
    """The current epoch's batches, replaced before each epoch (in the training process)."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchReader(Protocol):
    """What the training loop reads an epoch's images through, whatever holds them."""

    def read(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each of ``batches`` (index tensors into the split), in order."""


class MemoryReader:
    """Images held as one tensor: each batch's rows, indexed when the loop asks for them.

    Args:
        images: the (N, C, H, W) uint8 images (on the training device).
    """

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def read(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each of ``batches``, one at a time."""
        return (self.images[batch] for batch in batches)


class StoreReader:
    """Reads batches of a store split ahead, in ``workers`` persistent worker processes.

    Args:
        images: the store split.
        workers: worker processes (0: read in this process when a batch is needed).
        pin_memory: return page-locked tensors (for non-blocking copies to CUDA).
    """

    def __init__(self, images: StoredImages, workers: int, pin_memory: bool) -> None:
        self.sampler = _EpochBatches()
        self.loader = DataLoader(
            _Rows(images),
            batch_size=None,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=pin_memory,
            prefetch_factor=4 if workers else None,
            persistent_workers=workers > 0,
            multiprocessing_context="spawn" if workers else None,
            # a generator of its own: the loader draws a worker seed from it, which must not
            # advance the global generator that the augmentations draw from
            generator=torch.Generator(),
        )

    def read(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each of ``batches`` (index tensors into the split), in order."""
        self.sampler.batches = [batch.detach().cpu() for batch in batches]
        return _raise_failures(iter(self.loader))
