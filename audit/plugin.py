"""The ledger plugin: every run event the core announces becomes a ledger record.

The entry point names the class :class:`LedgerRecorder`; the plugin manager makes one instance
and registers it, so the ledgers it opens (one per database URL and home) live as long as that
manager, and two managers never share one. When a run ends, the ledger writes the home's
checkpoint over what the run appended (once per run, not per record); anything appended later in
the process is checkpointed at exit.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from assay.audit.ledger import Ledger, Location

hookimpl = pluggy.HookimplMarker("assay")


class LedgerRecorder:
    """The ``record``, ``run_finished`` and ``run_failed`` hooks, over the ledgers this instance opened."""

    def __init__(self) -> None:
        self._ledgers: dict[tuple[str, str], Ledger] = {}
        self._lock = threading.Lock()

    def ledger_for(self, settings: Location) -> Ledger:
        """This recorder's Ledger for ``settings`` (``.db_url``, ``.home``), opened on first use."""
        from assay.audit.ledger import Ledger

        key = (settings.db_url, str(settings.home))
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is None:
                ledger = self._ledgers[key] = Ledger.open(settings)
            return ledger

    def ledgers(self) -> list[Ledger]:
        """The ledgers this recorder has opened, in the order it opened them."""
        with self._lock:
            return list(self._ledgers.values())

    def _flush(self, run: Any) -> None:
        settings = getattr(run, "settings", None)
        if settings is None:
            return
        with self._lock:
            ledger = self._ledgers.get((settings.db_url, str(settings.home)))
        if ledger is not None:
            ledger.flush_checkpoint()

    @hookimpl
    def record(self, run: Any, event: Any) -> int | None:
        """Append ``event`` (``.kind``, ``.payload``) for ``run`` (``.run_id``, ``.settings``); returns its seq."""
        rec = self.ledger_for(run.settings).append(run.run_id, event.kind, dict(event.payload))
        return int(rec.seq)

    @hookimpl
    def run_finished(self, run: Any) -> None:
        """Checkpoint the run's records (the run_finished record is already appended)."""
        self._flush(run)

    @hookimpl
    def run_failed(self, run: Any) -> None:
        """Checkpoint the records of a failed run too: they are evidence of what happened."""
        self._flush(run)
