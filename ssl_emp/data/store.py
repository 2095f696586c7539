"""Prepared stores: datasets larger than memory, read a batch of rows at a time.

A store is a directory that ``ssl-emp prepare`` writes once from any source:

- ``manifest.json``: format (``raw`` or ``jpeg``), version, image size, channels, class
  names, per-channel mean/std and per split the sample count; written last, so a directory
  without it is an unfinished store;
- ``{split}_labels.npy`` for the ``train`` and ``test`` splits;
- ``raw``: ``{split}_images.u8``, every image as fixed-size uint8 (C, H, W) rows of one
  memory-mapped array, so a batch is a gather of rows;
- ``jpeg``: ``{split}_jpeg.bin``, the encoded bytes of every image back to back, and
  ``{split}_offsets.npy`` (N + 1 byte offsets), so a batch is N slices of one mapped file and
  one batched decode (no per-file opens);
- ``{split}_files.json`` (stores prepared from an image folder): the file each row was read
  from, so a sample can be traced to its file.

:class:`StoredImages` gives a split the indexing interface of an image tensor
(``images[indices]`` -> uint8 (B, C, H, W) on the CPU), so evaluation and the memory pass
stream it unchanged; the trainer reads each epoch's kept rows ahead in worker processes
(:mod:`ssl_emp.data.streaming`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from ssl_emp.errors import UserInputError

STORE_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test")
PREPARE_HINT = "ssl-emp prepare -c CONFIG --out DIR"


@dataclass(frozen=True)
class Manifest:
    """What a store holds (``manifest.json``)."""

    format: str
    image_size: int
    channels: int
    classes: list[str]
    mean: list[float]
    std: list[float]
    counts: dict[str, int]
    source: str
    quality: int | None = None
    version: int = STORE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "format": self.format,
            "image_size": self.image_size,
            "channels": self.channels,
            "classes": self.classes,
            "mean": self.mean,
            "std": self.std,
            "counts": self.counts,
            "source": self.source,
            "quality": self.quality,
        }


def read_manifest(root: Path) -> Manifest:
    """The manifest of the store at ``root``, or a one-line error saying what is wrong."""
    if not root.is_dir():
        raise UserInputError(f"no store at {root}; build one with `{PREPARE_HINT}`")
    path = root / MANIFEST
    if not path.is_file():
        raise UserInputError(
            f"{root} is not a finished store (no {MANIFEST}: prepare was interrupted or this is "
            f"another folder); build it again with `{PREPARE_HINT}`"
        )
    try:
        values = json.loads(path.read_text())
        manifest = Manifest(**values)
    except (json.JSONDecodeError, TypeError) as error:
        raise UserInputError(f"{path} is damaged ({error}); prepare the store again") from None
    if manifest.version != STORE_VERSION:
        raise UserInputError(
            f"store {root} has format version {manifest.version}, this ssl_emp reads version "
            f"{STORE_VERSION}; prepare it again with this version"
        )
    return manifest


class StoredImages:
    """One split of a store, indexed like a uint8 (N, C, H, W) image tensor.

    ``images[index]`` with an index tensor, a slice or an int reads just those rows (raw: a
    gather from the memory map; jpeg: slices of the byte file and one batched decode) and
    returns a new CPU tensor. :meth:`select` makes a subset without reading anything.

    Args:
        root: the store directory.
        split: ``train`` or ``test``.
        manifest: the store's manifest.
        rows: the store rows this view exposes, in order (default: all).
    """

    def __init__(
        self, root: Path, split: str, manifest: Manifest, rows: np.ndarray | None = None
    ) -> None:
        self.root, self.split, self.manifest = root, split, manifest
        count = manifest.counts[split]
        size, channels = manifest.image_size, manifest.channels
        self.shape = (count if rows is None else len(rows), channels, size, size)
        self.rows = rows
        self.dtype = torch.uint8
        self.ndim = 4
        self.device = torch.device("cpu")
        self._raw: np.memmap | None = None
        self._bytes: np.memmap | None = None
        self._offsets: np.ndarray | None = None
        self.bytes_read = 0  # since creation (per process), for the data benchmark

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        """Worker processes reopen the memory maps themselves."""
        state = dict(self.__dict__)
        state["_raw"] = state["_bytes"] = state["_offsets"] = None
        return state

    def _open(self) -> None:
        manifest, count = self.manifest, self.manifest.counts[self.split]
        shape = (count, manifest.channels, manifest.image_size, manifest.image_size)
        try:
            if manifest.format == "raw":
                path = self.root / f"{self.split}_images.u8"
                self._raw = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
            else:
                self._offsets = np.load(self.root / f"{self.split}_offsets.npy")
                path = self.root / f"{self.split}_jpeg.bin"
                self._bytes = np.memmap(path, dtype=np.uint8, mode="r")
                if len(self._offsets) != count + 1 or self._offsets[-1] != len(self._bytes):
                    raise ValueError("the offsets do not match the byte file")
        except (OSError, ValueError) as error:
            raise UserInputError(
                f"store {self.root} is damaged: {self.split} images unreadable ({error}); "
                "prepare it again"
            ) from None

    def _store_rows(self, key: Any) -> np.ndarray:
        """The store rows a tensor-style index selects."""
        if isinstance(key, torch.Tensor):
            positions = key.detach().cpu().numpy().astype(np.int64)
        elif isinstance(key, slice):
            positions = np.arange(len(self))[key]
        elif isinstance(key, int | np.integer):
            positions = np.asarray([int(key)])
        else:
            positions = np.asarray(key, dtype=np.int64)
        positions = positions.reshape(-1)
        return positions if self.rows is None else self.rows[positions]

    def __getitem__(self, key: Any) -> torch.Tensor:
        rows = self._store_rows(key)
        images = self.read(rows)
        return images[0] if isinstance(key, int | np.integer) else images

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Store rows ``rows`` as a uint8 (B, C, H, W) tensor, in the given order."""
        if self._raw is None and self._bytes is None:
            self._open()
        if self._raw is not None:
            batch = torch.from_numpy(np.ascontiguousarray(self._raw[rows]))
            self.bytes_read += batch.numel()
            return batch
        assert self._bytes is not None and self._offsets is not None
        encoded = [
            torch.from_numpy(np.array(self._bytes[self._offsets[row] : self._offsets[row + 1]]))
            for row in rows
        ]
        self.bytes_read += sum(len(item) for item in encoded)
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.UNCHANGED) if encoded else []
        except RuntimeError as error:
            bad = next((int(r) for r, e in zip(rows, encoded, strict=True) if not _decodes(e)), "?")
            raise UserInputError(
                f"store {self.root}: {self.split} sample {bad} is not a readable JPEG ({error}); "
                "prepare the store again"
            ) from None
        if not decoded:
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.stack(decoded)

    def source_files(self) -> list[str] | None:
        """The image file each sample of this view was prepared from, in order (stores of
        image folders); None for stores of other sources or of an older ``ssl-emp prepare``.
        """
        path = self.root / f"{self.split}_files.json"
        if not path.is_file():
            return None
        try:
            files = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UserInputError(f"{path} is damaged ({error}); prepare the store again") from None
        if len(files) != self.manifest.counts[self.split]:
            raise UserInputError(
                f"{path} lists {len(files)} files for {self.manifest.counts[self.split]} "
                "images; prepare the store again"
            )
        rows = range(len(files)) if self.rows is None else self.rows.tolist()
        return [str(files[row]) for row in rows]

    def to(self, device: torch.device | str) -> StoredImages:
        """Stays where it is: a store streams; consumers move each batch."""
        return self

    def select(self, positions: np.ndarray | torch.Tensor) -> StoredImages:
        """A view of the samples at ``positions`` (nothing is read)."""
        chosen = self._store_rows(torch.as_tensor(positions))
        return StoredImages(self.root, self.split, self.manifest, rows=chosen)

    def clone(self) -> torch.Tensor:
        raise UserInputError(
            "this needs every image in memory, which a store does not hold (data.junk_fraction "
            "works on in-memory sources only)"
        )


def _decodes(encoded: torch.Tensor) -> bool:
    try:
        decode_jpeg(encoded)
    except RuntimeError:
        return False
    return True


def open_store(root: str | None, split_names: Sequence[str] = SPLITS) -> tuple[Manifest, dict]:
    """The manifest and the :class:`StoredImages` and labels of each split at ``root``."""
    if root is None:
        raise UserInputError(f"data.source=store needs data.root=DIR (built by `{PREPARE_HINT}`)")
    base = Path(root)
    manifest = read_manifest(base)
    splits = {}
    for split in split_names:
        try:
            labels = torch.from_numpy(np.load(base / f"{split}_labels.npy").astype(np.int64))
        except (OSError, ValueError) as error:
            raise UserInputError(
                f"store {base} is damaged: {split} labels unreadable ({error}); prepare it again"
            ) from None
        if len(labels) != manifest.counts[split]:
            raise UserInputError(
                f"store {base} is damaged: {len(labels)} {split} labels for "
                f"{manifest.counts[split]} images; prepare it again"
            )
        splits[split] = (StoredImages(base, split, manifest), labels)
    return manifest, splits
