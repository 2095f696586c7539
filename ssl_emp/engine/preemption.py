"""Stopping a run cleanly when the scheduler asks: SIGTERM or SIGUSR1.

Cluster schedulers (Slurm, Kubernetes, spot instances) send SIGTERM, or SIGUSR1 with
``--signal``, some seconds before they kill a job. While a run trains, these signals only set
a flag; the trainer finishes the step in progress, writes a mid-epoch checkpoint and stops
with exit code :data:`PREEMPTED_EXIT_CODE`, so ``--resume`` (or a requeued job) continues
exactly where it stopped.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from ssl_emp.collectives import any_rank, is_distributed

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"


class StopRequest:
    """Catches :data:`STOP_SIGNALS` while installed; the trainer polls :meth:`requested`."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Catch the stop signals (only the main thread can install handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)

    def uninstall(self) -> None:
        """Restore the handlers that were there before."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(number).name

    def requested(self, device: torch.device, step: int | None = None, every: int = 1) -> bool:
        """Whether a stop signal arrived on any rank (all ranks stop at the same step).

        Under torchrun the answer costs an all-reduce and a host-device synchronisation, so
        mid-epoch it is asked only at global steps that are multiples of ``every`` (all ranks
        count the same steps, so they ask together); ``step=None`` (an epoch's end) always
        asks. A single process reads its own flag every time, at no cost.
        """
        if step is not None and step % every != 0 and is_distributed():
            return False
        return any_rank(self.signal_name is not None, device)
