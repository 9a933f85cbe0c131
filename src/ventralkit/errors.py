"""Errors a user can fix. The CLI prints their one-line message and exits with code 2.

Anything that is not a ``VentralkitError`` is a bug and keeps its traceback.
"""


def one_line(err: BaseException) -> str:
    """The user-facing line of an error: a DataLoader worker's exception arrives wrapped in its traceback, so
    the last non-empty line, without the ``module.Class: `` prefix the traceback puts before the message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    last = lines[-1]
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


class VentralkitError(Exception):
    """Base class: a mistake in the input, fixable by the user; ``str(err)`` is one line."""


class ModelNotFoundError(VentralkitError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(VentralkitError):
    """A checkpoint file that is missing, corrupt, or of another architecture."""


class DataError(VentralkitError):
    """A dataset folder or image that cannot be used as given."""


class ConfigError(VentralkitError):
    """A flag, option or config-file value that is out of range or inconsistent."""


class TrainingStopped(VentralkitError):
    """A run that stopped on purpose: its message says why and how to go on; ``exit_code`` is the CLI's."""

    exit_code = 3


class TrainingDiverged(TrainingStopped):
    """The loss or the gradients became non-finite (exit code 3); nothing non-finite was saved."""

    exit_code = 3


class TrainingInterrupted(TrainingStopped):
    """A signal (SIGTERM / SIGINT / SIGUSR1) asked the run to stop; ``last.pt`` was written to resume from."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention for a process ended by a signal
