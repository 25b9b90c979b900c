"""Fixtures for the interoperability tests: a small governed run with sensitive columns."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_assay

SPEC = """\
[project]
name = "adult-interop"
description = "income above 50K from census attributes (interoperability test)"

[data]
source = "adult.csv"
target = "income"
task = "binary"
sensitive = ["sex", "race"]
drop = ["fnlwgt", "split"]

[split]
strategy = "stratified"
test_size = 0.25
cv_folds = 2
seed = 7

[train]
candidates = ["logistic_regression"]
tuning = "none"

[evaluate]
bootstrap = 50
"""


@dataclass
class Project:
    """A spec folder with 2,000 real Adult rows; ``run()`` trains it into ``home``."""

    directory: Path
    home: Path

    @property
    def spec(self) -> Path:
        return self.directory / "assay.toml"

    def write_spec(self, extra: str = "") -> Path:
        self.spec.write_text(SPEC + extra, encoding="utf-8")
        return self.spec

    def run(self, *args: str, extra: str = "") -> dict:
        self.write_spec(extra)
        result = run_assay("run", str(self.spec), "--json", "-q", *args, home=self.home)
        assert result.returncode in (0, 1), result.stderr
        out = json.loads(result.stdout)
        out["_stderr"] = result.stderr
        return out


@pytest.fixture(scope="session")
def adult_2k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv")
    sample, _ = train_test_split(frame, train_size=2000, stratify=frame["income"], random_state=0)
    directory = tmp_path_factory.mktemp("adult_2k")
    sample.to_csv(directory / "adult.csv", index=False)
    return directory / "adult.csv"


@pytest.fixture
def project(tmp_path: Path, adult_2k: Path) -> Project:
    directory = tmp_path / "project"
    directory.mkdir()
    shutil.copy(adult_2k, directory / "adult.csv")
    return Project(directory, tmp_path / "home")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, adult_2k: Path) -> tuple[Project, dict]:
    """One finished run shared by the read-only tests (do not tamper with its home)."""
    base = tmp_path_factory.mktemp("trained")
    (base / "project").mkdir()
    shutil.copy(adult_2k, base / "project" / "adult.csv")
    proj = Project(base / "project", base / "home")
    return proj, proj.run()
