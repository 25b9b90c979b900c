"""assay: train machine-learning models behind governance gates.

The core package holds the hook specifications, the plugin manager, the run spec, the
runner, the run store and the command line. Bundled plugins live in ``assay.plugins``,
the policy language in ``assay.policies`` and the audit ledger in ``assay.audit``.

What a plugin author needs is importable from here::

    from assay import hookimpl, Trainer, Tuner, SearchRequest, Check, Evidence, Dataset, Splits

together with :mod:`assay.kit` (metrics, search and pipeline helpers) and
:mod:`assay.testing` (conformance checks and the check harness). These names are the
public surface: internals may move, these stay. They load on first use, so ``import
assay`` (and with it ``assay --help``) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assay.errors import AssayError, BadInput, Finding, InternalError
    from assay.kernel.hookspecs import hookimpl
    from assay.kernel.types import (
        Baseline,
        Check,
        Dataset,
        Event,
        EventKind,
        Evidence,
        FittedModel,
        MonitorContext,
        Outcome,
        Predictions,
        Role,
        RuleOutcome,
        Run,
        SampleWeights,
        Scores,
        SearchRequest,
        Splits,
        StageSummary,
        Status,
        Task,
        Trainer,
        Tuner,
        Verdict,
    )

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "hookimpl": "assay.kernel.hookspecs",
    **dict.fromkeys(("AssayError", "BadInput", "Finding", "InternalError"), "assay.errors"),
    **dict.fromkeys(("Baseline", "Check", "Dataset", "Event", "EventKind", "Evidence", "FittedModel",
                     "MonitorContext", "Outcome", "Predictions", "Role", "RuleOutcome", "Run", "SampleWeights",
                     "Scores", "SearchRequest", "Splits", "StageSummary", "Status", "Task", "Trainer", "Tuner",
                     "Verdict"), "assay.kernel.types"),
}

__all__ = [
    "AssayError",
    "BadInput",
    "Baseline",
    "Check",
    "Dataset",
    "Event",
    "EventKind",
    "Evidence",
    "Finding",
    "FittedModel",
    "InternalError",
    "MonitorContext",
    "Outcome",
    "Predictions",
    "Role",
    "RuleOutcome",
    "Run",
    "SampleWeights",
    "Scores",
    "SearchRequest",
    "Splits",
    "StageSummary",
    "Status",
    "Task",
    "Trainer",
    "Tuner",
    "Verdict",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'assay' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
