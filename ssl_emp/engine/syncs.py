"""Counting the points where the host waits for the device.

On a GPU, ``tensor.item()``, ``bool(tensor)``, ``int(tensor)`` and ``float(tensor)`` block the
host until every queued kernel has run; all of them dispatch ``aten._local_scalar_dense``,
and so does every Python branch on a device value. Counting that operator while a step runs
on the CPU finds each such wait without a GPU (a CPU tensor takes the same path).
``tolist()`` and copies to the host block too but dispatch other operators; those are not
counted (none happens in a training step).
"""

from __future__ import annotations

import collections
import traceback
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPERATOR = torch.ops.aten._local_scalar_dense.default


class HostSyncCounter(TorchDispatchMode):
    """A dispatch mode that counts ``aten._local_scalar_dense`` calls made inside it.

    Attributes:
        count: calls seen.
        sites: calls per call site (the innermost ``ssl_emp`` or kornia frame and its caller),
            so a test failure or the benchmark can say where each wait comes from.

    Example:
        >>> counter = HostSyncCounter()
        >>> with counter:
        ...     _ = bool(torch.ones(2).sum() > 1)
        >>> counter.count
        1
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.sites: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func is SYNC_OPERATOR:
            self.count += 1
            self.sites[_call_site()] += 1
        return func(*args, **(kwargs or {}))


def _call_site() -> str:
    frames = [
        frame
        for frame in traceback.extract_stack()[:-3]
        if "/ssl_emp/" in frame.filename or "/kornia/" in frame.filename
    ]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-2:]))
