"""Batch schema validation: what exits 2 (names the column) and what becomes a finding."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from assay.commands.monitor_batch import conform_column, validate_batch
from assay.errors import BadInput

FEATURES = ["distance", "temp_f", "carrier", "origin_hub", "overnight"]
INFO = {
    "roles": {"distance": "numeric", "temp_f": "numeric", "carrier": "categorical", "origin_hub": "categorical",
              "overnight": "categorical", "origin": "sensitive", "is_delayed": "target"},
    "features": FEATURES,
    "target": "is_delayed",
    "dtypes": {"distance": "int64", "temp_f": "float64", "carrier": "object", "origin_hub": "object",
               "overnight": "bool", "origin": "object", "is_delayed": "int64"},
    "categories": {"carrier": ["AA", "DL", "UA"], "origin_hub": ["EWR", "JFK"], "overnight": ["False", "True"],
                   "origin": ["EWR", "JFK", "LGA"], "is_delayed": ["0", "1"]},
}


def batch(rows: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "distance": [100 + i for i in range(rows)],
        "temp_f": [30.5 + i for i in range(rows)],
        "carrier": ["AA", "DL", "UA"] * (rows // 3),
        "origin_hub": ["EWR", "JFK"] * (rows // 2),
        "overnight": [True, False] * (rows // 2),
        "origin": ["EWR", "JFK", "LGA"] * (rows // 3),
        "is_delayed": [0, 1] * (rows // 2),
        "tailnum": ["N1"] * rows,
    })


def validate(frame: pd.DataFrame, labels: bool = False) -> tuple[pd.DataFrame, dict, list]:
    return validate_batch(frame, INFO, labels=labels, source="batch.csv", run_id="RUN1")


def test_a_well_formed_batch_passes_with_extra_columns_listed() -> None:
    frame, schema, checks = validate(batch())
    assert list(frame.columns) == [*FEATURES, "origin"]  # the target only with labels
    assert schema["extra_columns"] == ["tailnum"]
    assert schema["new_categories"] == {} and schema["coerced"] == {}
    assert {c.name: c.status for c in checks} == {"new_categories": "pass", "sensitive_columns": "pass"}
    labelled, _, _ = validate(batch(), labels=True)
    assert "is_delayed" in labelled.columns


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from(FEATURES), min_size=1))
def test_any_missing_feature_exits_2_naming_every_one(missing: set[str]) -> None:
    with pytest.raises(BadInput) as err:
        validate(batch().drop(columns=sorted(missing)))
    assert err.value.exit_code == 2
    for col in missing:
        assert repr(col) in err.value.message
    assert "batch.csv" in err.value.message and "RUN1" in err.value.message


def test_a_missing_sensitive_column_is_a_finding() -> None:
    _, schema, checks = validate(batch().drop(columns=["origin"]))
    assert schema["missing_columns"] == ["origin"]
    assert next(c for c in checks if c.name == "sensitive_columns").status == "warn"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12), min_size=1,
                max_size=20), st.sampled_from(["", " ", "  "]))
def test_numbers_exported_as_text_are_read_as_numbers(values: list[float], pad: str) -> None:
    text = pd.Series([f"{pad}{v!r}{pad}" for v in values], dtype=object)
    converted, note = conform_column(text, "float64", "temp_f", "--current b.csv")
    assert converted.tolist() == values
    assert "numbers" in note


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=20),
       st.text(alphabet=st.characters(categories=["L", "P"]), min_size=1, max_size=6), st.data())
def test_a_non_number_in_a_numeric_column_exits_2(values: list[int], token: str, data: st.DataObject) -> None:
    assume(token.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity"))
    where = data.draw(st.integers(0, len(values)))
    items: list[object] = [str(v) for v in values]
    items.insert(where, token)
    with pytest.raises(BadInput) as err:
        conform_column(pd.Series(items, dtype=object), "int64", "distance", "--current b.csv")
    assert "column 'distance' has the wrong type" in err.value.message
    assert repr(token) in err.value.message


def test_booleans_and_dates_convert_or_name_the_column() -> None:
    converted, _ = conform_column(pd.Series(["true", "False", "1", "0", None]), "bool", "overnight", "w")
    assert converted.tolist() == [True, False, True, False, None]
    with pytest.raises(BadInput, match="'overnight'"):
        conform_column(pd.Series(["yes", "no"]), "bool", "overnight", "w")
    dates, _ = conform_column(pd.Series(["2013-01-01 05:00", None]), "datetime64[ns]", "when", "w")
    assert str(dates.dtype).startswith("datetime64")
    with pytest.raises(BadInput, match="'when'"):
        conform_column(pd.Series(["2013-01-01", "tomorrow-ish"]), "datetime64[ns]", "when", "w")


def test_numbers_in_a_text_category_are_compared_as_text() -> None:
    converted, note = conform_column(pd.Series([10001.0, None, 10002.0]), "object", "zip", "w")
    assert converted.tolist() == ["10001", None, "10002"] and "text categories" in note


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["AA", "DL", "UA", "ZZ", "Q9", "B6"]), min_size=6, max_size=6))
def test_new_categories_are_exactly_the_unseen_values(carriers: list[str]) -> None:
    frame = batch()
    frame["carrier"] = carriers
    _, schema, checks = validate(frame)
    unseen = {c for c in carriers if c not in INFO["categories"]["carrier"]}
    found = schema["new_categories"].get("carrier")
    if unseen:
        assert found is not None and set(found["values"]) == unseen and found["distinct"] == len(unseen)
        assert found["rows"] == sum(c in unseen for c in carriers)
        assert next(c for c in checks if c.name == "new_categories").status == "warn"
    else:
        assert found is None


def test_an_empty_batch_exits_2() -> None:
    with pytest.raises(BadInput, match="no rows"):
        validate(batch().iloc[:0])
