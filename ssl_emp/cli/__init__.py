"""The ``ssl-emp`` command line.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 75 stopped by SIGTERM
or SIGUSR1 after writing a checkpoint (continue with ``--resume``; under ``torchrun`` every
process exits 0 instead, because torchrun turns any other code into its own failure, and the
run directory's ``preempted.json`` says the run stopped), 130 interrupted, 1 anything else.
Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from ssl_emp.cli import artifacts, studies, training
from ssl_emp.cli.common import CONFIG_HELP, is_main_process, launched_by_torchrun
from ssl_emp.collectives import cleanup
from ssl_emp.config import describe_options
from ssl_emp.engine.preemption import PREEMPTED_EXIT_CODE
from ssl_emp.errors import RunPreempted, TrainingDivergedError, UserInputError

__all__ = ["attach_negative_lists", "build_parser", "dispatch", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command; each sets its own ``handler``."""
    parser = argparse.ArgumentParser(
        prog="ssl-emp",
        description="Contrastive self-supervised pretraining with memory-aware data pruning.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter
    training.add_commands(commands, formatter)
    studies.add_commands(commands, formatter)
    artifacts.add_commands(commands, formatter, CONFIG_HELP + describe_options())
    return parser


NUMBER_LIST_OPTIONS = ("--betas", "--rates", "--seeds")
NEGATIVE_NUMBER_LIST = re.compile(r"-[0-9.]+(,-?[0-9.]*)*")


def attach_negative_lists(argv: Sequence[str]) -> list[str]:
    """``--betas -1,3`` as ``--betas=-1,3``: argparse reads a value that starts with '-' (and
    is not a single number) as a flag, so a list that starts with a negative number is joined
    to its option first."""
    tokens = list(argv)
    joined: list[str] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        following = tokens[position + 1] if position + 1 < len(tokens) else ""
        if token in NUMBER_LIST_OPTIONS and NEGATIVE_NUMBER_LIST.fullmatch(following):
            joined.append(f"{token}={following}")
            position += 2
            continue
        joined.append(token)
        position += 1
    return joined


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen sub-command's handler."""
    args.handler(args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ssl-emp``; returns the exit code."""
    parser = build_parser()
    # parse_known_args lets overrides stand before and after flags (argparse alone stops
    # collecting a positional list at the first flag)
    tokens = attach_negative_lists(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(tokens)
    unknown = [token for token in extras if token.startswith("-") or "=" not in token]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extras:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides = [*args.overrides, *extras]
    main_rank = is_main_process()  # under torchrun rank 0 reports
    try:
        return dispatch(args)
    except UserInputError as error:
        if main_rank:
            print(f"ssl-emp: error: {error}", file=sys.stderr)
        return 2
    except TrainingDivergedError as error:
        if main_rank:
            print(f"ssl-emp: error: {error}", file=sys.stderr)
        return 1
    except RunPreempted as message:
        if main_rank:
            print(f"ssl-emp: {message}", file=sys.stderr)
        # torchrun reports any non-zero exit as its own failure (exit 1 and a traceback), so
        # its ranks exit 0 and preempted.json is the sign to requeue on
        return 0 if launched_by_torchrun() else PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("ssl-emp: interrupted; resume with --resume", file=sys.stderr)
        return 130
    finally:
        cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
