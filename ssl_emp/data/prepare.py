"""``ssl-emp prepare``: write a store (:mod:`ssl_emp.data.store`) from any data source.

Sources that fit in memory (Fashion-MNIST, CIFAR, synthetic) are loaded as usual and written
out; image folders are read streaming, a chunk of files at a time decoded in parallel
threads, so a folder larger than memory never has to fit. Everything is written into a
hidden ``.NAME.partial`` directory next to the target and renamed into place after the
manifest, so an interrupted prepare leaves nothing that looks like a store; a failed one
(a full disk, an unwritable ``--out``, Ctrl-C) removes the partial directory, keeps a store
that ``--overwrite`` was replacing, and reports an ``OSError`` as one line naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as tvf
from torchcodec.encoders import JpegEncoder
from tqdm import tqdm

from ssl_emp.config import DataConfig
from ssl_emp.data.dataset import ImageData
from ssl_emp.data.image_folder import decode_image, list_image_folder
from ssl_emp.data.sources import build_datasets
from ssl_emp.data.statistics import ChannelMoments
from ssl_emp.data.store import MANIFEST, SPLITS, Manifest, read_manifest
from ssl_emp.errors import UserInputError
from ssl_emp.io import WriteError, write_bytes, write_json

CHUNK = 1024  # images decoded (and held) at a time when streaming a folder
NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def fit_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` and centre-crop to a square."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    return tvf.center_crop(tvf.resize(image, [size], antialias=True), [size, size])


class SplitWriter:
    """Appends images of one split to a store being written and counts their pixel values
    (:class:`~ssl_emp.data.statistics.ChannelMoments`, as the in-memory image folder does)."""

    def __init__(self, folder: Path, split: str, fmt: str, count: int, shape: tuple, quality: int):
        self.folder, self.split, self.fmt, self.quality = folder, split, fmt, quality
        self.count, self.written = count, 0
        self.labels = np.zeros(count, dtype=np.int64)
        self.moments = ChannelMoments(shape[0])
        self.stream = None
        if fmt == "raw":
            path = folder / f"{split}_images.u8"
            with open(path, "wb") as handle:
                _allocate(handle.fileno(), count * int(np.prod(shape)))
            self.raw = np.memmap(path, dtype=np.uint8, mode="r+", shape=(count, *shape))
        else:
            self.stream = open(folder / f"{split}_jpeg.bin", "wb")  # noqa: SIM115 - closed in finish
            self.offsets = [0]

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch of uint8 (B, C, H, W) images with their labels."""
        start, end = self.written, self.written + len(images)
        self.labels[start:end] = labels.numpy()
        self.moments.add(images)
        if self.fmt == "raw":
            self.raw[start:end] = images.numpy()
        else:
            assert self.stream is not None, "add after finish"
            for image in images:
                jpeg = JpegEncoder(image.contiguous()).to_tensor(quality=self.quality)
                encoded = jpeg.numpy().tobytes()
                self.stream.write(encoded)
                self.offsets.append(self.offsets[-1] + len(encoded))
        self.written = end

    def finish(self) -> tuple[list[float], list[float]]:
        """Flush the files; returns the per-channel mean and std of what was written."""
        if self.written != self.count:
            raise UserInputError(f"{self.split}: wrote {self.written} of {self.count} images")
        np.save(self.folder / f"{self.split}_labels.npy", self.labels)
        if self.fmt == "raw":
            self.raw.flush()
        else:
            self.close()
            np.save(self.folder / f"{self.split}_offsets.npy", np.asarray(self.offsets, np.int64))
        self.close()
        mean, std = self.moments.mean_std()
        return list(mean), list(std)

    def close(self) -> None:
        """Release the open files (also after a failed write, before the partial store goes)."""
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.close()
        if self.fmt == "raw" and hasattr(self, "raw"):
            del self.raw


def _allocate(descriptor: int, size: int) -> None:
    """Reserve a raw file's blocks now: a full disk then fails here with ENOSPC, not later as
    a SIGBUS in a write through the memory map of a sparse file."""
    if size and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(descriptor, 0, size)
            return
        except OSError as error:
            if error.errno not in NO_FALLOCATE:
                raise
    os.ftruncate(descriptor, size)


@contextmanager
def _writing(target: Path, partial: Path) -> Iterator[None]:
    """Writes into ``partial`` for ``target``: on any failure the partial store is removed
    (so a later prepare finds nothing of it), and an OSError becomes a one-line error."""
    try:
        yield
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(error, WriteError):  # a file written whole or not at all
            raise WriteError(target, error.error, option="--out", what="the store") from None
        if isinstance(error, OSError):
            raise WriteError(target, error, option="--out", what="the store") from None
        raise


def _batches(data: ImageData, size: int, chunk: int = CHUNK) -> Iterator[tuple]:
    for start in range(0, len(data), chunk):
        images = data.images[start : start + chunk]
        yield (
            torch.stack([fit_size(image, size) for image in images]),
            data.labels[start : start + chunk],
        )


def _folder_batches(
    files: list[tuple[Path, int]], size: int, channels: int, threads: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Decode, resize and crop the files a chunk at a time, ``threads`` in parallel."""

    def load(item: tuple[Path, int]) -> torch.Tensor:
        image = decode_image(item[0])
        if image.shape[0] != channels:
            modes = {1: "grayscale", 3: "RGB"}
            raise UserInputError(
                f"image folder mixes {modes[channels]} and {modes[image.shape[0]]} images "
                f"({item[0]}); convert them all to one mode"
            )
        return fit_size(image, size)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            images = list(pool.map(load, chunk))
            yield torch.stack(images), torch.as_tensor([label for _, label in chunk])


def prepare_store(
    config: DataConfig,
    seed: int,
    out: str,
    fmt: str = "raw",
    image_size: int | None = None,
    quality: int = 90,
    threads: int = 4,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Write the train and test splits of ``config``'s source into a store at ``out``.

    Args:
        config: the ``data`` section (its subsets, label noise and junk are not applied: the
            store holds the whole source; training applies them).
        seed: run seed (synthetic data depends on it).
        out: the store directory.
        fmt: ``raw`` (fixed-size uint8 rows) or ``jpeg`` (encoded bytes plus offsets).
        image_size: side length to store (default: the source's; image folders: the shorter
            side of their first image).
        quality: JPEG quality (``jpeg`` only).
        threads: parallel decoders for image folders.
        overwrite: replace an existing store at ``out``.
        log: where progress lines go.

    Raises:
        UserInputError: the target exists, the source is missing or broken.
    """
    if fmt not in ("raw", "jpeg"):
        raise UserInputError(f"--format must be raw or jpeg, not '{fmt}'")
    if not 1 <= quality <= 100:
        raise UserInputError(f"--quality must be between 1 and 100, got {quality}")
    target = Path(out)
    _check_target(target, overwrite)
    if config.source == "store":
        raise UserInputError("data.source=store is already a store; prepare from the original")
    plan = _plan(config, seed, image_size, threads)
    partial = target.parent / f".{target.name}.partial"  # only once the source is readable
    with _writing(target, partial):
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        statistics = _write_splits(partial, plan, fmt, quality, log)
        mean, std = plan.mean_std or statistics
        manifest = Manifest(
            format=fmt,
            image_size=plan.size,
            channels=plan.channels,
            classes=plan.classes,
            mean=mean,
            std=std,
            counts=plan.counts,
            source=config.source,
            quality=quality if fmt == "jpeg" else None,
        )
        write_json(partial / MANIFEST, manifest.to_dict())  # last: now it is a store
        _install(partial, target)
    return read_manifest(target)


def _check_target(target: Path, overwrite: bool) -> None:
    """``--out`` is new, or a store (or an empty folder) that ``--overwrite`` may replace:
    never a user's own folder or file, which replacing would delete."""
    if not target.exists():
        return
    if not overwrite:
        raise UserInputError(f"{target} already exists; pass --overwrite to replace it")
    if target.is_dir() and ((target / MANIFEST).is_file() or not any(target.iterdir())):
        return
    raise UserInputError(
        f"{target} is not a store (no {MANIFEST}), so --overwrite does not replace it; choose "
        "another --out, or delete it yourself if it is a store that lost its manifest"
    )


@dataclass(frozen=True)
class _Plan:
    """What a store of a source will hold, and the batches to write (read lazily)."""

    classes: list[str]
    counts: dict[str, int]
    size: int
    channels: int
    batches: dict[str, Iterator[tuple[torch.Tensor, torch.Tensor]]]
    mean_std: tuple[list[float], list[float]] | None  # the source's own, else computed
    files: dict[str, list[str]] | None = None  # each split's image files (image folders)


def _plan(config: DataConfig, seed: int, image_size: int | None, threads: int) -> _Plan:
    """Read the source's listing (an image folder) or load it (sources that fit in memory)."""
    if config.source == "image_folder":
        if config.root is None:
            raise UserInputError("data.source=image_folder needs data.root=FOLDER")
        classes, files = list_image_folder(Path(config.root))
        first = decode_image(files["train"][0][0])
        size = image_size or min(first.shape[-2:])
        channels = first.shape[0]
        return _Plan(
            classes=classes,
            counts={split: len(files[split]) for split in SPLITS},
            size=size,
            channels=channels,
            batches={
                split: _folder_batches(files[split], size, channels, threads) for split in SPLITS
            },
            mean_std=None,
            files={split: [str(path.absolute()) for path, _ in files[split]] for split in SPLITS},
        )
    whole = replace(config, subset=None, test_subset=None, label_noise=0.0, junk_fraction=0.0)
    train, test = build_datasets(whole, seed=seed)
    size = image_size or train.image_size
    return _Plan(
        classes=list(train.class_names or (str(c) for c in range(train.num_classes))),
        counts={"train": len(train), "test": len(test)},
        size=size,
        channels=train.channels,
        batches={"train": _batches(train, size), "test": _batches(test, size)},
        mean_std=(list(train.mean), list(train.std)),  # the source's own, so training matches
    )


def _write_splits(
    partial: Path, plan: _Plan, fmt: str, quality: int, log: Callable[[str], None]
) -> tuple[list[float], list[float]]:
    """Write both splits' files into ``partial``; returns the train split's mean and std."""
    for split, paths in (plan.files or {}).items():  # so a sample can be traced to its file
        write_bytes(partial / f"{split}_files.json", json.dumps(paths).encode())
    statistics = {}
    shape = (plan.channels, plan.size, plan.size)
    show_bar = sys.stderr.isatty()
    for split in SPLITS:
        count = plan.counts[split]
        writer = SplitWriter(partial, split, fmt, count, shape, quality)
        try:
            with tqdm(total=count, desc=split, unit="img", disable=not show_bar) as bar:
                for images, labels in plan.batches[split]:
                    writer.add(images, labels)
                    bar.update(len(images))
            statistics[split] = writer.finish()
        finally:
            writer.close()
        log(f"{split}: {count} images")
    return statistics["train"]


def _install(partial: Path, target: Path) -> None:
    """Rename the finished store into place; a store it replaces is kept until it is."""
    if not target.exists():
        partial.rename(target)
        return
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    try:
        partial.rename(target)
    except OSError:
        old.rename(target)  # the previous store stays where it was
        raise
    shutil.rmtree(old, ignore_errors=True)
