"""Data checks on real data, with and without planted data problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.kernel.types import Check, Evidence
from assay.kit import guarded
from assay.plugins import datachecks
from assay.testing import by_name, prepare
from tests.checks import datasets as ds


def _checks(spec_path: Path, overrides: list[str] | None = None) -> dict[str, Check]:
    p = prepare(spec_path, overrides)
    return by_name([*datachecks.validate_data(run=p.run, dataset=p.dataset),
                    *datachecks.check_split(run=p.run, splits=p.splits)])


@pytest.fixture(scope="module")
def fair() -> pd.DataFrame:
    return ds.adult_fair(2000)


def test_clean_adult_passes_everything(adult_small: Path) -> None:
    checks = _checks(adult_small / "assay.toml")
    assert {n: c.status for n, c in checks.items()} == {
        "schema": "pass", "missing_values": "pass", "constant_columns": "pass", "label_balance": "pass",
        "unseen_categories": "pass", "test_labels": "pass"}
    assert checks["missing_values"].detail["by_column"]["occupation"] > 0  # measured, just under the bar


def test_the_sensitive_list_is_recorded_for_the_gate(adult_small: Path) -> None:
    p = prepare(adult_small / "assay.toml")
    pieces = [r for r in datachecks.validate_data(run=p.run, dataset=p.dataset) if isinstance(r, Evidence)]
    assert pieces == [Evidence("data", {"sensitive": ["sex", "race"]})]


def test_flights_gusts_are_mostly_missing(tmp_path: Path) -> None:
    checks = _checks(ds.write(tmp_path, ds.flights(3000), ds.flights_spec("f", "time")))
    missing = checks["missing_values"]
    assert missing.status == "warn" and missing.detail["over_threshold"] == ["wind_gust_mph"]
    assert "wind_gust_mph" in missing.message


def test_an_empty_feature_is_high_severity(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = fair.assign(bonus=np.nan)
    check = _checks(ds.write(tmp_path, frame, ds.adult_spec("m", extra_data='roles = { bonus = "numeric" }\n')))
    assert check["missing_values"].status == "fail" and check["missing_values"].detail["all_missing"] == ["bonus"]


def test_constant_columns_are_named(tmp_path: Path, fair: pd.DataFrame) -> None:
    checks = _checks(ds.write(tmp_path, fair.assign(survey_year=1994), ds.adult_spec("c")))
    assert checks["constant_columns"].status == "warn" and checks["constant_columns"].detail["columns"] == ["survey_year"]


def test_label_imbalance(tmp_path: Path, fair: pd.DataFrame) -> None:
    rich = fair[fair["income"] == ">50K"]
    poor = fair[fair["income"] == "<=50K"]
    rare = pd.concat([poor, rich.head(40)]).sample(frac=1.0, random_state=0)
    checks = _checks(ds.write(tmp_path / "w", rare, ds.adult_spec("b")))
    assert checks["label_balance"].status == "warn" and checks["label_balance"].detail["minority_class"] == ">50K"
    rarer = pd.concat([poor, rich.head(8)]).sample(frac=1.0, random_state=0)
    assert _checks(ds.write(tmp_path / "f", rarer, ds.adult_spec("b")))["label_balance"].status == "fail"


def test_numbers_stored_as_text_are_a_soft_schema_problem(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = fair.copy()
    frame["hours_text"] = frame["hours_per_week"].astype(str)
    frame.loc[frame.index[:20], "hours_text"] = "varies"
    check = _checks(ds.write(tmp_path, frame, ds.adult_spec("s")))["schema"]
    assert check.status == "warn" and "hours_text" in check.detail["mixed_type_columns"]
    assert "varies" in check.message


def test_a_sensitive_column_used_as_a_feature_is_high_severity(tmp_path: Path, fair: pd.DataFrame) -> None:
    spec = ds.adult_spec("s", extra_data='roles = { sex = "categorical" }\n')
    check = _checks(ds.write(tmp_path, fair, spec))["schema"]
    assert check.status == "fail" and any("sensitive column 'sex'" in p for p in check.detail["high_severity"])


def test_categories_first_seen_in_the_holdout(tmp_path: Path) -> None:
    flights = ds.flights(3000)
    late = flights.index[-400:]
    flights.loc[late, "carrier"] = flights.loc[late, "carrier"].replace({"UA": "UA2", "B6": "B6X"})
    checks = _checks(ds.write(tmp_path, flights, ds.flights_spec("f", "time")))
    unseen = checks["unseen_categories"]
    assert unseen.status == "fail" and unseen.detail["over_threshold"][0] == "carrier"
    assert set(unseen.detail["columns"]["carrier"]["values"]) >= {"UA2", "B6X"}


def test_a_check_that_raises_becomes_an_error_check() -> None:
    def broken() -> list[Check]:
        raise KeyError("no such column")

    (check,) = guarded("data", "schema", broken)
    assert isinstance(check, Check) and check.status == "error" and check.value is None
    assert "KeyError" in check.detail["error"] and "test_datachecks.py" in check.detail["at"]


_CELLS = st.one_of(st.none(), st.just(float("nan")), st.sampled_from([0.0, -0.0, 1.0, 1, 2, True]),
                   st.sampled_from(["a", "A", " a", ""]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_CELLS, max_size=8), st.sampled_from(["object", "infer"]))
def test_a_constant_column_is_what_nunique_calls_constant(cells: list[object], dtype: str) -> None:
    values = pd.Series(cells, dtype=object) if dtype == "object" else pd.Series(cells)
    assert datachecks._constant(values) == (values.nunique(dropna=True) <= 1)
