"""Data sources: IDX and CIFAR readers on files the tests write, image folders, subsets."""

import gzip
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_emp.cli import main
from ssl_emp.config import DataConfig
from ssl_emp.data import build_datasets, index_batches
from ssl_emp.data.dataset import balanced_subset_indices
from ssl_emp.data.prepare import prepare_store
from ssl_emp.data.sources import load_cifar, load_fashion_mnist, read_idx
from ssl_emp.errors import UserInputError
from tests.conftest import SIMCLR_CONFIG as CONFIG


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_mnist(folder: Path, train: int = 30, test: int = 10) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(test) % 10,
    }
    for name, array in arrays.items():
        _write_idx(folder / f"{name}.gz", array)
    return arrays


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    _write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)


def test_fashion_mnist_torchvision_layout(tmp_path: Path) -> None:
    arrays = _fake_fashion_mnist(tmp_path / "FashionMNIST" / "raw")
    train, test = load_fashion_mnist(str(tmp_path))
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path))


def test_truncated_idx_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x01" * 10)
    with pytest.raises(UserInputError, match="truncated"):
        read_idx(path)


def _write_cifar(root: Path, per_batch: int = 6) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    all_train, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, per_batch))
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels}, handle)
        if name != "test_batch":
            all_train.append(data)
            all_labels += labels
    return np.concatenate(all_train), all_labels


def test_cifar_loader_reads_cifar_format(tmp_path: Path) -> None:
    data, labels = _write_cifar(tmp_path)
    train, test = load_cifar("cifar10", str(tmp_path), download=False)
    assert train.images.shape == (30, 3, 32, 32) and len(test) == 6
    # CIFAR rows are channel-major: R plane, G plane, B plane
    assert np.array_equal(train.images[3, 1].numpy().ravel(), data[3, 1024:2048])
    assert train.labels.tolist() == labels
    assert train.num_classes == 10


def test_missing_cifar_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="cifar100 not found.*data.download=true"):
        load_cifar("cifar100", str(tmp_path), download=False)


def _write_png(array: np.ndarray, path: Path) -> None:
    pixels = array.astype(np.uint8)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)


def _write_folder(root: Path, channels: int = 3, per_class: int = 3) -> None:
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                image = np.random.default_rng(index).integers(0, 256, (20, 24, channels))
                _write_png(image, folder / f"{index}.png")


def test_image_folder_loads_resized(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    config = DataConfig(source="image_folder", root=str(tmp_path))
    train, test = build_datasets(config, seed=0, image_size=16)
    assert train.images.shape == (6, 3, 16, 16)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.images.shape[-1] == 16


def test_image_folder_mixed_modes_rejected(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    _write_png(np.zeros((20, 24, 1)), tmp_path / "train" / "dog" / "g.png")
    config = DataConfig(source="image_folder", root=str(tmp_path))
    with pytest.raises(UserInputError, match="mixes grayscale .* and RGB"):
        build_datasets(config, seed=0, image_size=16)


def test_image_folder_corrupt_file_named(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    config = DataConfig(source="image_folder", root=str(tmp_path))
    with pytest.raises(UserInputError, match="broken.png"):
        build_datasets(config, seed=0, image_size=16)


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    config = DataConfig(source="image_folder", root=str(tmp_path))
    with pytest.raises(UserInputError, match="holds no images"):
        build_datasets(config, seed=0, image_size=16)


def test_balanced_subset() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 20, 100])
    chosen = balanced_subset_indices(labels, size=40, seed=0)
    assert len(chosen) == len(set(chosen)) == 40
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10, 10]
    assert np.array_equal(chosen, balanced_subset_indices(labels, size=40, seed=0))
    assert not np.array_equal(chosen, balanced_subset_indices(labels, size=40, seed=1))


def test_balanced_subset_with_a_small_class() -> None:
    labels = np.repeat(np.arange(3), [2, 50, 50])
    chosen = balanced_subset_indices(labels, size=30, seed=0)
    counts = np.bincount(labels[chosen])
    assert len(chosen) == 30 and counts[0] == 2 and counts.sum() == 30


def test_subset_larger_than_data_is_an_error() -> None:
    config = DataConfig(source="synthetic", synthetic_size=20, subset=21)
    with pytest.raises(UserInputError, match="data.subset=21 exceeds"):
        build_datasets(config, seed=0)


def test_index_batches_cover_every_index_once() -> None:
    indices = torch.arange(103)
    batches = index_batches(indices, 25, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 5 and max(len(b) for b in batches) <= 25
    assert sorted(torch.cat(batches).tolist()) == list(range(103))


def test_synthetic_train_and_test_share_classes() -> None:
    train, test = build_datasets(DataConfig(source="synthetic", synthetic_size=40), seed=0)
    # nearest train-class mean classifies the test split: the classes are shared
    means = torch.stack([train.images[train.labels == c].float().mean(0) for c in range(4)])
    distances = (test.images.float()[:, None] - means[None]).flatten(2).norm(dim=2)
    assert (distances.argmin(dim=1) == test.labels).float().mean() > 0.9


FOLDER_PROBLEMS = {
    # name -> (damage to a good two-class folder, fragment naming the folder, the fix)
    "empty train class": ("train/bird", "train/bird holds no images", "add images"),
    "empty test class": ("test/dog!", "test/dog holds no images", "add images"),
    "class missing from test": (
        "test/dog-",
        "class 'dog' has images in train/ but no folder in test/",
        "add {root}/test/dog/ with images or remove {root}/train/dog/",
    ),
    "class only in test": (
        "test/bird+",
        "class 'bird' is in test/ but not in train/",
        "add {root}/train/bird/ with training images or remove {root}/test/bird/",
    ),
}


def _break_folder(root: Path, damage: str) -> None:
    if damage.endswith("!"):  # empty an existing class folder
        for path in (root / damage[:-1]).iterdir():
            path.unlink()
    elif damage.endswith("-"):  # remove a class folder
        shutil.rmtree(root / damage[:-1])
    elif damage.endswith("+"):  # a class folder with images
        (root / damage[:-1]).mkdir()
        _write_png(np.zeros((20, 24, 3)), root / damage[:-1] / "0.png")
    else:  # a new, empty class folder
        (root / damage).mkdir()


@pytest.mark.parametrize("problem", list(FOLDER_PROBLEMS))
def test_image_folder_class_sets_are_checked_across_splits(
    tmp_path: Path, problem: str, capsys
) -> None:
    """An empty class folder (a label with no samples), a class test/ lacks (was a
    FileNotFoundError traceback) and a class only test/ has (was silently dropped) are each
    refused in one line naming the folder and the fix, in memory and by prepare."""
    root = tmp_path / "folder"
    _write_folder(root)
    damage, fragment, fix = FOLDER_PROBLEMS[problem]
    _break_folder(root, damage)
    config = DataConfig(source="image_folder", root=str(root))
    with pytest.raises(UserInputError) as raised:
        build_datasets(config, seed=0, image_size=16)
    message = str(raised.value)
    assert "\n" not in message and fragment in message and fix.format(root=root) in message
    with pytest.raises(UserInputError, match=re.escape(fragment)):
        prepare_store(config, seed=0, out=str(tmp_path / "s"), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]  # nothing half-written
    folder_args = ["data.source=image_folder", f"data.root={root}", "augment.image_size=16"]
    for command in (
        ["pretrain", "-c", CONFIG, *folder_args, f"run.dir={tmp_path / 'run'}"],
        ["prepare", "-c", CONFIG, "--out", str(tmp_path / "s"), *folder_args],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("ssl-emp: error: ") and len(err.splitlines()) == 1, err
        assert fragment in err
