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

:func:`open_store` checks every file against the manifest when the store is opened (sizes,
offsets, channels against mean/std, labels against counts and classes), so a damaged or
hand-edited store is refused in one line before anything trains instead of training on
scrambled rows or failing at the first batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchcodec.decoders import decode_jpeg

from ssl_emp.data.manifest import (
    MANIFEST,
    PREPARE_HINT,
    SPLITS,
    Manifest,
    check_manifest,
    damaged,
    read_manifest,
    repair_hint,
)
from ssl_emp.errors import UserInputError

__all__ = [
    "MANIFEST",
    "PREPARE_HINT",
    "SPLITS",
    "Manifest",
    "StoredImages",
    "check_manifest",
    "damaged",
    "open_store",
    "read_manifest",
    "repair_hint",
]


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
        self._raw: np.ndarray | None = None  # memory maps once open
        self._bytes: np.ndarray | None = None
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
        """Map the split's files, checked against the manifest (a failed check maps nothing,
        so every later read fails the same way)."""
        self._raw, self._bytes, self._offsets = _map_split(self.root, self.split, self.manifest)

    def check(self) -> None:
        """Check the split's files against the manifest now, before anything reads them.

        Raw: the file holds exactly count x C x H x W bytes. JPEG: the offsets are a rising
        index over the whole byte file, and the first image decodes to the manifest's shape.

        Raises:
            UserInputError: one line naming the store, the problem and the fix.
        """
        self._open()
        if self._bytes is not None and self.manifest.counts[self.split] > 0:
            first = np.zeros(1, dtype=np.int64)
            self._decode(first, self._encoded(first))  # not counted in bytes_read

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
        encoded = self._encoded(rows)
        images = self._decode(rows, encoded)
        self.bytes_read += sum(len(item) for item in encoded)
        return images

    def _encoded(self, rows: np.ndarray) -> list[torch.Tensor]:
        assert self._bytes is not None and self._offsets is not None
        return [
            torch.from_numpy(np.array(self._bytes[self._offsets[row] : self._offsets[row + 1]]))
            for row in rows
        ]

    def _decode(self, rows: np.ndarray, encoded: list[torch.Tensor]) -> torch.Tensor:
        """One batched decode, each image checked against the manifest's shape."""
        if not encoded:
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)
        try:
            decoded = decode_jpeg(encoded, mode="UNCHANGED")
        except RuntimeError as error:
            bad = next((int(r) for r, e in zip(rows, encoded, strict=True) if not _decodes(e)), "?")
            raise damaged(
                self.root, f"{self.split} sample {bad} is not a readable JPEG ({_reason(error)})"
            ) from None
        for row, image in zip(rows, decoded, strict=True):
            if tuple(image.shape) != self.shape[1:]:
                raise damaged(
                    self.root,
                    f"{self.split} sample {int(row)} decodes to {_shape(image.shape)}, but the "
                    f"manifest says {_shape(self.shape[1:])}",
                )
        return torch.stack(list(decoded))  # a list of encoded images decodes to a list

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
        decode_jpeg(encoded, mode="UNCHANGED")
    except RuntimeError:
        return False
    return True


def _reason(error: RuntimeError) -> str:
    """The decoder's reason without its C++ source location: ``Not a JPEG file: starts with
    0x01 0x02`` from ``read_header_and_start, /.../DecodeJpeg.cpp:208, Not a JPEG file: ...``."""
    text = str(error)
    return text.split(".cpp:", 1)[1].split(", ", 1)[-1] if ".cpp:" in text else text


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(side)) for side in shape)


def _map_split(
    root: Path, split: str, manifest: Manifest
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(raw rows, JPEG bytes, offsets) of one split, each checked against the manifest."""
    count = manifest.counts[split]
    shape = (count, manifest.channels, manifest.image_size, manifest.image_size)
    try:
        if manifest.format == "raw":
            path = root / f"{split}_images.u8"
            needed, held = int(np.prod(shape)), path.stat().st_size
            if held != needed:
                raise damaged(
                    root,
                    f"{path.name} holds {held} bytes, but {count} images of {_shape(shape[1:])} "
                    f"need {needed}",
                )
            if not needed:  # an empty split: nothing to map
                return np.zeros(shape, dtype=np.uint8), None, None
            return np.memmap(path, dtype=np.uint8, mode="r", shape=shape), None, None
        offsets = np.load(root / f"{split}_offsets.npy")
        path = root / f"{split}_jpeg.bin"
        held = path.stat().st_size
        _check_offsets(root, split, offsets, count, held)
        encoded = np.memmap(path, dtype=np.uint8, mode="r") if held else np.zeros(0, np.uint8)
        return None, encoded, offsets
    except (OSError, ValueError) as error:
        raise damaged(root, f"{split} images unreadable ({error})") from None


def _check_offsets(root: Path, split: str, offsets: np.ndarray, count: int, held: int) -> None:
    """The offsets index every image of the byte file, in order, and nothing beyond it."""
    name = f"{split}_offsets.npy"
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) != count + 1:
        raise damaged(
            root,
            f"{name} holds {offsets.shape} {offsets.dtype} for {count} images (needs "
            f"{count + 1} integers)",
        )
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise damaged(root, f"{name} is not a rising index from 0")
    if offsets[-1] != held:
        raise damaged(
            root,
            f"{split}_jpeg.bin holds {held} bytes but its offsets end at {int(offsets[-1])} "
            "(truncated or replaced)",
        )


def _read_labels(root: Path, split: str, manifest: Manifest) -> torch.Tensor:
    """A split's labels, one per image and each naming one of the manifest's classes."""
    try:
        labels = np.load(root / f"{split}_labels.npy")
    except (OSError, ValueError) as error:
        raise damaged(root, f"{split} labels unreadable ({error})") from None
    count, classes = manifest.counts[split], len(manifest.classes)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise damaged(root, f"{split} labels are {labels.shape} {labels.dtype}, not integers")
    if len(labels) != count:
        raise damaged(root, f"{len(labels)} {split} labels for {count} images")
    outside = labels[(labels < 0) | (labels >= classes)]
    if len(outside):
        raise damaged(
            root,
            f"{split} labels must lie in 0..{classes - 1} ({classes} classes), found "
            f"{int(outside[0])}",
        )
    return torch.from_numpy(labels.astype(np.int64))


def open_store(root: str | None, split_names: Sequence[str] = SPLITS) -> tuple[Manifest, dict]:
    """The manifest and the :class:`StoredImages` and labels of each split at ``root``.

    Every file is checked against the manifest here, when the store is opened, so a damaged
    or hand-edited store is refused before anything trains (not scrambled or failing
    mid-run).
    """
    if root is None:
        raise UserInputError(f"data.source=store needs data.root=DIR (built by `{PREPARE_HINT}`)")
    base = Path(root)
    manifest = read_manifest(base)
    check_manifest(base, manifest)
    splits = {}
    for split in split_names:
        labels = _read_labels(base, split, manifest)
        images = StoredImages(base, split, manifest)
        images.check()
        splits[split] = (images, labels)
    return manifest, splits
