"""A clone of the committed repository, with nothing beside it, carries the vectors its tests read."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTOR_TESTS = ["tests/audit/test_merkle.py", "tests/audit/test_canonical.py", "tests/audit/test_note_dsse.py"]


def test_vector_tests_pass_in_a_lone_clone(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("this test clones the repository: run it from a git checkout with git installed")
    clone = tmp_path / "alone" / "assay"  # nothing beside it: no sibling folders, no other checkout
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(clone)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *VECTOR_TESTS],
        cwd=clone, capture_output=True, text=True, env=env, timeout=600,
    )
    tail = done.stdout[-2000:]
    assert done.returncode == 0, tail
    summary = re.search(r"(\d+) passed", tail)
    assert summary and int(summary.group(1)) >= 200, tail
    assert "skipped" not in tail and "error" not in tail.lower(), tail
