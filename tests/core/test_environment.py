"""The environment a run records: the fast package listing equals importlib.metadata's own answer."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from assay.kernel.environment import _name_and_version, capture, installed_packages


def _by_importlib() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name.lower(), dist.version)
    return dict(sorted(found.items()))


def test_installed_packages_equal_what_importlib_metadata_parses() -> None:
    fast = installed_packages()
    assert fast == _by_importlib()
    assert {"scikit-learn", "numpy", "pandas", "assay"} <= set(fast)


class _Dist(metadata.Distribution):
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self, filename: str) -> str | None:
        return self.text if filename == "METADATA" else None

    def locate_file(self, path: str | Path) -> Path:  # pragma: no cover - never asked
        raise NotImplementedError


header_value = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                       max_size=30).map(str.strip).filter(bool)


@given(name=header_value, version=header_value, extra=st.lists(st.tuples(
    st.sampled_from(["Summary", "Home-page", "Author", "License", "Requires-Dist", "Classifier"]), header_value),
    max_size=6), body=st.text(max_size=200))
def test_the_header_reader_agrees_with_the_email_parser(name: str, version: str, extra: list[tuple[str, str]],
                                                        body: str) -> None:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"{k}: {v}" for k, v in extra)]
    dist = _Dist("\n".join(lines) + "\n\n" + body)
    assert _name_and_version(dist) == (dist.metadata["Name"], dist.version)


def test_capture_records_the_same_sections(tmp_path: Path) -> None:
    env = capture(tmp_path)
    assert set(env) == {"python", "implementation", "platform", "machine", "executable", "cpu_count", "packages",
                        "numeric_libraries", "variables", "git"}
    assert env["packages"] == _by_importlib()
    assert env["git"] == {"commit": None, "dirty": None}  # not a git work tree


def test_openmp_threads_wait_passively_only_on_a_busy_machine(monkeypatch: Any) -> None:
    from assay.kernel.environment import prefer_passive_openmp

    cores = os.cpu_count() or 1
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 0.5, 0.0, 0.0))
    prefer_passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(os, "getloadavg", lambda: (cores - 0.5, 0.0, 0.0))
    prefer_passive_openmp()  # idle: spinning is what makes the threads fast
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 5.0, 0.0, 0.0))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prefer_passive_openmp()  # the user's value stands
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_cli_sets_it_before_scikit_learn_loads(tmp_path: Path) -> None:
    """On a busy machine the process that ran a command has it set, and scikit-learn was not loaded before."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    probe = ("import os, sys; os.getloadavg = lambda: (1000.0, 0.0, 0.0)\n"
             "from assay.commands.cli import main; sys.argv = ['assay', '--version'];\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(os.environ.get('OMP_WAIT_POLICY'), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split()[-2:] == ["PASSIVE", "False"], out.stderr
