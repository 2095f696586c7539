"""Epoch checkpoints: written atomically, the last two kept, corrupt ones named clearly.

Names count epochs from 1, as every message does: ``epoch_0003.pt`` is written when epoch 3
ends, ``epoch_0004_step_00000123.pt`` inside epoch 4 after optimizer step 123. They are
ordered by training time (a mid-epoch checkpoint of epoch 4 before the end of epoch 4).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ssl_emp.errors import UserInputError
from ssl_emp.io import WriteError, atomic_write

CHECKPOINT_FORMAT = 1
KEEP_LAST = 2


NAME = re.compile(r"epoch_(\d+)(?:_step_(\d+))?\.pt")


def checkpoint_path(directory: Path, epoch: int, step: int | None = None) -> Path:
    """Path of the checkpoint after ``epoch`` completed epochs, or, with ``step``, inside the
    next epoch after ``step`` optimizer steps; named with the 1-based epoch it ends (or is
    in)."""
    if step is None:
        return directory / f"epoch_{epoch:04d}.pt"
    return directory / f"epoch_{epoch + 1:04d}_step_{step:08d}.pt"


def _training_order(path: Path) -> tuple[int, int, int]:
    """(epoch, 0 inside it / 1 at its end, step): the order checkpoints were written in."""
    match = NAME.fullmatch(path.name)
    assert match is not None
    epoch, step = match.groups()
    return (int(epoch), 0 if step is not None else 1, int(step or 0))


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    found = [path for path in directory.glob("epoch_*.pt") if NAME.fullmatch(path.name)]
    return sorted(found, key=_training_order)


def save_checkpoint(
    directory: Path, epoch: int, payload: dict[str, Any], step: int | None = None
) -> Path:
    """Atomically write ``payload`` (see :func:`checkpoint_path`) and keep only the last two."""
    path = checkpoint_path(directory, epoch, step)
    try:
        atomic_write(
            path, lambda stream: torch.save({"format": CHECKPOINT_FORMAT, **payload}, stream)
        )
    except WriteError as problem:
        hint = "; --resume then continues from the last checkpoint that was written"
        raise WriteError(path, problem.error, hint=hint) from None
    for old in list_checkpoints(directory)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, previous: Path | None = None) -> dict[str, Any]:
    """Load one checkpoint; a damaged file gives a one-line error naming the previous good one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        fallback = f"; the previous checkpoint is {previous}" if previous else ""
        raise UserInputError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}){fallback}; "
            "delete the damaged file to resume from an earlier one"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserInputError(f"{path} is not an ssl_emp checkpoint; remove it from {path.parent}")
    return payload


def load_latest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads, skipping (and reporting) damaged newer ones."""
    candidates = list_checkpoints(directory)
    for position in range(len(candidates) - 1, -1, -1):
        path = candidates[position]
        previous = candidates[position - 1] if position > 0 else None
        try:
            return path, load_checkpoint(path, previous=previous)
        except UserInputError as error:
            if previous is None:
                raise
            print(f"warning: {error}; resuming from {previous}")
    return None
