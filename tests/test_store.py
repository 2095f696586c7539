"""Prepared stores: written atomically, read back exactly, streamed by the trainer."""

import errno
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, encode_jpeg

from ssl_emp.cli import main
from ssl_emp.config import load_config
from ssl_emp.data import build_datasets
from ssl_emp.data import prepare as prepare_module
from ssl_emp.data.prepare import SplitWriter, prepare_store
from ssl_emp.data.store import StoredImages, read_manifest
from ssl_emp.data.streaming import StoreReader
from ssl_emp.errors import UserInputError
from ssl_emp.eval import LinearProbe, WeightedKnn
from ssl_emp.experiments.evaluate import evaluate_run
from ssl_emp.experiments.train import build_trainer
from tests.conftest import TINY_OVERRIDES, metrics_records

TIMING = {"wall_time_s", "images_per_s"}
CONFIGS = Path(__file__).parent.parent / "configs"


def _config(tmp_path: Path, *overrides: str):
    """Tiny config; stores read in the training process unless a test asks for workers."""
    base = [*TINY_OVERRIDES, "data.workers=0", f"run.dir={tmp_path / 'run'}"]
    return load_config(None, [*base, *overrides])


def _store(tmp_path: Path, fmt: str = "raw", *overrides: str) -> Path:
    config = _config(tmp_path, "data.synthetic_size=96", *overrides)
    out = tmp_path / f"store_{fmt}"
    prepare_store(
        config.data, seed=config.seed, out=str(out), fmt=fmt, quality=95, log=lambda _: None
    )
    return out


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_a_raw_store_holds_the_source_exactly(tmp_path: Path) -> None:
    out = _store(tmp_path)
    config = _config(tmp_path, "data.synthetic_size=96")
    train, test = build_datasets(config.data, seed=config.seed)
    stored_train, stored_test = build_datasets(
        load_config(None, ["data.source=store", f"data.root={out}"]).data, seed=0
    )
    assert isinstance(stored_train.images, StoredImages)
    assert torch.equal(stored_train.images[torch.arange(len(train))], train.images)
    assert torch.equal(stored_test.images[0 : len(test)], test.images)
    assert torch.equal(stored_train.labels, train.labels)
    assert (stored_train.mean, stored_train.std) == (train.mean, train.std)
    manifest = read_manifest(out)
    assert (manifest.format, manifest.counts) == ("raw", {"train": 96, "test": 24})


@pytest.mark.parametrize("policy", ["full", "emp"])
def test_training_from_a_raw_store_is_bit_identical_to_memory(tmp_path: Path, policy: str) -> None:
    out = _store(tmp_path)
    overrides = [
        "data.synthetic_size=96",
        f"pruning.policy={policy}",
        "pruning.rate=0.5",
        "train.epochs=3",
    ]
    memory = build_trainer(_config(tmp_path / "m", *overrides))
    memory.fit()
    stored = build_trainer(
        _config(
            tmp_path / "s", *overrides, "data.source=store", f"data.root={out}", "data.workers=2"
        )
    )
    assert stored.data.streamed
    stored.fit()
    assert _strip(metrics_records(memory.run.path)) == _strip(metrics_records(stored.run.path))
    first, second = np.load(memory.run.scores_path), np.load(stored.run.scores_path)
    for name in first.files:
        assert np.array_equal(first[name], second[name], equal_nan=True), name
    if policy == "full":  # evaluation streams the store too, with the same result
        for evaluator in (LinearProbe(), WeightedKnn()):
            results = [evaluate_run(evaluator, str(t.run.path)).top1 for t in (memory, stored)]
            assert results[0] == results[1]


# the oracle is a second implementation, torchvision's (deprecated) JPEG codec
@pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)
def test_a_jpeg_store_decodes_close_to_the_source_and_trains(tmp_path: Path) -> None:
    """The store (torchcodec) holds, pixel for pixel, what torchvision's encoder and decoder
    make of each image."""
    out = _store(tmp_path, "jpeg")
    config = _config(tmp_path, "data.synthetic_size=96")
    train, _ = build_datasets(config.data, seed=config.seed)
    stored, _ = build_datasets(
        load_config(None, ["data.source=store", f"data.root={out}"]).data, seed=0
    )
    decoded = stored.images[torch.arange(96)]
    expected = torch.stack([decode_jpeg(encode_jpeg(image, quality=95)) for image in train.images])
    assert torch.equal(decoded, expected)  # the store holds each image's JPEG, decoded as is
    trainer = build_trainer(_config(tmp_path / "j", "data.source=store", f"data.root={out}"))
    trainer.fit()
    assert len(metrics_records(trainer.run.path)) == 2


def test_only_the_kept_rows_are_read(tmp_path: Path) -> None:
    out = _store(tmp_path)
    trainer = build_trainer(
        _config(
            tmp_path,
            "data.source=store",
            f"data.root={out}",
            "data.workers=0",
            "pruning.policy=random",
            "pruning.rate=0.5",
            "pruning.warmup_epochs=0",
            "train.epochs=1",
        )
    )
    images = trainer.data.images
    assert isinstance(images, StoredImages)
    trainer.fit()
    row_bytes = 3 * 16 * 16
    assert images.bytes_read == 48 * row_bytes  # half of the 96 rows, each read once


def test_an_interrupted_prepare_leaves_no_store(tmp_path: Path, monkeypatch) -> None:
    def fail(self, images, labels):
        raise KeyboardInterrupt

    monkeypatch.setattr(SplitWriter, "add", fail)
    config = _config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(config.data, seed=0, out=str(tmp_path / "s"), log=lambda _: None)
    assert not (tmp_path / "s").exists()
    assert not (tmp_path / ".s.partial").exists()  # the partial store is removed too


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "no store at"),
        ("manifest", "not a finished store"),
        ("version", "has format version 99"),
        ("size", "holds 16px images but augment.image_size=32"),
        ("labels", "labels unreadable"),
    ],
)
def test_bad_stores_are_one_line_errors(tmp_path: Path, damage: str, message: str, capsys) -> None:
    out = _store(tmp_path)
    overrides = []
    if damage == "missing":
        out = tmp_path / "nothing"
    elif damage == "manifest":
        (out / "manifest.json").unlink()
    elif damage == "version":
        text = (out / "manifest.json").read_text().replace('"version": 1', '"version": 99')
        (out / "manifest.json").write_text(text)
    elif damage == "size":
        overrides = ["augment.image_size=32"]
    else:
        (out / "train_labels.npy").write_bytes(b"not numpy")
    args = [*TINY_OVERRIDES, "data.source=store", f"data.root={out}", f"run.dir={tmp_path / 'r'}"]
    code = main(
        [
            "pretrain",
            "-c",
            str(Path(__file__).parent.parent / "configs" / "simclr_fashion_mnist.yaml"),
            *args,
            *overrides,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_corrupt_jpeg_names_its_sample(tmp_path: Path) -> None:
    out = _store(tmp_path, "jpeg")
    offsets = np.load(out / "train_offsets.npy")
    data = bytearray((out / "train_jpeg.bin").read_bytes())
    data[offsets[7] : offsets[7] + 20] = b"\0" * 20  # break sample 7's header
    (out / "train_jpeg.bin").write_bytes(bytes(data))
    stored, _ = build_datasets(
        load_config(None, ["data.source=store", f"data.root={out}"]).data, seed=0
    )
    assert stored.images[torch.tensor([5, 6])].shape[0] == 2
    with pytest.raises(UserInputError, match="train sample 7 is not a readable JPEG") as error:
        stored.images[torch.tensor([6, 7, 8])]
    assert ".cpp" not in str(error.value)  # the decoder's reason, not its source location


def test_an_image_folder_is_stored_like_the_in_memory_loader(tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = tmp_path / "folder" / split / label
            folder.mkdir(parents=True)
            for index in range(5):
                size = (20 + index, 18)  # different sizes: resized and centre-cropped
                pixels = generator.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    config = load_config(
        None,
        ["data.source=image_folder", f"data.root={tmp_path / 'folder'}", "augment.image_size=16"],
    )
    train, test = build_datasets(config.data, seed=0, image_size=16)
    prepare_store(
        config.data, seed=0, out=str(tmp_path / "s"), image_size=16, threads=2, log=lambda _: None
    )
    stored, stored_test = build_datasets(
        load_config(None, ["data.source=store", f"data.root={tmp_path / 's'}"]).data, seed=0
    )
    assert torch.equal(stored.images[torch.arange(10)], train.images)
    assert torch.equal(stored_test.images[torch.arange(10)], test.images)
    assert read_manifest(tmp_path / "s").classes == ["cat", "dog"]


class _CrashError(Exception):
    pass


def test_a_store_run_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    out = _store(tmp_path)
    overrides = [
        "data.synthetic_size=96",
        "data.source=store",
        f"data.root={out}",
        "data.workers=2",
        "pruning.policy=emp",
        "pruning.rate=0.5",
        "train.epochs=3",
        "train.checkpoint_every=2",
    ]
    straight = build_trainer(_config(tmp_path / "a", *overrides))
    straight.fit()
    crashing = build_trainer(_config(tmp_path / "b", *overrides))
    original_step = crashing.train_step

    def step_then_crash(batch, progress, images=None, batches_in_epoch=0):
        result = original_step(batch, progress, images, batches_in_epoch)
        if crashing.state.step == 9:  # inside the third epoch, after a mid-epoch checkpoint
            raise _CrashError
        return result

    crashing.train_step = step_then_crash
    with pytest.raises(_CrashError):
        crashing.fit()
    resumed = build_trainer(_config(tmp_path / "b", *overrides, "run.resume=true"))
    assert resumed.state.epoch_batches_done > 0
    resumed.fit()
    assert _strip(metrics_records(straight.run.path)) == _strip(metrics_records(resumed.run.path))


def test_a_folder_that_mixes_grayscale_and_rgb_is_refused(tmp_path: Path) -> None:
    for split in ("train", "test"):
        folder = tmp_path / "folder" / split / "a"
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "0.png")
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "1.png")
    config = load_config(None, ["data.source=image_folder", f"data.root={tmp_path / 'folder'}"])
    with pytest.raises(UserInputError, match="mixes RGB and grayscale images"):
        prepare_store(config.data, seed=0, out=str(tmp_path / "s"), log=lambda _: None)
    assert not (tmp_path / "s").exists()


def _edit_manifest(out: Path, **changes: object) -> None:
    path = out / "manifest.json"
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def _damage(out: Path, damage: str) -> None:
    """Break a store the way a hand edit, a bad copy or a full disk would."""
    if damage == "raw image size":  # 16-px rows read as 8-px images: scrambled, not refused
        _edit_manifest(out, image_size=8)
    elif damage == "raw channels":  # channels 3 -> 1 with mean/std of 3 channels
        _edit_manifest(out, channels=1)
    elif damage == "raw count":  # the manifest and labels say fewer images than the file holds
        np.save(out / "train_labels.npy", np.load(out / "train_labels.npy")[:90])
        counts = json.loads((out / "manifest.json").read_text())["counts"]
        _edit_manifest(out, counts={**counts, "train": 90})
    elif damage == "label count":
        np.save(out / "test_labels.npy", np.load(out / "test_labels.npy")[:-1])
    elif damage == "label range":
        labels = np.load(out / "train_labels.npy")
        labels[3] = 7  # the store has 3 classes
        np.save(out / "train_labels.npy", labels)
    elif damage == "jpeg truncated":
        data = (out / "train_jpeg.bin").read_bytes()
        (out / "train_jpeg.bin").write_bytes(data[: len(data) // 2])
    elif damage == "jpeg channels":  # 3-channel JPEGs, a manifest edited to 1 channel
        _edit_manifest(out, channels=1, mean=[0.5], std=[0.25])
    elif damage == "jpeg offsets":
        offsets = np.load(out / "train_offsets.npy")
        offsets[5], offsets[6] = offsets[6], offsets[5]
        np.save(out / "train_offsets.npy", offsets)


STORE_DAMAGE = {
    "raw image size": ("raw", "train_images.u8 holds 73728 bytes, but 96 images of 3x8x8 need"),
    "raw channels": ("raw", "the manifest gives 1 channel but 3 mean and 3 std values"),
    "raw count": ("raw", "train_images.u8 holds 73728 bytes, but 90 images of 3x16x16 need"),
    "label count": ("raw", "23 test labels for 24 images"),
    "label range": ("raw", "train labels must lie in 0..2 (3 classes), found 7"),
    "jpeg truncated": ("jpeg", "its offsets end at"),
    "jpeg channels": ("jpeg", "train sample 0 decodes to 3x16x16, but the manifest says 1x16x16"),
    "jpeg offsets": ("jpeg", "train_offsets.npy is not a rising index"),
}


@pytest.mark.parametrize("damage", list(STORE_DAMAGE))
def test_a_store_is_checked_against_its_manifest_when_opened(
    tmp_path: Path, damage: str, capsys
) -> None:
    fmt, message = STORE_DAMAGE[damage]
    out = _store(tmp_path, fmt)
    _damage(out, damage)
    with pytest.raises(UserInputError, match=re.escape(message)) as raised:
        build_datasets(load_config(None, ["data.source=store", f"data.root={out}"]).data, seed=0)
    error = str(raised.value)
    assert "\n" not in error and str(out) in error
    assert f"ssl-emp prepare -c CONFIG --out {out} --overwrite" in error
    # the same through the command line: one line and exit code 2, before anything trains
    args = [*TINY_OVERRIDES, "data.source=store", f"data.root={out}", f"run.dir={tmp_path / 'r'}"]
    assert main(["pretrain", "-c", str(CONFIGS / "simclr_fashion_mnist.yaml"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_a_failed_check_does_not_leave_a_half_open_split(tmp_path: Path) -> None:
    """A split whose check failed once must fail again, not read the damaged files."""
    out = _store(tmp_path, "jpeg")
    _damage(out, "jpeg truncated")
    images = StoredImages(out, "train", read_manifest(out))
    for _ in range(2):
        with pytest.raises(UserInputError, match="is damaged"):
            images[torch.arange(3)]


def test_a_store_subset_reads_its_own_rows(tmp_path: Path) -> None:
    """``data.subset`` on a store is a view of the chosen rows, not the first n rows, also in
    the worker processes (the view travels pickled) and when a view is subset again."""
    out = _store(tmp_path)
    subset = ["data.subset=30", "data.test_subset=9"]
    memory_train, memory_test = build_datasets(
        _config(tmp_path, "data.synthetic_size=96", *subset).data, seed=0
    )
    train, test = build_datasets(
        load_config(None, ["data.source=store", f"data.root={out}", *subset]).data, seed=0
    )
    assert isinstance(train.images, StoredImages) and len(train) == 30
    assert not np.array_equal(train.images.rows, np.arange(30))  # the subset is not a prefix
    assert torch.equal(train.images[torch.arange(30)], memory_train.images)
    assert torch.equal(train.labels, memory_train.labels)
    assert torch.equal(test.images[0:9], memory_test.images)
    in_worker = pickle.loads(pickle.dumps(train.images))
    order = torch.tensor([29, 0, 11, 11, 5])
    assert torch.equal(in_worker[order], memory_train.images[order])
    reader = StoreReader(train.images, workers=0, pin_memory=False)
    batches = [torch.tensor([3, 1]), torch.tensor([20, 29, 0])]
    for batch, images in zip(batches, reader.read(batches), strict=True):
        assert torch.equal(images, memory_train.images[batch])
    again = train.select(torch.tensor([4, 2, 17]))
    assert torch.equal(again.images[torch.arange(3)], memory_train.images[[4, 2, 17]])


def test_training_on_a_store_subset_is_bit_identical_to_memory(tmp_path: Path) -> None:
    """The trainer's workers, the memory pass and evaluation read the subset's own rows."""
    out = _store(tmp_path)
    overrides = ["data.synthetic_size=96", "data.subset=40", "pruning.policy=emp"]
    memory = build_trainer(_config(tmp_path / "m", *overrides))
    memory.fit()
    stored = build_trainer(
        _config(
            tmp_path / "s", *overrides, "data.source=store", f"data.root={out}", "data.workers=2"
        )
    )
    stored.fit()
    assert _strip(metrics_records(memory.run.path)) == _strip(metrics_records(stored.run.path))
    knn = [evaluate_run(WeightedKnn(), str(t.run.path)).top1 for t in (memory, stored)]
    assert knn[0] == knn[1]


def _break_jpeg(out: Path, sample: int) -> None:
    """Zero the header of one image's JPEG bytes: the store's sizes and offsets still agree, so
    only reading that image finds it (as with a store damaged after it was opened)."""
    offsets = np.load(out / "train_offsets.npy")
    data = bytearray((out / "train_jpeg.bin").read_bytes())
    data[offsets[sample] : offsets[sample] + 20] = b"\0" * 20
    (out / "train_jpeg.bin").write_bytes(bytes(data))


def test_a_store_error_in_a_reader_worker_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """A store error raised in a DataLoader worker process reaches the command line as the
    same one-line error as in the training process (was a 17-35 line worker traceback)."""
    out = _store(tmp_path, "jpeg")
    check = StoredImages.check

    def check_then_damage(self: StoredImages) -> None:
        check(self)
        if self.split == "train":  # damaged once opened: only a read can find it
            _break_jpeg(out, 7)

    monkeypatch.setattr(StoredImages, "check", check_then_damage)
    args = [*TINY_OVERRIDES, "data.source=store", f"data.root={out}", "data.subset=null"]
    for workers in (2, 0):
        run = f"run.dir={tmp_path / f'run{workers}'}"
        command = ["pretrain", "-c", str(CONFIGS / "simclr_fashion_mnist.yaml"), *args, run]
        assert main([*command, f"data.workers={workers}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"ssl-emp: error: store {out} is damaged: train sample 7 is not ")
        assert "Traceback" not in err and "--overwrite" in err


def _photo_folder(root: Path, train: int = 10, test: int = 4) -> Path:
    """Two classes of RGB PNGs of varied sizes (resized and centre-cropped to 16 px), each
    channel with its own brightness, so the channel statistics differ."""
    generator = np.random.default_rng(3)
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                height, width = 16 + index % 3, 17 + index % 4
                low = np.array([0, 40, 80]) + 20 * label
                high = low + np.array([60, 100, 140])
                pixels = generator.integers(low, high, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_an_image_folder_and_its_raw_store_train_bit_identically(tmp_path: Path) -> None:
    """One computation of the channel statistics for the folder in memory and for prepare (it
    was float32 in memory and float64 in prepare, so losses differed from the first epoch)."""
    folder = _photo_folder(tmp_path / "folder")
    source = ["data.source=image_folder", f"data.root={folder}", "augment.image_size=16"]
    config = _config(tmp_path, *source)
    prepare_store(config.data, seed=0, out=str(tmp_path / "s"), threads=2, log=lambda _: None)
    overrides = ["data.subset=null", "train.batch_size=8", "augment.image_size=16"]
    memory = build_trainer(_config(tmp_path / "m", *source, *overrides))
    memory.fit()
    stored = build_trainer(
        _config(tmp_path / "t", "data.source=store", f"data.root={tmp_path / 's'}", *overrides)
    )
    stored.fit()
    losses = [[r["loss"] for r in metrics_records(t.run.path)] for t in (memory, stored)]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert (memory.data.mean, memory.data.std) == (stored.data.mean, stored.data.std)
    assert _strip(metrics_records(memory.run.path)) == _strip(metrics_records(stored.run.path))


def test_prepare_stores_the_channel_statistics_of_the_images(tmp_path: Path) -> None:
    """The manifest's mean and std are those of the stored training images (std with the
    square of the mean, sqrt(E[x^2] - E[x]^2), and Bessel's correction like torch.std)."""
    folder = _photo_folder(tmp_path / "folder")
    config = load_config(None, ["data.source=image_folder", f"data.root={folder}"])
    prepare_store(config.data, seed=0, out=str(tmp_path / "s"), image_size=16, log=lambda _: None)
    manifest = read_manifest(tmp_path / "s")
    stored, _ = build_datasets(
        load_config(None, ["data.source=store", f"data.root={tmp_path / 's'}"]).data, seed=0
    )
    pixels = stored.images[torch.arange(20)].numpy() / 255.0
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3), ddof=1)
    assert len(set(np.round(std, 3))) == 3  # the channels differ, so a mix-up shows
    assert np.allclose(manifest.mean, mean, rtol=1e-12, atol=0)
    assert np.allclose(manifest.std, std, rtol=1e-12, atol=0)
    in_memory, _ = build_datasets(config.data, seed=0, image_size=16)
    assert (list(in_memory.mean), list(in_memory.std)) == (manifest.mean, manifest.std)


def _prepare_command(out: Path, *extra: str) -> list[str]:
    config = str(CONFIGS / "simclr_fashion_mnist.yaml")
    return ["prepare", "-c", config, "--out", str(out), *extra, *TINY_OVERRIDES]


def test_prepare_into_an_unwritable_place_is_one_line(tmp_path: Path, capsys) -> None:
    """--out under a regular file (chmod does not stop root, a file in the way does)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    assert main(_prepare_command(blocker / "store")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"ssl-emp: error: cannot write the store {blocker / 'store'}: ")
    assert f"{blocker} is a file, not a folder" in err
    assert "choose an --out in a writable directory" in err
    assert blocker.read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "/the/disk/file")


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
@pytest.mark.parametrize("where", ["allocate", "images", "labels", "manifest"])
def test_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, fmt: str, where: str, monkeypatch, capsys
) -> None:
    """ENOSPC at any step: one line, exit 2, no store and no .partial left, and an existing
    store that --overwrite was replacing stays as it was."""
    out = tmp_path / "store"
    assert main(_prepare_command(out, "--format", fmt)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    targets = {
        "allocate": (prepare_module, "_allocate"),
        "images": (SplitWriter, "add"),
        "labels": (np, "save"),
        "manifest": (prepare_module, "write_json"),
    }
    if where == "allocate" and fmt == "jpeg":
        targets["allocate"] = (prepare_module, "JpegEncoder")
    monkeypatch.setattr(*targets[where], _no_space)
    for existing in (True, False):
        if not existing:
            shutil.rmtree(out)
        assert main(_prepare_command(out, "--format", fmt, "--overwrite")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"ssl-emp: error: cannot write the store {out}: No space left")
        assert "free space on that disk or choose an --out on another one" in err
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == (["store"] if existing else []), left
        if existing:
            assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    assert main(_prepare_command(out, "--format", fmt)) == 0  # no --overwrite needed
    assert read_manifest(out).format == fmt


def test_a_failed_rename_into_place_keeps_the_replaced_store(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "store"
    assert main(_prepare_command(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rename = Path.rename

    def refuse_the_new_store(self: Path, target: Path) -> Path:
        if self.name.endswith(".partial"):
            raise OSError(errno.EACCES, "Permission denied", str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_the_new_store)
    assert main(_prepare_command(out, "--overwrite", "data.synthetic_size=60")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Permission denied" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_overwrite_replaces_only_a_store(tmp_path: Path, kind: str, capsys) -> None:
    """--out pointed at a user's folder or file by mistake: refused, nothing deleted (it
    was removed whole, being taken for the store to replace)."""
    out = tmp_path / "photos"
    if kind == "folder":
        out.mkdir()
        (out / "holiday.png").write_bytes(b"precious")
    else:
        out.write_bytes(b"precious")
    assert main(_prepare_command(out, "--overwrite")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out} is not a store (no manifest.json)" in err, err
    kept = out / "holiday.png" if kind == "folder" else out
    assert kept.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
