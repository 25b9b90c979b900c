"""Two trained runs on real data with a real shift, and an in-process ``assay`` runner.

* NYC flights 2013 (binary, time-ordered): trained on a sample of January–April; later
  months are shifted (weather, destinations, delay rate), and the model — a gradient
  boosted tree — loses ranking quality in the autumn.
* CPS → PSID earnings (regression, two survey populations): trained on CPS; PSID people
  are older, more often married and earn more, so the errors grow.

The training runs go through the real CLI in a subprocess (under ``-X importtime``, so a
test can check that ``assay run`` never imports evidently); monitor calls run in-process
so evidently's import (~4 s) is paid once per session.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Result, run_assay

FLIGHTS_SPEC = """\
[project]
name = "flights-delay"

[data]
source = "train.csv"
target = "is_delayed"
task = "binary"
sensitive = ["origin"]
drop = ["arr_delay_min", "dep_delay_min", "flight_number", "tailnum", "scheduled_departure", "month"]

[split]
strategy = "stratified"
test_size = 0.25
cv_folds = 2
seed = 42

[train]
candidates = ["hist_gradient_boosting"]
tuning = "none"

[monitor]
reference_rows = 2000
"""

EARNINGS_SPEC = """\
[project]
name = "earnings"

[data]
source = "cps_train.csv"
target = "earnings_1978"
task = "regression"
sensitive = ["black", "hispanic"]

[split]
strategy = "random"
test_size = 0.25
cv_folds = 2
seed = 42

[train]
candidates = ["ridge"]
tuning = "none"

[monitor]
reference_rows = 2000
"""


@dataclass
class TrainedRun:
    """A finished training run, its data folder and the modules ``assay run`` imported."""

    directory: Path
    home: Path
    run_id: str
    result: dict[str, Any]
    imported: set[str] = field(default_factory=set)

    def batch(self, name: str) -> str:
        return str(self.directory / name)

    def result_evidence(self) -> dict[str, Any]:
        """The training run's evidence document, as stored."""
        from assay.storage.settings import Settings
        from assay.storage.store import RunStore

        evidence = RunStore(Settings.resolve(self.home)).get_run(self.run_id).evidence
        assert evidence is not None
        return evidence


def assay(*args: str, home: Path) -> Result:
    """Run the ``assay`` command line in this process (as ``python -m assay`` would)."""
    from assay.commands.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["--home", str(home), *args])
        except SystemExit as exc:
            code = exc.code
    return Result(code if isinstance(code, int) else (0 if code is None else 1), out.getvalue(), err.getvalue())


def _train(directory: Path, home: Path) -> TrainedRun:
    proc = run_assay("run", str(directory / "assay.toml"), "--json", "-q", home=home,
                     env={"OMP_NUM_THREADS": "1", "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    result = json.loads(proc.stdout)
    return TrainedRun(directory, home, result["run_id"], result, imported)


@pytest.fixture(scope="session")
def flights(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    import pandas as pd

    frame = pd.read_csv(EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv")
    directory = tmp_path_factory.mktemp("flights")
    early = frame[frame["month"] <= 4]
    train = early.sample(3000, random_state=1)
    train.to_csv(directory / "train.csv", index=False)
    # A random split of the same period (rows the model never saw) and later periods.
    early.drop(train.index).sample(1500, random_state=2).to_csv(directory / "same_period.csv", index=False)
    frame[frame["month"].isin([7, 8])].sample(1500, random_state=3).to_csv(directory / "summer.csv", index=False)
    frame[frame["month"] >= 9].sample(1500, random_state=3).to_csv(directory / "autumn.csv", index=False)
    (directory / "assay.toml").write_text(FLIGHTS_SPEC, encoding="utf-8")
    return _train(directory, tmp_path_factory.mktemp("flights_home"))


@pytest.fixture(scope="session")
def earnings(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    import pandas as pd

    cps = pd.read_csv(EXAMPLES / "earnings_cps_psid" / "data" / "source.csv")
    psid = pd.read_csv(EXAMPLES / "earnings_cps_psid" / "data" / "target.csv")
    directory = tmp_path_factory.mktemp("earnings")
    train = cps.sample(3000, random_state=0)
    train.to_csv(directory / "cps_train.csv", index=False)
    cps.drop(train.index).sample(1500, random_state=1).to_csv(directory / "cps_batch.csv", index=False)
    psid.sample(1500, random_state=1).to_csv(directory / "psid_batch.csv", index=False)
    (directory / "assay.toml").write_text(EARNINGS_SPEC, encoding="utf-8")
    return _train(directory, tmp_path_factory.mktemp("earnings_home"))


def monitor_json(run: TrainedRun, batch: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """``assay monitor RUN --current BATCH --format json``: the exit code and the document."""
    result = assay("monitor", run.run_id, "--current", run.batch(batch), "--format", "json", *extra, home=run.home)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, result.json


@pytest.fixture(scope="session")
def summer(flights: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    """July–August against the January–April model, with evidently's HTML report written out."""
    html = tmp_path_factory.mktemp("summer") / "report.html"
    code, doc = monitor_json(flights, "summer.csv", "--html", str(html))
    return code, doc, html


@pytest.fixture(scope="session")
def same_period(flights: TrainedRun) -> tuple[int, dict[str, Any]]:
    """Rows of January–April the model never saw."""
    return monitor_json(flights, "same_period.csv")


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """Small batches score faster on one thread than with OpenMP spinning on a shared 2-core box."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
