"""``data.dedupe = true``: rows equal to an earlier row are dropped before the split, and counted.

Real data: the Adult sample with 10 % of its rows loaded twice (``datasets.with_duplicates``).
The duplicates check names the option in its fix; with it the holdout holds no copies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from assay.kernel.spec import DataSpec
from assay.storage.settings import Settings
from assay.storage.store import RunStore
from tests.checks import datasets as ds
from tests.conftest import run_assay


@pytest.fixture(scope="module")
def doubled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    frame = ds.with_duplicates(ds.adult_fair(2000))
    return ds.write(tmp_path_factory.mktemp("dedupe"), frame, ds.adult_spec("dedupe")), frame


def _run(spec: Path, home: Path, *sets: str) -> tuple[dict[str, Any], dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    result = run_assay("run", str(spec), "--json", "-q", *args, home=home)
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    return out, RunStore(Settings.resolve(home)).get_run(out["run_id"]).evidence or {}


def _repeats(frame: pd.DataFrame) -> int:
    """Rows equal to an earlier one (the table has no id column)."""
    return int(frame.duplicated().sum())


def test_the_duplicates_check_names_the_option_and_the_option_clears_it(doubled: tuple[Path, pd.DataFrame],
                                                                        tmp_path: Path) -> None:
    spec, frame = doubled
    home = tmp_path / "home"
    before, evidence = _run(spec, home)
    fingerprint = evidence["data"]["fingerprint"]
    duplicates = evidence["checks"]["leakage"]["duplicates"]
    assert duplicates["status"] in ("warn", "fail") and duplicates["value"] > 0.02
    assert "assay run --set data.dedupe=true" in duplicates["detail"]["fix"]
    assert "deduplicated" not in evidence["data"]
    assert before["status"] == "blocked"

    _, evidence = _run(spec, home, "data.dedupe=true")
    dropped = evidence["data"]["deduplicated"]["rows_dropped"]
    assert dropped == _repeats(frame) >= 200  # the 200 rows loaded twice, and any the sample already repeated
    assert evidence["data"]["rows"] == len(frame) - dropped
    assert evidence["split"]["train"]["rows"] + evidence["split"]["test"]["rows"] == len(frame) - dropped
    assert evidence["checks"]["leakage"]["duplicates"]["status"] == "pass"
    assert evidence["checks"]["leakage"]["duplicates"]["value"] == 0
    assert evidence["data"]["fingerprint"] != fingerprint  # the table trained on is the deduplicated one


def test_dedupe_left_out_keeps_the_spec_dump_and_hash() -> None:
    plain = DataSpec(source="data.csv", target="income")
    assert "dedupe" not in plain.model_dump() and DataSpec(source="data.csv", target="income", dedupe=False) == plain
    assert DataSpec(source="data.csv", target="income", dedupe=True).model_dump()["dedupe"] is True


def test_a_bad_dedupe_value_is_a_spec_error(doubled: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    spec, _ = doubled
    result = run_assay("run", str(spec), "--set", "data.dedupe=sometimes", home=tmp_path / "home")
    assert result.returncode == 2 and "data.dedupe" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "assay.db").exists()
