"""Errors whose message is meant for the user: one line naming the file and what is wrong.

The command line prints ``str(error)`` and exits non-zero; the window shows it in a dialog.
Neither shows a traceback for these.
"""

from __future__ import annotations

from os import PathLike


class PickerError(Exception):
    """Base class of every error picker-gui reports to a user as a plain message."""


class MicrographError(PickerError):
    """A micrograph file cannot be read or used."""

    def __init__(self, path: str | PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CoordinateFormatError(PickerError):
    """A coordinate file is malformed, or a table cannot be written in the asked format."""

    def __init__(
        self,
        path: str | PathLike,
        problem: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


class UsageError(PickerError):
    """Options that cannot work together, or a value out of range.

    ``option`` names the setting in the command line's terms (``"--diameter-a"``); the
    command line puts it in front of the message, the window shows the message alone (its
    own label is beside the control).
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        self.message = message
        self.option = option
        super().__init__(f"{option}: {message}" if option else message)
