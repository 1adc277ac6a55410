"""Errors the workbench reports to people as one plain sentence.

Every module raises a subclass of `WorkbenchError` for problems a user can fix
(a missing file, a bad value); the CLI and the dashboard print its message and
carry on. Anything else is a bug and keeps its traceback in logs.
"""


class WorkbenchError(Exception):
    """A problem with input or environment, explained in the message."""


class DataError(WorkbenchError):
    """The dataset is missing, corrupt or truncated."""


class ConfigError(WorkbenchError):
    """An impossible configuration value (negative learning rate, 0 epochs...)."""


class CheckpointError(WorkbenchError):
    """A checkpoint that cannot be read or rebuilt."""


class ImageError(WorkbenchError):
    """An uploaded image that cannot be turned into a model input."""
