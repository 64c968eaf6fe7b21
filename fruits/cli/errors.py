"""Errors a CLI command raises to end with a one-line message instead of a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing error: printed as one line, process exits with ``exit_code`` (default 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
