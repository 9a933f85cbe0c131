"""Errors a user can fix. The CLI prints their one-line message and exits with code 2.

Anything that is not a ``VentralkitError`` is a bug and keeps its traceback.
"""


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
