"""The ``record`` hook implementation: every run event the core announces becomes a ledger record.

One ``Ledger`` is opened per (database URL, home) and cached for the life of the process. When a run
ends, the ledger writes the home's checkpoint over what the run appended (once per run, not per
record); anything appended later in the process is checkpointed at exit.
"""

from __future__ import annotations

import threading
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("assay")

_ledgers: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def ledger_for(settings: Any) -> Any:
    """The cached Ledger for these settings (opened on first use)."""
    from assay.audit.ledger import Ledger

    key = (settings.db_url, str(settings.home))
    with _lock:
        ledger = _ledgers.get(key)
        if ledger is None:
            ledger = _ledgers[key] = Ledger.open(settings)
        return ledger


def _flush(run: Any) -> None:
    settings = getattr(run, "settings", None)
    ledger = _ledgers.get((settings.db_url, str(settings.home))) if settings is not None else None
    if ledger is not None:
        ledger.flush_checkpoint()


@hookimpl
def record(run: Any, event: Any) -> int | None:
    """Append ``event`` (``.kind``, ``.payload``) for ``run`` (``.run_id``, ``.settings``); returns its seq."""
    rec = ledger_for(run.settings).append(run.run_id, event.kind, dict(event.payload))
    return int(rec.seq)


@hookimpl
def run_finished(run: Any) -> None:
    """Checkpoint the run's records (the run_finished record is already appended)."""
    _flush(run)


@hookimpl
def run_failed(run: Any) -> None:
    """Checkpoint the records of a failed run too: they are evidence of what happened."""
    _flush(run)
