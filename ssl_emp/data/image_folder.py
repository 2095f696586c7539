"""Image folders as a data source: ``ROOT/train/CLASS/*.png`` and ``ROOT/test/CLASS/*`` (or
``val/``), listed with their class sets checked across the splits, decoded, resized and
centre-cropped once, and normalised with the statistics ``ssl-emp prepare`` computes too
(:mod:`ssl_emp.data.statistics`), so a store of a folder trains like the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as tvf

from ssl_emp.data.dataset import ImageData
from ssl_emp.data.statistics import channel_stats
from ssl_emp.errors import UserInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def decode_image(path: Path) -> torch.Tensor:
    """One image file as a uint8 (C, H, W) tensor: 1 channel for grayscale, 3 for colour."""
    try:
        with Image.open(path) as opened:
            opened.load()
            if opened.mode in ("L", "1", "I", "I;16", "F") or opened.mode in ("LA",):
                image = opened.convert("L")
            else:
                image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserInputError(
            f"cannot decode image {path} ({error}); remove or replace the file"
        ) from None
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _read_folder_split(
    files: list[tuple[Path, int]], image_size: int | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decode one split's (file, label) pairs, resized and centre-cropped to ``image_size``;
    with the (absolute) file path of each image."""
    images: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    channels: dict[int, Path] = {}
    for path, label in files:
        image = decode_image(path)
        channels.setdefault(image.shape[0], path)
        if len(channels) > 1:
            gray, rgb = channels.get(1), channels.get(3)
            raise UserInputError(
                f"image folder mixes grayscale ({gray}) and RGB ({rgb}) images; convert them "
                "all to one mode"
            )
        side = image_size or min(image.shape[-2:])
        image = tvf.center_crop(tvf.resize(image, [side], antialias=True), [side, side])
        images.append(image)
        labels.append(label)
        paths.append(str(path.absolute()))
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        folder = files[0][0].parent.parent
        raise UserInputError(
            f"images in {folder} have different sizes {sorted(sizes)[:3]}; set augment.image_size"
        )
    return torch.stack(images), torch.as_tensor(labels, dtype=torch.long), tuple(paths)


def folder_layout(base: Path) -> tuple[Path, Path, list[str]]:
    """The train and test (or val) folders of an image folder and its class names."""
    train_dir = base / "train"
    test_dir = next((base / n for n in ("test", "val") if (base / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise UserInputError(
            f"image folder {base} needs train/ and test/ (or val/) sub-folders of class folders"
        )
    classes = _class_folders(train_dir)
    if not classes:
        raise UserInputError(
            f"image folder {train_dir} has no class sub-folders; add CLASS/ folders"
        )
    return train_dir, test_dir, classes


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(path.name for path in split_dir.iterdir() if path.is_dir())


def _image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted (the order samples get)."""
    files = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    if not files:
        raise UserInputError(
            f"class folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "add images, or remove the class from both train/ and test/"
        )
    return files


def _split_files(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    return [
        (path, label)
        for label, name in enumerate(classes)
        for path in _image_files(split_dir / name)
    ]


def _names(names: list[str]) -> str:
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    return f"{names[0]!r}{more}"


def _check_class_sets(base: Path, train_dir: Path, test_dir: Path, classes: list[str]) -> None:
    """Both splits name the same classes: a label the test split lacks, or test images of a
    class no model was trained on, is a mistake in the folder, not something to guess at."""
    tested = _class_folders(test_dir)
    missing = [name for name in classes if name not in tested]
    if missing:
        raise UserInputError(
            f"image folder {base}: class {_names(missing)} has images in {train_dir.name}/ but "
            f"no folder in {test_dir.name}/; add {test_dir / missing[0]}/ with images or "
            f"remove {train_dir / missing[0]}/"
        )
    extra = [name for name in tested if name not in classes]
    if extra:
        raise UserInputError(
            f"image folder {base}: class {_names(extra)} is in {test_dir.name}/ but not in "
            f"{train_dir.name}/; add {train_dir / extra[0]}/ with training images or remove "
            f"{test_dir / extra[0]}/"
        )


def list_image_folder(base: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per split (``train``, ``test``), the (file, label) pairs of a folder.

    The one listing both the in-memory loader and ``ssl-emp prepare`` use, checked: every
    class folder holds images and both splits hold the same classes.

    Raises:
        UserInputError: one line naming the folder at fault and the fix.
    """
    train_dir, test_dir, classes = folder_layout(base)
    train = _split_files(train_dir, classes)
    _check_class_sets(base, train_dir, test_dir, classes)
    return classes, {"train": train, "test": _split_files(test_dir, classes)}


def load_image_folder(root: str | None, image_size: int | None) -> tuple[ImageData, ImageData]:
    """An image folder with ``train/CLASS/*.png`` and ``test/CLASS/*`` (or ``val/``), in memory.

    Images are resized (shorter side) and centre-cropped to ``image_size`` once, at load time.
    """
    if root is None:
        raise UserInputError(
            "data.source=image_folder needs data.root=FOLDER (with train/ and test/)"
        )
    base = Path(root)
    classes, files = list_image_folder(base)
    train_images, train_labels, train_files = _read_folder_split(files["train"], image_size)
    test_images, test_labels, test_files = _read_folder_split(files["test"], train_images.shape[-1])
    mean, std = channel_stats(train_images)  # as prepare computes them, so a store matches
    name, names, count = "image_folder", tuple(classes), len(classes)
    return (
        ImageData(
            train_images, train_labels, count, mean, std, name, class_names=names, files=train_files
        ),
        ImageData(
            test_images, test_labels, count, mean, std, name, class_names=names, files=test_files
        ),
    )
