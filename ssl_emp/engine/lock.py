"""An exclusive lock on a run directory, held by the one process that trains into it.

``flock`` locks belong to the open file, so the kernel releases them when the process exits
however it exits: a lock left by a process that died is free again, and the next run takes it
over. The lock file names its holder (process id, host, start time) for the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from ssl_emp.errors import RunDirectoryBusyError

LOCK_FILE = ".lock"


class RunLock:
    """Exclusive, non-blocking lock on ``directory/.lock``.

    Args:
        directory: the run directory (must exist).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._stream: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._stream is not None

    def acquire(self) -> None:
        """Take the lock or raise a one-line error naming the process that holds it.

        Raises:
            RunDirectoryBusyError: another process holds the directory.
        """
        if self.held:
            return
        stream = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            holder = stream.read().strip()
            stream.close()
            raise RunDirectoryBusyError(
                f"run directory {self.path.parent} is in use by {describe_holder(holder)}; "
                "wait for it to finish or stop it (two processes must not train into one "
                "run.dir)"
            ) from None
        stream.seek(0)
        stream.truncate()
        holder_info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        stream.write(json.dumps(holder_info))
        stream.flush()
        self._stream = stream

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._stream is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._stream.fileno(), fcntl.LOCK_UN)
            self._stream.close()
            self._stream = None

    def __del__(self) -> None:
        self.release()


def describe_holder(text: str) -> str:
    """``process 1234 on host (since 2026-11-28 21:43:44)`` from the lock file's contents."""
    try:
        holder = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
        return f"process {holder['pid']} on {holder['host']} (since {since})"
    except (ValueError, KeyError, TypeError):
        return "another process"
