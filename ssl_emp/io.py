"""Crash-safe file writes: a temporary file, flush and fsync, then an atomic rename.

A run killed at any moment leaves either the old file or the new one, never half of one. A
write that the system refuses (a full disk, a read-only file system, a path under a regular
file) raises :class:`WriteError`, a one-line :class:`~ssl_emp.errors.UserInputError` naming the
path, after removing the partial temporary file.
"""

from __future__ import annotations

import errno
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


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(UserInputError):
    """The system refused a write (disk full, read-only, a file where a folder should be);
    nothing was left half-written. One line: what could not be written, why, and the fix.

    Args:
        path: what could not be written (a file, or a store directory).
        error: the ``OSError`` raised.
        option: the option that chose the location (``--out``, ``run.dir``), for the fix.
        hint: text appended to the fix (e.g. how to continue).
        what: how to name ``path`` (``the store``).
    """

    def __init__(
        self,
        path: Path,
        error: OSError,
        option: str = "",
        hint: str = "",
        what: str = "",
    ) -> None:
        self.path, self.error, self.option = path, error, option
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        reason = error.strerror or type(error).__name__
        if error.filename and str(error.filename) != str(path) and blocker is None:
            reason = f"{reason} ({error.filename})"
        place = f"an {option}" if option else "a location"
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
            fix = f"choose {place} in a writable directory"
        elif error.errno in DISK_FULL:
            fix = "free space on that disk" + (
                f" or choose an {option} on another one" * bool(option)
            )
        else:
            fix = f"choose {place} in a writable directory"
        name = f"{what} {path}" if what else str(path)
        super().__init__(f"cannot write {name}: {reason}; {fix}{hint} (nothing was half-written)")


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path`` and rename it into place.

    Raises:
        WriteError: the system refused the write; ``path`` is as it was.
    """
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else DEFAULT_FILE_MODE
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), mode)  # mkstemp creates 0600; results are for sharing
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteError(path, error) from None
        raise


def check_writable(path: Path) -> None:
    """Raise :class:`WriteError` now if ``path`` could not be written (a probe file next to
    it is created and removed), so a long computation does not end in a failed write."""
    atomic_write(path.parent / f".{path.name}.probe", lambda stream: stream.write(b""))
    (path.parent / f".{path.name}.probe").unlink(missing_ok=True)


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
    as far as readers of complete lines are concerned).

    Raises:
        WriteError: the system refused the write (a torn line is ignored by :func:`read_jsonl`).
    """
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, sort_keys=True) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        raise WriteError(path, error) from None


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
