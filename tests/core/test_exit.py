"""A command's process ends without the garbage collector walking every object at shutdown.

``main`` freezes the collector's objects at exit, after the exit handlers the command registered
(the ledger's checkpoint among them): exit codes, output and those handlers are as before.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after main's handlers
from assay.commands.cli import main
main(sys.argv[1:])
"""


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)


def test_the_collector_is_frozen_at_exit_and_the_exit_code_kept(tmp_path: Path) -> None:
    ok = _probe("--version")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == "frozen at exit: True"
    bad = _probe("--home", str(tmp_path / "home"), "run", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2, bad.stderr
    assert "missing.toml" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout.splitlines()[-1] == "frozen at exit: True"


SPEC = """\
[project]
name = "exit-probe"

[data]
source = "cancer.csv"
target = "target"

[train]
candidates = ["logistic_regression"]
tuning = "none"
"""


def test_a_run_still_checkpoints_its_ledger_at_exit(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.to_csv(tmp_path / "cancer.csv", index=False)
    (tmp_path / "assay.toml").write_text(SPEC, encoding="utf-8")
    home = tmp_path / "home"
    out = _probe("--home", str(home), "run", str(tmp_path / "assay.toml"), "--json", "-q")
    assert out.returncode in (0, 1), out.stderr
    assert out.stdout.splitlines()[-1] == "frozen at exit: True"
    assert '"run_id"' in out.stdout.splitlines()[0]  # the run's JSON was written before the process ended
    notes = list((home / "checkpoints").glob("*.note"))
    assert len(notes) == 1 and notes[0].read_text(encoding="utf-8").strip()
    verify = subprocess.run([sys.executable, "-m", "assay", "--home", str(home), "audit", "verify"],
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
