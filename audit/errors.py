"""The exceptions the ledger raises, each with a user-facing message and an exit code (see DESIGN.md).

They are defined here, in the bottom layer, so that the ledger and its verifier stand on their
own; ``assay.errors`` is where the rest of assay takes them from (the very same classes), and the
CLI turns each into one clear message and its exit code, never a traceback.
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
