"""CLI start-up stays light: ``assay --help`` imports no ML stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "pandas", "fairlearn", "evidently", "scipy", "numpy", "sqlalchemy", "dask")


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "assay", *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_help_imports_no_heavy_libraries() -> None:
    modules = imported_modules("--help")
    assert "assay.commands.cli" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "assay", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "assay, version 0.1.0"
