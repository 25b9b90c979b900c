"""Fixtures for training tests: a 3,000-row sample of the real Adult data, its spec, and runs of it.

Runs go through the real CLI in a fresh interpreter. OpenMP is pinned to one thread and the
search to one process: the 2-core machine is shared, and oversubscribed OpenMP spin-waits
and worker start-up make small fits crawl. (Dask runs still use every cluster worker.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Result, run_assay

ONE_THREAD = {"OMP_NUM_THREADS": "1"}

SPEC = """\
[project]
name = "adult-3k"

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
seed = 11

[train]
candidates = ["logistic_regression", "hist_gradient_boosting"]
tuning = "random"
budget = 3
n_jobs = 1                # the 2 shared cores are busy: worker processes would only add start-up cost

[evaluate]
baseline = "dummy"
"""


def assay(*args: str, home: Path, env: dict[str, str] | None = None) -> Result:
    return run_assay(*args, home=home, env={**ONE_THREAD, **(env or {})})


def assay_run(spec_dir: Path, home: Path, *sets: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``assay run SPEC --json -q`` with ``--set`` overrides; the run's JSON (exit 0 or 1: passed or blocked)."""
    args = [a for s in sets for a in ("--set", s)]
    result = assay("run", str(spec_dir / "assay.toml"), "--json", "-q", *args, home=home, env=env)
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    assert out["status"] in ("passed", "blocked"), out.get("error") or result.stderr
    return out


@pytest.fixture(scope="session", autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """The same for fits in this process (the conformance kit, the tuner tests)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield


@pytest.fixture(scope="session")
def adult_3k_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 rows of the real Adult census data (stratified on income)."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv")
    sample, _ = train_test_split(frame, train_size=3000, stratify=frame["income"], random_state=3)
    path = tmp_path_factory.mktemp("adult_3k_data") / "adult.csv"
    sample.to_csv(path, index=False)
    return path


def project(directory: Path, csv: Path, spec: str = SPEC) -> Path:
    """A project directory with its own copy of the data and ``assay.toml``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(csv, directory / "adult.csv")
    (directory / "assay.toml").write_text(spec, encoding="utf-8")
    return directory


@dataclass
class Trained:
    """A finished run of the Adult sample, shared by the tests that only read it."""

    directory: Path
    home: Path
    result: dict[str, Any]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, adult_3k_csv: Path) -> Trained:
    base = tmp_path_factory.mktemp("trained")
    directory = project(base / "project", adult_3k_csv)
    home = base / "home"
    return Trained(directory, home, assay_run(directory, home))


def install_plugin(site: Path, name: str, source: str) -> dict[str, str]:
    """Install ``source`` as a real distribution with an ``assay`` entry point; the env to see it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(source, encoding="utf-8")
    dist = site / f"{name}-0.1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[assay]\n{name} = {name}\n", encoding="utf-8")
    return {"PYTHONPATH": str(site)}
