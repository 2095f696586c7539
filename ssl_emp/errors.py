"""Error types: bad user input (and a run directory another process holds), a diverged run,
a non-finite loss.

The CLI turns a ``UserInputError`` into a one-line message on stderr and exit code 2, so every
check on user input raises this type with a message that names the problem and the fix.
"""


class UserInputError(Exception):
    """Bad input from the user (config, data, run directory); reported without a traceback."""


class RunDirectoryBusyError(UserInputError):
    """Another process holds the run directory's lock (it trains or evaluates the run).

    A shared sweep (``ssl-emp sweep --share``) skips such a run instead of stopping.
    """


class TrainingDivergedError(Exception):
    """The loss became non-finite; the run stopped and its last good checkpoint is intact."""


class NonFiniteLossError(ArithmeticError):
    """A per-sample loss handed to the pruner was NaN or infinite; nothing was recorded.

    The trainer turns it into :class:`TrainingDivergedError` or a skipped step
    (``train.on_nonfinite``).
    """


class RunPreempted(Exception):  # noqa: N818 - a stop, not an error
    """The run was asked to stop (SIGTERM, SIGUSR1) and wrote a checkpoint to resume from."""


class RanksDisagreeError(RuntimeError):
    """The processes of a ``torchrun`` job selected different samples for an epoch."""
