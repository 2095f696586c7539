"""A store's ``manifest.json``: what the store holds (format, image size, channels, classes,
statistics, counts), read with one-line errors and checked for agreement with itself before
its files are checked against it (:func:`ssl_emp.data.store.open_store`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def repair_hint(root: Path) -> str:
    """The command that rebuilds the store at ``root`` in place."""
    return f"re-run `ssl-emp prepare -c CONFIG --out {root} --overwrite`"


def damaged(root: Path, problem: str) -> UserInputError:
    """The one-line error for a store whose files do not hold what its manifest says."""
    return UserInputError(f"store {root} is damaged: {problem}; {repair_hint(root)}")


def read_manifest(root: Path) -> Manifest:
    """The manifest of the store at ``root``, or a one-line error saying what is wrong."""
    if not root.is_dir():
        raise UserInputError(f"no store at {root}; build one with `{PREPARE_HINT}`")
    path = root / MANIFEST
    if not path.is_file():
        raise UserInputError(
            f"{root} is not a finished store (no {MANIFEST}: prepare was interrupted or this is "
            f"another folder); delete it and build it again with `{PREPARE_HINT}`"
        )
    try:
        values = json.loads(path.read_text())
        manifest = Manifest(**values)
    except (json.JSONDecodeError, TypeError) as error:
        raise damaged(root, f"{MANIFEST} is unreadable ({error})") from None
    if manifest.version != STORE_VERSION:
        raise UserInputError(
            f"store {root} has format version {manifest.version}, this ssl_emp reads version "
            f"{STORE_VERSION}; {repair_hint(root)} with this version"
        )
    return manifest


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest(root: Path, manifest: Manifest) -> None:
    """The manifest's own facts agree with each other (before its files are checked).

    Raises:
        UserInputError: a value of the wrong kind, or channels that disagree with mean/std
            (which would otherwise fail inside the augmentations at the first batch).
    """
    if manifest.format not in ("raw", "jpeg"):
        raise damaged(root, f"format {manifest.format!r} is neither raw nor jpeg")
    if not _is_count(manifest.image_size) or manifest.image_size < 1:
        raise damaged(root, f"image_size {manifest.image_size!r} is not a positive integer")
    if not _is_count(manifest.channels) or manifest.channels < 1:
        raise damaged(root, f"channels {manifest.channels!r} is not a positive integer")
    if not isinstance(manifest.mean, list) or not isinstance(manifest.std, list):
        raise damaged(root, "mean and std must be lists of per-channel values")
    if not (manifest.channels == len(manifest.mean) == len(manifest.std)):
        raise damaged(
            root,
            f"the manifest gives {manifest.channels} channel{'s' * (manifest.channels > 1)} but "
            f"{len(manifest.mean)} mean and {len(manifest.std)} std values",
        )
    if not isinstance(manifest.classes, list) or not manifest.classes:
        raise damaged(root, "the manifest names no classes")
    counts = manifest.counts if isinstance(manifest.counts, dict) else {}
    if not all(_is_count(counts.get(split)) for split in SPLITS):
        raise damaged(root, f"counts {manifest.counts!r} must give the train and test counts")
