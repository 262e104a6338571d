"""The one family of errors a user can cause.

`cli` catches `BpcliError` and prints its message as a single line with the error's exit code; any
other exception is a bug in bpcli and is allowed to show its traceback.
"""

from __future__ import annotations


class BpcliError(Exception):
    """An error caused by the user's input or environment, with a one-line message."""

    exit_code: int = 1


class ConfigError(BpcliError):
    """A config file or `--set` override that is not valid."""

    exit_code = 2


class UsageError(BpcliError):
    """A command-line option with a value that cannot be used."""

    exit_code = 2


class DataError(BpcliError):
    """A dataset that is missing, malformed or does not match its checksum."""

    exit_code = 2


class CheckpointError(BpcliError):
    """A checkpoint that cannot be read or does not match its config."""

    exit_code = 2


class DivergenceError(BpcliError):
    """Training produced a non-finite loss or parameter."""

    exit_code = 3
