"""The bad-input matrix: each malformed input gives exit code 2 and a one-line message that
names the problem and the fix, and leaves an existing run directory untouched."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_emp.cli import main
from ssl_emp.engine.checkpoint import list_checkpoints
from tests.conftest import ROOT, TINY_OVERRIDES

CONFIG = str(ROOT / "configs" / "simclr_fashion_mnist.yaml")
BASE = [*TINY_OVERRIDES, "data.subset=null"]


CASE_NAMES = [
    "unknown key",
    "wrong type",
    "rate 1.0",
    "rate -0.1",
    "eps > 1",
    "batch > data",
    "batch > pruned",
    "empty folder",
    "corrupt image",
    "mixed modes",
    "missing dataset",
    "missing cifar",
    "unwritable run dir",
    "existing run dir",
    "changed config on resume",
    "resume and overwrite",
    "yaml syntax",
    "missing config",
    "probe on a non-run",
    "probe override",
    "label noise on SSL",
    "supervised via pretrain",
    "infobatch rate",
    "bad sweep rates",
    "compare nothing",
]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file's digest, but the lock file's (it names the last process that held the
    directory, which is no result)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished SimCLR run directory that no bad command may change."""
    run_dir = tmp_path_factory.mktemp("existing") / "run"
    assert main(["pretrain", "-c", CONFIG, *BASE, f"run.dir={run_dir}"]) == 0
    return run_dir


def _image_folder(root: Path, modes: tuple[str, ...] = ("RGB",)) -> Path:
    for split in ("train", "test"):
        for index, mode in enumerate(modes * 2):
            folder = root / split / f"class{index % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            channels = 3 if mode == "RGB" else 1
            pixels = np.full((12, 12, channels), 40 * index, dtype=np.uint8)
            Image.fromarray(pixels if channels == 3 else pixels[..., 0]).save(
                folder / f"{index}.png"
            )
    return root


def _cases(tmp: Path, run: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, fragment the message must contain)."""
    empty = tmp / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "test" / "cat").mkdir(parents=True)
    corrupt = _image_folder(tmp / "corrupt")
    (corrupt / "train" / "class0" / "bad.png").write_bytes(b"\x89PNG\r\n broken")
    mixed = _image_folder(tmp / "mixed", modes=("RGB", "L"))
    broken_yaml = tmp / "broken.yaml"
    broken_yaml.write_text("train:\n  epochs: 3\n  lr: [0.1\n")
    blocker = tmp / "a_file"
    blocker.write_text("not a directory")
    folder_args = ["data.source=image_folder", "augment.image_size=12"]
    pretrain = ["pretrain", "-c", CONFIG, *BASE]
    fresh = f"run.dir={tmp / 'fresh'}"
    return {
        "unknown key": ([*pretrain, "train.epohcs=3", fresh], "unknown config key 'train.epohcs'"),
        "wrong type": (
            [*pretrain, "train.batch_size=big", fresh],
            "'train.batch_size' must be an integer",
        ),
        "rate 1.0": (
            [*pretrain, "pruning.rate=1.0", fresh],
            "'pruning.rate' must be >= 0.0 and < 1.0",
        ),
        "rate -0.1": ([*pretrain, "pruning.rate=-0.1", fresh], "'pruning.rate' must be >= 0.0"),
        "eps > 1": (
            [*pretrain, "pruning.eps=1.5", fresh],
            "'pruning.eps' must be >= 0.0 and <= 1.0",
        ),
        "batch > data": ([*pretrain, "train.batch_size=100", fresh], "exceeds the 48 training"),
        "batch > pruned": (
            [*pretrain, "pruning.policy=topk", "pruning.rate=0.9", fresh],
            "exceeds the 5 samples kept per epoch",
        ),
        "empty folder": ([*pretrain, *folder_args, f"data.root={empty}", fresh], "holds no images"),
        "corrupt image": (
            [*pretrain, *folder_args, f"data.root={corrupt}", fresh],
            "cannot decode image",
        ),
        "mixed modes": ([*pretrain, *folder_args, f"data.root={mixed}", fresh], "mixes grayscale"),
        "missing dataset": (
            [*pretrain, "data.source=fashion_mnist", f"data.root={tmp / 'nope'}", fresh],
            "apt-get install -y dataset-fashion-mnist",
        ),
        "missing cifar": (
            [*pretrain, "data.source=cifar10", f"data.root={tmp / 'nope'}", fresh],
            "data.download=true",
        ),
        "unwritable run dir": ([*pretrain, f"run.dir={blocker / 'run'}"], "is not writable"),
        "existing run dir": ([*pretrain, f"run.dir={run}"], "already exists; pass --resume"),
        "changed config on resume": (
            [*pretrain, "train.lr=0.05", f"run.dir={run}", "--resume"],
            "changed config: train.lr differ",
        ),
        "resume and overwrite": (
            [*pretrain, f"run.dir={run}", "--resume", "--overwrite"],
            "exclude each other",
        ),
        "yaml syntax": (["pretrain", "-c", str(broken_yaml), fresh], "at line 4"),
        "missing config": (["pretrain", "-c", str(tmp / "none.yaml")], "does not exist"),
        "probe on a non-run": (["linear-probe", str(tmp)], "is not a run directory"),
        "probe override": (["linear-probe", str(run), "train.lr=1"], "only eval.*"),
        "label noise on SSL": ([*pretrain, "data.label_noise=0.2", fresh], "label_noise only"),
        "supervised via pretrain": (
            [*pretrain, "method.name=supervised", fresh],
            "train-supervised",
        ),
        "infobatch rate": (
            [*pretrain, "pruning.policy=infobatch", "pruning.rate=0.95", fresh],
            "too high for infobatch",
        ),
        "bad sweep rates": (
            ["sweep", "-c", CONFIG, "--dir", str(tmp / "sw"), "--rates", "0.5,x"],
            "--rates takes comma-separated float",
        ),
        "compare nothing": (["compare", str(empty)], "holds no run directories"),
    }


def test_matrix_has_at_least_fifteen_cases(tmp_path: Path, existing_run: Path) -> None:
    assert sorted(_cases(tmp_path, existing_run)) == sorted(CASE_NAMES)
    assert len(CASE_NAMES) >= 15


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input(case: str, tmp_path: Path, existing_run: Path, capsys) -> None:
    before = _snapshot(existing_run)
    argv, fragment = _cases(tmp_path, existing_run)[case]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0, error
    assert error.startswith("ssl-emp: error: ")
    assert fragment in error, error
    assert "Traceback" not in error
    assert _snapshot(existing_run) == before
    assert not (tmp_path / "fresh").exists()


def test_checkpoint_from_another_method(tmp_path: Path, existing_run: Path, capsys) -> None:
    moco_run = tmp_path / "moco"
    assert (
        main(
            [
                "pretrain",
                "-c",
                CONFIG,
                *BASE,
                "method.name=moco",
                "method.queue_size=16",
                f"run.dir={moco_run}",
            ]
        )
        == 0
    )
    target = tmp_path / "simclr"
    shutil.copytree(existing_run, target)
    newest = list_checkpoints(target / "checkpoints")[-1]
    shutil.copy(list_checkpoints(moco_run / "checkpoints")[-1], newest)
    before = _snapshot(target)
    assert main(["pretrain", "-c", CONFIG, *BASE, f"run.dir={target}", "--resume"]) == 2
    error = capsys.readouterr().err.strip()
    assert "is from method 'moco', not 'simclr'" in error and error.count("\n") == 0
    assert _snapshot(target) == before


def test_all_checkpoints_corrupt(tmp_path: Path, existing_run: Path, capsys) -> None:
    target = tmp_path / "corrupt"
    shutil.copytree(existing_run, target)
    for path in list_checkpoints(target / "checkpoints"):
        path.write_bytes(path.read_bytes()[:200])
    assert main(["pretrain", "-c", CONFIG, *BASE, f"run.dir={target}", "--resume"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "epoch_0001.pt is corrupt or truncated" in error
