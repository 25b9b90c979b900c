"""Exceptions that map to the CLI's exit codes (see DESIGN.md).

Raise these anywhere; the CLI turns them into one clear message and the exit code,
never a traceback.
"""

from __future__ import annotations


class AssayError(Exception):
    """Base class: an error with a user-facing message and an exit code."""

    exit_code = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Finding(AssayError):
    """A finding (exit 1): gate blocked, tampering found, drift beyond policy, replay mismatch."""

    exit_code = 1


class BadInput(AssayError):
    """Bad input (exit 2): unreadable or invalid spec, policy, data or arguments.

    The message names the file, the field and how to fix it.
    """

    exit_code = 2


class InternalError(AssayError):
    """Internal or plugin error (exit 3); runs are recorded as errored and gates fail closed."""

    exit_code = 3
