"""Progress within an epoch: a live bar on a terminal, a few plain lines everywhere else.

A run whose output goes to a file (nohup, a cluster job) must not collect every redraw of a
progress bar (a 30-epoch demo used to write 242 KB of them), so the bar is shown only when
stderr is a terminal; otherwise one line is printed every ``interval_s`` seconds of a long
epoch, and the per-epoch summary line does the rest.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import torch
from tqdm import tqdm


class EpochProgress:
    """Shows the progress of one epoch.

    Args:
        epoch: 0-based epoch number.
        epochs: epochs of the run.
        done: batches of the epoch already trained (a resumed epoch).
        total: batches in the epoch.
        enabled: show anything at all (``train.progress`` on rank 0).
        interval_s: seconds between plain lines when not on a terminal (0: none).
        stream: where the bar goes (default stderr); a terminal gets the bar, anything else
            the plain lines, printed to stdout with the run's other messages.
    """

    def __init__(
        self,
        *,
        epoch: int,
        epochs: int,
        done: int,
        total: int,
        enabled: bool,
        interval_s: float,
        stream: TextIO | None = None,
    ) -> None:
        stream = stream if stream is not None else sys.stderr
        self.interactive = enabled and stream.isatty()
        self.lines = enabled and not self.interactive and interval_s > 0
        self.label = f"epoch {epoch + 1}/{epochs}"
        self.total, self.batches = total, done
        self.interval_s = interval_s
        self.started = self.last_line = time.perf_counter()
        self.bar: tqdm | None = None
        if self.interactive:
            self.bar = tqdm(
                desc=self.label, initial=done, total=total, leave=False, unit="batch", file=stream
            )

    def step(self, loss: torch.Tensor | None, seen: int) -> None:
        """After one batch; ``loss`` holds the batch's per-sample losses (None if skipped) and
        ``seen`` the samples of the epoch trained so far. Reads ``loss`` (a device sync) only
        when something is shown."""
        self.batches += 1
        now = time.perf_counter()
        rate = seen / max(now - self.started, 1e-9)
        if self.bar is not None:
            postfix = {"img_s": f"{rate:.0f}"}
            if loss is not None:
                postfix["loss"] = f"{loss.mean().item():.3f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        elif self.lines and now - self.last_line >= self.interval_s and self.batches < self.total:
            self.last_line = now
            text = f" loss {loss.mean().item():.4f}" if loss is not None else ""
            print(
                f"  {self.label}  batch {self.batches}/{self.total}{text}  {rate:.0f} img/s",
                flush=True,
            )

    def close(self) -> None:
        """Remove the bar (the epoch's summary line follows)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
