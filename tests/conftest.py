"""Shared fixtures: the project root, real example data, a CLI runner in a subprocess and a browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing of its own on the network: a request the page did not make would spoil the
# tests' "no request leaves the page's origin" assertions.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_assay(*args: str, home: Path | None = None, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 600) -> Result:
    """Run the real ``assay`` command line in a fresh interpreter."""
    cmd = [sys.executable, "-m", "assay"]
    if home is not None:
        cmd += ["--home", str(home)]
    full_env = {**os.environ, "ASSAY_DB_URL": "", **(env or {})}
    if not full_env["ASSAY_DB_URL"]:
        full_env.pop("ASSAY_DB_URL")
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def assay_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="session")
def adult_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified 4,000-row sample of the real Adult data with a spec beside it."""
    import pandas as pd

    frame = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv")
    from sklearn.model_selection import train_test_split

    sample, _ = train_test_split(frame, train_size=4000, stratify=frame["income"], random_state=0)
    directory = tmp_path_factory.mktemp("adult_small")
    sample.sample(frac=1.0, random_state=1).to_csv(directory / "adult.csv", index=False)
    (directory / "assay.toml").write_text(ADULT_SMALL_SPEC, encoding="utf-8")
    return directory


ADULT_SMALL_SPEC = """\
[project]
name = "adult-small"

[data]
source = "adult.csv"
target = "income"
task = "binary"
sensitive = ["sex", "race"]
drop = ["fnlwgt", "split"]

[split]
strategy = "stratified"
test_size = 0.25
cv_folds = 3
seed = 42

[train]
candidates = ["logistic_regression", "hist_gradient_boosting"]
tuning = "random"
budget = 2

[gate]
policy = "assay:standard"
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (no browser is downloaded), one per test module.

    Each test opens its own context and page on it and asserts what that page requested.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
