"""Monitor results are ledger records linked to the training run, and the ledger still verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.conftest import TrainedRun, assay

pytest.importorskip("assay.audit.plugin", reason="the ledger plugin (assay.audit.plugin) has not landed yet")


def test_monitor_records_are_linked_to_the_run_and_verify(flights: TrainedRun,
                                                          summer: tuple[int, dict[str, Any], Path]) -> None:
    monitor_id = summer[1]["monitor_id"]
    log = assay("audit", "log", "--run", flights.run_id, "--json", home=flights.home)
    assert log.returncode == 0, log.stderr
    assert '"monitor"' in log.stdout and monitor_id in log.stdout
    verify = assay("audit", "verify", home=flights.home)
    assert verify.returncode == 0, verify.stdout + verify.stderr
