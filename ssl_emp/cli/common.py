"""What the ``ssl-emp`` sub-commands share: config help, run flags, list options, and who
reports under ``torchrun``."""

from __future__ import annotations

import argparse
import os

from ssl_emp.errors import UserInputError

CONFIG_HELP = (
    "overrides are dotted key=value pairs after the options, e.g. "
    "'train.epochs=5 data.subset=2000'. Config keys:\n"
)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The overrides and ``--resume`` / ``--overwrite`` of a training command."""
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in run.dir from its newest checkpoint",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run.dir and start over"
    )


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The command's overrides plus ``run.resume`` / ``run.overwrite`` from its flags."""
    flags = []
    if args.resume:
        flags.append("run.resume=true")
    if args.overwrite:
        flags.append("run.overwrite=true")
    return [*args.overrides, *flags]


def split_list(text: str, kind: type, flag: str) -> list:
    """Comma-separated values of ``kind`` (empty text gives an empty list)."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserInputError(
            f"{flag} takes comma-separated {kind.__name__} values, got '{text}'"
        ) from None


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a ``torchrun`` job (torchrun sets these)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a single process: the one that reports."""
    return int(os.environ.get("RANK", "0")) == 0
