"""``ssl-emp prepare``: write a store (:mod:`ssl_emp.data.store`) from any data source.

Sources that fit in memory (Fashion-MNIST, CIFAR, synthetic) are loaded as usual and written
out; image folders are read streaming, a chunk of files at a time decoded in parallel
threads, so a folder larger than memory never has to fit. Everything is written into a
hidden ``.NAME.partial`` directory next to the target and renamed into place after the
manifest, so an interrupted prepare leaves nothing that looks like a store.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as tvf
from torchvision.io import encode_jpeg
from tqdm import tqdm

from ssl_emp.config import DataConfig
from ssl_emp.data.dataset import ImageData
from ssl_emp.data.sources import IMAGE_SUFFIXES, build_datasets, decode_image, folder_layout
from ssl_emp.data.store import MANIFEST, SPLITS, Manifest, read_manifest
from ssl_emp.errors import UserInputError
from ssl_emp.io import write_bytes, write_json

CHUNK = 1024  # images decoded (and held) at a time when streaming a folder


def fit_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` and centre-crop to a square."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    return tvf.center_crop(tvf.resize(image, [size], antialias=True), [size, size])


class SplitWriter:
    """Appends images of one split to a store being written and tracks channel statistics."""

    def __init__(self, folder: Path, split: str, fmt: str, count: int, shape: tuple, quality: int):
        self.folder, self.split, self.fmt, self.quality = folder, split, fmt, quality
        self.count, self.written = count, 0
        self.labels = np.zeros(count, dtype=np.int64)
        self.sums = np.zeros(shape[0], dtype=np.float64)
        self.squares = np.zeros(shape[0], dtype=np.float64)
        self.pixels = 0
        if fmt == "raw":
            self.raw = np.memmap(
                folder / f"{split}_images.u8", dtype=np.uint8, mode="w+", shape=(count, *shape)
            )
        else:
            self.stream = open(folder / f"{split}_jpeg.bin", "wb")  # noqa: SIM115 - closed in finish
            self.offsets = [0]

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch of uint8 (B, C, H, W) images with their labels."""
        start, end = self.written, self.written + len(images)
        self.labels[start:end] = labels.numpy()
        values = images.double().div(255)
        self.sums += values.sum(dim=(0, 2, 3)).numpy()
        self.squares += values.square().sum(dim=(0, 2, 3)).numpy()
        self.pixels += images.shape[0] * images.shape[2] * images.shape[3]
        if self.fmt == "raw":
            self.raw[start:end] = images.numpy()
        else:
            for image in images:
                encoded = encode_jpeg(image.contiguous(), quality=self.quality).numpy().tobytes()
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
            del self.raw
        else:
            self.stream.close()
            np.save(self.folder / f"{self.split}_offsets.npy", np.asarray(self.offsets, np.int64))
        mean = self.sums / max(self.pixels, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.pixels, 1) - mean**2, 0.0))
        return mean.tolist(), np.maximum(std, 1e-3).tolist()


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


def _folder_files(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per split, the (file, label) pairs of an image folder."""
    train_dir, test_dir, classes = folder_layout(root)
    listed = {}
    for split, folder in zip(SPLITS, (train_dir, test_dir), strict=True):
        files = [
            (path, label)
            for label, name in enumerate(classes)
            for path in sorted((folder / name).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not files:
            raise UserInputError(f"image folder {folder} holds no images; add images first")
        listed[split] = files
    return classes, listed


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
    if target.exists() and not overwrite:
        raise UserInputError(f"{target} already exists; pass --overwrite to replace it")
    if config.source == "store":
        raise UserInputError("data.source=store is already a store; prepare from the original")
    whole = replace(config, subset=None, test_subset=None, label_noise=0.0, junk_fraction=0.0)
    partial = target.parent / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if config.source == "image_folder":
        if config.root is None:
            raise UserInputError("data.source=image_folder needs data.root=FOLDER")
        classes, files = _folder_files(Path(config.root))
        for split in SPLITS:  # so a sample of the store can be traced to its file
            paths = [str(path.absolute()) for path, _ in files[split]]
            write_bytes(partial / f"{split}_files.json", json.dumps(paths).encode())
        first = decode_image(files["train"][0][0])
        size = image_size or min(first.shape[-2:])
        channels = first.shape[0]
        sources = {
            split: _folder_batches(files[split], size, channels, threads) for split in SPLITS
        }
        counts = {split: len(files[split]) for split in SPLITS}
    else:
        train, test = build_datasets(whole, seed=seed)
        size = image_size or train.image_size
        channels = train.channels
        classes = list(train.class_names or (str(c) for c in range(train.num_classes)))
        sources = {"train": _batches(train, size), "test": _batches(test, size)}
        counts = {"train": len(train), "test": len(test)}
    statistics = {}
    show_bar = sys.stderr.isatty()
    for split in SPLITS:
        writer = SplitWriter(partial, split, fmt, counts[split], (channels, size, size), quality)
        with tqdm(total=counts[split], desc=f"{split}", unit="img", disable=not show_bar) as bar:
            for images, labels in sources[split]:
                writer.add(images, labels)
                bar.update(len(images))
        statistics[split] = writer.finish()
        log(f"{split}: {counts[split]} images")
    mean, std = statistics["train"]
    if config.source != "image_folder":  # the source's own statistics, so training matches
        mean, std = list(train.mean), list(train.std)
    manifest = Manifest(
        format=fmt,
        image_size=size,
        channels=channels,
        classes=classes,
        mean=mean,
        std=std,
        counts=counts,
        source=config.source,
        quality=quality if fmt == "jpeg" else None,
    )
    write_json(partial / MANIFEST, manifest.to_dict())
    if target.exists():
        old = target.parent / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        partial.rename(target)
        shutil.rmtree(old)
    else:
        partial.rename(target)
    return read_manifest(target)
