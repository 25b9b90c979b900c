"""evidently (~4 s to import) loads only when a batch is monitored: never for ``assay run`` or help."""

from __future__ import annotations

import subprocess
import sys

from tests.monitoring.conftest import TrainedRun


def test_assay_run_uses_the_monitoring_plugin_without_importing_evidently(flights: TrainedRun) -> None:
    # the training subprocess ran under -X importtime (PYTHONPROFILEIMPORTTIME); plugins load through
    # importlib (not logged by -X importtime), but everything they import is
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    evidence = RunStore(Settings.resolve(flights.home)).get_run(flights.run_id).evidence
    assert "reference" in evidence["monitoring"]  # the plugin's evaluate hook ran in that process
    assert "sklearn" in flights.imported and "pyarrow" in flights.imported
    assert not {m for m in flights.imported if m.split(".")[0] == "evidently"}


def test_monitor_help_imports_neither_evidently_nor_pandas() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "assay", "monitor", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "history" in proc.stdout
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "click" in modules
    assert not {m for m in modules if m.split(".")[0] in ("evidently", "pandas", "sklearn", "fairlearn")}
