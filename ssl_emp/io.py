"""Crash-safe file writes: a temporary file, flush and fsync, then an atomic rename.

A run killed at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from ssl_emp.errors import UserInputError

DEFAULT_FILE_MODE = 0o644


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else DEFAULT_FILE_MODE
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), mode)  # mkstemp creates 0600; results are for sharing
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_failure(path: Path, error: OSError, option: str) -> UserInputError:
    """The one-line error for an ``OSError`` raised while writing ``path`` (read-only or full
    disk, a file where a folder should be), naming the path and the fix.

    Args:
        path: the file that could not be written.
        error: what the write raised.
        option: the command-line option that chose the location, e.g. ``--out``.
    """
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    reason = f"{blocker} is a file, not a folder" if blocker else error.strerror or str(error)
    return UserInputError(
        f"cannot write {path}: {reason}; pass {option} a location you can write to, with free space"
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` as indented JSON."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode()))


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    atomic_write(path, lambda stream: stream.write(data))


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write named arrays as an ``.npz`` file (``np.load`` reads it back)."""
    atomic_write(path, lambda stream: np.savez(stream, **arrays))  # type: ignore[arg-type]


def write_yaml(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` as YAML (keys in their given order)."""
    text = yaml.safe_dump(payload, sort_keys=False)
    atomic_write(path, lambda stream: stream.write(text.encode()))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it (a line is written whole or, on a crash, not at all
    as far as readers of complete lines are concerned)."""
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record, sort_keys=True) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Atomically replace ``path`` with ``records``, one JSON object per line."""
    text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
    atomic_write(path, lambda stream: stream.write(text.encode()))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete JSON lines of ``path`` (a torn last line is ignored)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
