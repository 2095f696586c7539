"""Loaders for each ``data.source``, by name (:data:`SOURCES`): Fashion-MNIST (IDX), CIFAR
(torchvision), image folders (:mod:`ssl_emp.data.image_folder`), stores written by
``ssl-emp prepare``, and synthetic data for tests. Each returns train and test
:class:`ImageData` on the CPU; :func:`build_datasets` applies the subsets."""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100, FashionMNIST

from ssl_emp.config import DataConfig
from ssl_emp.config.schema import DataSource
from ssl_emp.data.dataset import ImageData, balanced_subset_indices
from ssl_emp.data.image_folder import load_image_folder
from ssl_emp.data.store import open_store
from ssl_emp.errors import UserInputError

FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Per-channel statistics of the standard training splits (in [0, 1]).
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) as a numpy array of its stored dtype.

    The IDX format: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then
    one big-endian uint32 per dimension and the raw data.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise UserInputError(
            f"cannot read IDX file {path}: {error}; reinstall the dataset"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserInputError(f"{path} is not a uint8 IDX file; reinstall the dataset")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserInputError(f"{path} is truncated ({data.size} of {np.prod(shape)} bytes)")
    return data.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def load_fashion_mnist(root: str | None) -> tuple[ImageData, ImageData]:
    """Fashion-MNIST from gzipped IDX files (Debian package layout or torchvision's)."""
    base = Path(root) if root else FASHION_MNIST_DEFAULT_ROOT
    splits = []
    for split, (image_stem, label_stem) in FASHION_MNIST_FILES.items():
        image_path, label_path = _find_idx(base, image_stem), _find_idx(base, label_stem)
        if image_path is None or label_path is None:
            raise UserInputError(
                f"Fashion-MNIST {split} files not found under {base}; install them with "
                f"'{FASHION_MNIST_INSTALL}' or set data.root to a folder holding "
                f"{image_stem}.gz"
            )
        images = torch.from_numpy(read_idx(image_path).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
        mean, std = DATASET_STATS["fashion_mnist"]
        names = tuple(FashionMNIST.classes)
        splits.append(ImageData(images, labels, 10, mean, std, "fashion_mnist", class_names=names))
    return splits[0], splits[1]


def _read_cifar_batches(folder: Path, files: list[str]) -> tuple[np.ndarray, list[int]]:
    """Images (N, 3, 32, 32) and labels from CIFAR's python-pickle batch files."""
    images, labels = [], []
    for name in files:
        path = folder / name
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise UserInputError(f"cannot read CIFAR batch {path} ({error})") from None
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    return np.concatenate(images), labels


def _cifar_class_names(folder: Path, dataset_class: type[CIFAR10]) -> tuple[str, ...] | None:
    """The class names in CIFAR's meta file (``batches.meta`` / ``meta``), or None where a
    folder lacks it (the names are for people; training does not need them)."""
    try:
        with open(folder / dataset_class.meta["filename"], "rb") as handle:
            names = pickle.load(handle, encoding="latin1")[dataset_class.meta["key"]]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError):
        return None
    return tuple(str(name) for name in names)


def load_cifar(name: str, root: str | None, download: bool) -> tuple[ImageData, ImageData]:
    """CIFAR-10 or CIFAR-100 in torchvision's layout under a local root.

    torchvision downloads and names the files (``download=True``); the batches are read here
    directly, so any folder in the CIFAR python format works (torchvision itself insists on
    the official checksums).
    """
    dataset_class = CIFAR10 if name == "cifar10" else CIFAR100
    base = Path(root) if root else Path("data")
    if download:
        for train in (True, False):
            dataset_class(root=str(base), train=train, download=True)
    folder = base / dataset_class.base_folder
    files = [entry[0] for entry in dataset_class.train_list + dataset_class.test_list]
    missing = [file for file in files if not (folder / file).is_file()]
    if missing:
        raise UserInputError(
            f"{name} not found: {folder / missing[0]} is missing; set data.root to the folder "
            f"that holds {dataset_class.base_folder}/, or data.download=true on a machine with "
            "internet"
        )
    mean, std = DATASET_STATS[name]
    num_classes = 10 if name == "cifar10" else 100
    names = _cifar_class_names(folder, dataset_class)
    if names is not None and len(names) != num_classes:
        names = None
    splits = []
    for file_list in (dataset_class.train_list, dataset_class.test_list):
        images, labels = _read_cifar_batches(folder, [entry[0] for entry in file_list])
        splits.append(
            ImageData(
                torch.from_numpy(images),
                torch.as_tensor(labels, dtype=torch.long),
                num_classes,
                mean,
                std,
                name,
                class_names=names,
            )
        )
    return splits[0], splits[1]


def _synthetic_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The synthetic data's statistics as its golden runs were recorded: float32 reductions.

    Frozen so that no synthetic training number changes; statistics computed from a user's
    images use :func:`ssl_emp.data.statistics.channel_stats` (exact, chunk-independent).
    """
    scaled = images.float().div_(255)
    mean = scaled.mean(dim=(0, 2, 3))
    std = scaled.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def load_store(root: str | None, image_size: int | None) -> tuple[ImageData, ImageData]:
    """Train and test data streamed from a store written by ``ssl-emp prepare``."""
    manifest, splits = open_store(root)
    if image_size is not None and image_size != manifest.image_size:
        raise UserInputError(
            f"store {root} holds {manifest.image_size}px images but augment.image_size="
            f"{image_size}; prepare the store with --image-size {image_size} or drop the override"
        )
    mean, std = tuple(manifest.mean), tuple(manifest.std)
    classes = len(manifest.classes)
    numbers = [str(label) for label in range(classes)]  # what stores of unnamed classes hold
    names = None if manifest.classes == numbers else tuple(manifest.classes)
    name = f"store:{manifest.source}"
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    return (
        ImageData(train_images, train_labels, classes, mean, std, name, class_names=names),
        ImageData(test_images, test_labels, classes, mean, std, name, class_names=names),
    )


def make_synthetic(
    size: int,
    num_classes: int,
    seed: int,
    split: int = 0,
    image_size: int = 16,
    channels: int = 3,
) -> ImageData:
    """Small learnable data for tests: one smooth random prototype per class plus noise.

    The prototypes depend on ``seed`` only; ``split`` picks independent noise, so a train and
    a test split built with the same seed share their classes.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=generator)
    prototypes = torch.nn.functional.interpolate(coarse, size=image_size, mode="bilinear")
    labels = torch.arange(size) % num_classes
    generator.manual_seed(seed * 1000 + split + 1)
    noise = 0.15 * torch.randn(size, channels, image_size, image_size, generator=generator)
    images = (prototypes[labels] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    mean, std = _synthetic_stats(images)
    return ImageData(images, labels, num_classes, mean, std, "synthetic")


def _synthetic_splits(
    config: DataConfig, seed: int, image_size: int | None
) -> tuple[ImageData, ImageData]:
    train = make_synthetic(config.synthetic_size, config.synthetic_classes, seed=seed)
    test = make_synthetic(
        max(config.synthetic_size // 4, config.synthetic_classes),
        config.synthetic_classes,
        seed=seed,
        split=1,
    )
    # the test split is normalised with the training split's statistics
    test = ImageData(test.images, test.labels, test.num_classes, train.mean, train.std, "synthetic")
    return train, test


Loader = Callable[[DataConfig, int, int | None], tuple[ImageData, ImageData]]
# data.source -> (data section, seed, target image size) -> (train, test)
SOURCES: dict[str, Loader] = {
    "fashion_mnist": lambda config, seed, size: load_fashion_mnist(config.root),
    "cifar10": lambda config, seed, size: load_cifar("cifar10", config.root, config.download),
    "cifar100": lambda config, seed, size: load_cifar("cifar100", config.root, config.download),
    "image_folder": lambda config, seed, size: load_image_folder(config.root, size),
    "synthetic": _synthetic_splits,
    "store": lambda config, seed, size: load_store(config.root, size),
}
if tuple(SOURCES) != get_args(DataSource):  # one list of names: the config's
    raise ImportError(f"source registry {tuple(SOURCES)} != config {get_args(DataSource)}")


def build_datasets(
    config: DataConfig, seed: int, image_size: int | None = None
) -> tuple[ImageData, ImageData]:
    """Load train and test data of ``config.source`` (:data:`SOURCES`) on the CPU, with the
    subsets applied.

    Args:
        config: the ``data`` section.
        seed: run seed, for the class-balanced subsets and synthetic data.
        image_size: target side length for image folders (other sources keep their own).
    """
    train, test = SOURCES[config.source](config, seed, image_size)
    if config.subset is not None:
        if config.subset > len(train):
            raise UserInputError(
                f"data.subset={config.subset} exceeds the {len(train)} training samples of "
                f"{config.source}; use at most {len(train)}"
            )
        train = train.select(balanced_subset_indices(train.labels.numpy(), config.subset, seed))
    if config.test_subset is not None and config.test_subset < len(test):
        test = test.select(balanced_subset_indices(test.labels.numpy(), config.test_subset, seed))
    return train, test
