"""Exceptions that map to the CLI's exit codes (see DESIGN.md).

Raise these anywhere; the CLI turns them into one clear message and the exit code,
never a traceback. The classes are defined by the ledger (``assay.audit.errors``), the bottom
layer, which must verify without the rest of assay; these are the same classes, so an error the
ledger raises is caught, mapped and shown exactly like one raised here.
"""

from __future__ import annotations

from assay.audit.errors import AssayError, BadInput, Finding, InternalError

__all__ = ["AssayError", "BadInput", "Finding", "InternalError"]
