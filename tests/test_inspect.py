"""``ssl-emp inspect``: the extreme samples of scores.npz, the audit CSV and precision at k."""

import csv
import errno
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_emp.cli import main
from ssl_emp.config import DataConfig
from ssl_emp.data import build_datasets
from ssl_emp.data.image_folder import decode_image
from ssl_emp.data.prepare import prepare_store
from ssl_emp.data.sources import load_cifar, load_fashion_mnist
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.experiments import inspect_run as inspect_module
from ssl_emp.experiments.inspect_run import GRIDS, extreme_indices, inspect_run, training_images
from ssl_emp.experiments.train import build_trainer
from ssl_emp.io import atomic_write
from tests.conftest import tiny_config_with
from tests.test_data import _fake_fashion_mnist, _write_cifar

FASHION_MNIST_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FOLDER_CLASSES = ("cat", "dog", "hedgehog")


def _extremes_by_hand(values: np.ndarray, count: int, largest: bool) -> list[int]:
    """A second implementation: sort (value, index) pairs in plain Python."""
    finite = [i for i in range(len(values)) if np.isfinite(values[i])]
    ordered = sorted(finite, key=lambda i: (-values[i] if largest else values[i], i))
    return ordered[:count]


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("inspect")
    config = tiny_config_with(
        tmp_path,
        "method.name=supervised",
        "data.synthetic_size=96",
        "data.label_noise=0.25",
        "pruning.policy=emp",
        "pruning.rate=0.5",
        "pruning.beta=3",
        "train.epochs=3",
    )
    build_trainer(config).fit()
    return Path(config.run.dir)


def test_grids_show_exactly_the_extreme_samples(noisy_run: Path, tmp_path: Path) -> None:
    found = inspect_run(str(noisy_run), out=str(tmp_path / "out"), samples=10)
    scores = np.load(noisy_run / "scores.npz")
    for name, (array, largest) in GRIDS.items():
        shown = found.grids[name]
        expected = _extremes_by_hand(scores[array], 10, largest)
        assert len(set(shown.tolist())) == len(shown) == 10, name
        # the same values in the same order; which of several tied samples is shown is random
        assert scores[array][shown].tolist() == scores[array][expected].tolist(), name
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 1000
    assert (tmp_path / "out" / "train_count_hist.png").is_file()


def test_ties_are_broken_at_random_by_a_seed_not_by_the_lowest_index() -> None:
    values = np.array([1.0] * 50 + [0.0] * 50 + [np.nan])
    top = extreme_indices(values, 10, largest=True, seed=0)
    bottom = extreme_indices(values, 10, largest=False, seed=0)
    assert set(top.tolist()) <= set(range(50)) and set(bottom.tolist()) <= set(range(50, 100))
    assert top.tolist() != list(range(10)) and bottom.tolist() != list(range(50, 60))
    assert extreme_indices(values, 10, largest=True, seed=0).tolist() == top.tolist()
    assert extreme_indices(values, 10, largest=True, seed=1).tolist() != top.tolist()
    counts = np.array([3, 1, 3, 2, 1, 3], dtype=np.int64)  # visit counts are integers
    ordered = extreme_indices(counts, 6, largest=True, seed=0)
    assert counts[ordered].tolist() == [3, 3, 3, 2, 1, 1]
    assert sorted(ordered[:3].tolist()) == [0, 2, 5] and sorted(ordered[4:].tolist()) == [1, 4]


def test_the_visit_grids_of_a_short_run_draw_from_the_ties(noisy_run: Path, tmp_path: Path) -> None:
    """Three epochs: most samples share a visit count, so the lowest indices would fill the
    most- and least-trained grids; the run's seed draws among them instead, reproducibly."""
    scores = np.load(noisy_run / "scores.npz")
    first = inspect_run(str(noisy_run), out=str(tmp_path / "a"), samples=10)
    again = inspect_run(str(noisy_run), out=str(tmp_path / "b"), samples=10)
    other = inspect_run(str(noisy_run), out=str(tmp_path / "c"), samples=10, seed=99)
    for name in ("most_trained", "least_trained"):
        largest = GRIDS[name][1]
        boundary = scores["train_count"][first.grids[name][-1]]
        assert (scores["train_count"] == boundary).sum() > 10  # the grid cuts through a tie
        assert first.grids[name].tolist() != _extremes_by_hand(scores["train_count"], 10, largest)
        assert first.grids[name].tolist() == again.grids[name].tolist()
        assert first.grids[name].tolist() != other.grids[name].tolist()


def test_each_grid_is_captioned_by_what_it_is_sorted_by(noisy_run: Path, tmp_path: Path) -> None:
    found = inspect_run(str(noisy_run), out=str(tmp_path / "out"), samples=10)
    scores = np.load(noisy_run / "scores.npz")
    for name, (array, _) in GRIDS.items():
        assert len(found.captions[name]) == len(found.grids[name]) == 10
        for index, text in zip(found.grids[name].tolist(), found.captions[name], strict=True):
            first, second = text.split("\n")
            assert first == f"#{index} y={scores['labels'][index]}"  # synthetic: no names
            visits = f"v={scores['train_count'][index]}"
            expected = {
                "train_count": [visits, f"s={scores['score'][index]:.2f}"],
                "score": [f"s={scores['score'][index]:.2f}", visits],
                "memory": [f"m={scores['memory'][index]:.2f}", visits],
            }[array]
            assert second.split() == expected, (name, text)


def test_precision_at_k_counts_the_flipped_labels(noisy_run: Path, tmp_path: Path) -> None:
    found = inspect_run(str(noisy_run), out=str(tmp_path / "out"), k=12)
    scores = np.load(noisy_run / "scores.npz")
    flipped = set(np.load(noisy_run / "label_noise.npz")["flipped"].tolist())
    assert len(flipped) == 24
    rows = {(signal, direction): value for _, signal, direction, _, value, _ in found.precision}
    for signal in ("score", "loss", "memory"):
        for direction, largest in (("highest", True), ("lowest", False)):
            chosen = _extremes_by_hand(scores[signal], 12, largest)
            expected = sum(index in flipped for index in chosen) / 12
            assert rows[(signal, direction)] == pytest.approx(expected)
    assert {row[0] for row in found.precision} == {"flipped"}
    assert all(row[3] == 12 and row[5] == pytest.approx(0.25) for row in found.precision)


def test_the_csv_lists_every_sample_by_score(noisy_run: Path, tmp_path: Path) -> None:
    assert main(["inspect", str(noisy_run), "--out", str(tmp_path / "o"), "--csv"]) == 0
    with open(tmp_path / "o" / "samples.csv") as stream:
        rows = list(csv.DictReader(stream))
    scores = np.load(noisy_run / "scores.npz")
    flipped = set(np.load(noisy_run / "label_noise.npz")["flipped"].tolist())
    assert [int(row["index"]) for row in rows] == _extremes_by_hand(scores["score"], 96, True)
    for row in rows:
        index = int(row["index"])
        assert int(row["visits"]) == scores["train_count"][index]
        assert int(row["label"]) == scores["labels"][index]
        assert int(row["flipped"]) == (index in flipped)


def test_an_unfinished_run_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    config = tiny_config_with(tmp_path, "train.epochs=2")
    build_trainer(config).fit(until_epoch=1)
    assert main(["inspect", config.run.dir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no scores.npz yet" in err


def _write_image_folder(root: Path, per_class: int = 6) -> None:
    """16-pixel PNGs (the training size, so each file decodes to exactly its sample)."""
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in FOLDER_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = generator.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{index}.png")


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory) -> dict[str, Path]:
    """Runs on an image folder (with junk images) and on a store prepared from it, both on a
    subset, so a sample's index is not its file's position."""
    tmp_path = tmp_path_factory.mktemp("folder")
    _write_image_folder(tmp_path / "images")
    folder = ["data.source=image_folder", f"data.root={tmp_path / 'images'}"]
    prepare_store(
        tiny_config_with(tmp_path, *folder).data,
        seed=0,
        out=str(tmp_path / "store"),
        image_size=16,
        threads=1,
        log=lambda _: None,
    )
    runs = {}
    for kind, source in (
        ("folder", [*folder, "data.junk_fraction=0.2"]),
        ("store", ["data.source=store", f"data.root={tmp_path / 'store'}"]),
    ):
        sizes = ["augment.image_size=16", "data.subset=15", "train.batch_size=8"]
        config = tiny_config_with(tmp_path / kind, *source, *sizes)
        build_trainer(config).fit()
        runs[kind] = Path(config.run.dir)
    return runs


@pytest.mark.parametrize("kind", ["folder", "store"])
def test_the_csv_traces_each_sample_to_its_class_and_file(
    folder_runs: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    run = folder_runs[kind]
    assert main(["inspect", str(run), "--out", str(tmp_path / "o"), "--csv"]) == 0
    with open(tmp_path / "o" / "samples.csv") as stream:
        rows = list(csv.DictReader(stream))
    junk = set(np.load(run / "junk.npz")["junk"].tolist()) if kind == "folder" else set()
    data = training_images(RunDirectory(str(run)).load_config())
    assert len(rows) == 15 and len(junk) == (3 if kind == "folder" else 0)
    for row in rows:
        index = int(row["index"])
        assert row["class"] == FOLDER_CLASSES[int(row["label"])]
        if index in junk:  # the picture was replaced: its file would mislead
            assert row["path"] == ""
            continue
        path = Path(row["path"])
        assert path.is_absolute() and path.parent.name == row["class"]
        assert torch.equal(decode_image(path), data.images[torch.tensor([index])][0])


def test_captions_name_the_class_where_the_data_has_names(
    folder_runs: dict[str, Path], tmp_path: Path
) -> None:
    found = inspect_run(str(folder_runs["folder"]), out=str(tmp_path / "o"), samples=5)
    scores = np.load(folder_runs["folder"] / "scores.npz")
    for name in GRIDS:
        for index, text in zip(found.grids[name].tolist(), found.captions[name], strict=True):
            label = int(scores["labels"][index])
            assert text.split("\n")[0] == f"#{index} y={label} {FOLDER_CLASSES[label]}"


def test_the_sources_name_their_classes(tmp_path: Path) -> None:
    _fake_fashion_mnist(tmp_path / "fmnist")
    train, test = load_fashion_mnist(str(tmp_path / "fmnist"))
    assert train.class_names == test.class_names == FASHION_MNIST_NAMES
    assert train.source_files() is None  # no files behind IDX arrays: the CSV leaves it empty
    _write_cifar(tmp_path / "cifar")
    assert load_cifar("cifar10", str(tmp_path / "cifar"), download=False)[0].class_names is None
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    with open(tmp_path / "cifar" / "cifar-10-batches-py" / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [*names, "truck"]}, handle)
    train, _ = load_cifar("cifar10", str(tmp_path / "cifar"), download=False)
    assert train.class_names == (*names, "truck")
    fmnist = DataConfig(source="fashion_mnist", root=str(tmp_path / "fmnist"))
    prepare_store(fmnist, seed=0, out=str(tmp_path / "store"), log=lambda _: None)
    stored, _ = build_datasets(DataConfig(source="store", root=str(tmp_path / "store")), seed=0)
    assert stored.class_names == FASHION_MNIST_NAMES and stored.source_files() is None
    synthetic, _ = build_datasets(DataConfig(source="synthetic"), seed=0)
    assert synthetic.class_names is None


def test_an_out_under_a_regular_file_is_one_line(noisy_run: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "some_file"
    blocker.write_text("mine")
    for out in (blocker, blocker / "x"):
        assert main(["inspect", str(noisy_run), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("ssl-emp: error: cannot write ")
        assert str(out / "most_trained.png") in err and f"{blocker} is a file, not a folder" in err
    assert blocker.read_text() == "mine"


def test_a_full_disk_is_one_line_and_leaves_no_half_file(
    noisy_run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "highest_score.png").write_bytes(b"an older grid")

    def fills_the_disk(path: Path, data: bytes) -> None:
        if path.name != "highest_score.png":
            atomic_write(path, lambda stream: stream.write(data))
            return

        def half_then_full(stream) -> None:
            stream.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        atomic_write(path, half_then_full)

    monkeypatch.setattr(inspect_module, "write_bytes", fills_the_disk)
    assert main(["inspect", str(noisy_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(out / "highest_score.png") in err and "No space left on device" in err
    assert (out / "highest_score.png").read_bytes() == b"an older grid"
    assert sorted(p.name for p in out.iterdir()) == [
        "highest_score.png",
        "least_trained.png",
        "most_trained.png",
    ]  # the grids before it, whole; no temporary file
