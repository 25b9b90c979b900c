"""Data preparation: loaders (CSV, Parquet, SQLite, PostgreSQL), roles, fingerprints, summaries.

Real example data throughout; PostgreSQL tests use a throw-away schema on the local server.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.errors import BadInput
from assay.kernel.dataset import fingerprint_frame, summarize
from assay.kit import prepare_frame, read_table
from assay.plugins.loaders import load_table
from tests.conftest import EXAMPLES
from tests.tasks.conftest import make_spec

FLIGHTS = EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv"
HPC = EXAMPLES / "hpc_jobs" / "data" / "hpc_jobs.csv"
REVIEWS = EXAMPLES / "fine_food_reviews" / "data" / "reviews.csv"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _flights_spec(**data: object) -> object:
    return make_spec({"source": "flights.csv", "target": "is_delayed", "time_column": "scheduled_departure",
                      "drop": ["arr_delay_min"], **data})


@pytest.fixture(scope="module")
def flights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 real flights as CSV, as Parquet, and as a SQLite table."""
    directory = tmp_path_factory.mktemp("flights")
    frame = pd.read_csv(FLIGHTS).sample(3000, random_state=0).sort_values("scheduled_departure")
    frame.to_csv(directory / "flights.csv", index=False)
    parsed = frame.assign(scheduled_departure=pd.to_datetime(frame["scheduled_departure"]))
    parsed.to_parquet(directory / "flights.parquet", index=False)
    with sqlite3.connect(directory / "flights.db") as conn:
        frame.to_sql("flights", conn, index=False)
    return directory


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_ignores_file_format_and_column_order(flights_dir: Path) -> None:
    spec = _flights_spec()
    from_csv = load_table(spec, "flights.csv", str(flights_dir))
    from_parquet = load_table(spec, "flights.parquet", str(flights_dir))
    shuffled = pd.read_csv(flights_dir / "flights.csv")
    shuffled = shuffled[list(np.random.default_rng(7).permutation(shuffled.columns))]
    from_shuffled = prepare_frame(shuffled, spec, "shuffled")  # type: ignore[arg-type]
    assert from_csv.fingerprint == from_parquet.fingerprint == from_shuffled.fingerprint
    assert from_csv.fingerprint.startswith("sha256:") and len(from_csv.fingerprint) == 71


def test_fingerprint_changes_with_any_single_cell(flights_dir: Path) -> None:
    frame = pd.read_csv(flights_dir / "flights.csv")
    before = fingerprint_frame(frame)
    for column in frame.columns:
        row = int(frame[column].first_valid_index())  # type: ignore[arg-type]
        changed = frame.copy()
        value = changed.at[row, column]
        changed.at[row, column] = value + 1 if isinstance(value, (int, float, np.number)) else f"{value}x"
        assert fingerprint_frame(changed) != before, column
    one_missing = frame.copy()
    one_missing.loc[5, "carrier"] = None
    assert fingerprint_frame(one_missing) != before


def test_fingerprint_canonical_values() -> None:
    fp = fingerprint_frame
    assert fp(pd.DataFrame({"x": [0.0, 1.0]})) == fp(pd.DataFrame({"x": [-0.0, 1.0]}))
    assert fp(pd.DataFrame({"x": [1, 2]})) == fp(pd.DataFrame({"x": [1.0, 2.0]}))
    assert fp(pd.DataFrame({"s": ["a", None]})) == fp(pd.DataFrame({"s": ["a", np.nan]}))
    assert fp(pd.DataFrame({"s": ["a", "b"]})) == fp(pd.DataFrame({"s": pd.Categorical(["a", "b"])}))
    distinct = [["a\x00b", ""], ["a", "b\x00"], ["a", None], ["a", ""], ["a", "nan"], ["\x01", "x"],
                ["\x01\x02", "x"], ["\x00", "x"]]
    assert len({fp(pd.DataFrame({"s": v})) for v in distinct}) == len(distinct)
    assert fp(pd.DataFrame({"a": [1.0], "b": [2.0]})) != fp(pd.DataFrame({"a": [2.0], "b": [1.0]}))


texts = st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(texts, texts)
def test_text_fingerprint_is_injective(a: list[str | None], b: list[str | None]) -> None:
    same = len(a) == len(b) and all((x is None and y is None) or x == y for x, y in zip(a, b, strict=False))
    fa, fb = fingerprint_frame(pd.DataFrame({"s": a})), fingerprint_frame(pd.DataFrame({"s": b}))
    assert (fa == fb) == same


def test_fingerprint_threads_only_speed_it_up() -> None:
    from assay.kernel import dataset

    rng = np.random.default_rng(0)
    n = 120_000
    frame = pd.DataFrame({"x": rng.normal(size=n), "s": rng.choice(["a", "bb", None], n),
                          "t": rng.choice(["q", "r"], n)})
    threaded = fingerprint_frame(frame)  # 240k text cells: the worker thread path
    limit = dataset._THREAD_MIN_CELLS
    dataset._THREAD_MIN_CELLS = 10**12
    try:
        assert fingerprint_frame(frame) == threaded
    finally:
        dataset._THREAD_MIN_CELLS = limit


# --------------------------------------------------------------------------- loaders


def test_sqlite_query_gives_the_csv_table(flights_dir: Path) -> None:
    spec = _flights_spec(source="sqlite:///flights.db",
                         query="SELECT * FROM flights ORDER BY scheduled_departure")
    from_sql = load_table(spec, "sqlite:///flights.db", str(flights_dir))  # relative to the spec's directory
    from_csv = load_table(_flights_spec(), "flights.csv", str(flights_dir))
    assert from_sql.rows == 3000
    assert from_sql.roles == from_csv.roles
    assert from_sql.fingerprint == from_csv.fingerprint


def test_sql_errors_are_bad_input(flights_dir: Path) -> None:
    with pytest.raises(BadInput, match=r"needs data\.query"):
        read_table("sqlite:///flights.db", str(flights_dir))
    with pytest.raises(BadInput, match=r"data\.query failed"):
        read_table("sqlite:///flights.db", str(flights_dir), "SELECT * FROM no_such_table")
    with pytest.raises(BadInput, match="not found"):
        read_table("missing.csv", str(flights_dir))


@pytest.mark.postgres
def test_postgres_query_in_a_temporary_schema(flights_dir: Path) -> None:
    from sqlalchemy import create_engine, text

    schema = f"assay_tasks_{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_URL)
    frame = pd.read_csv(flights_dir / "flights.csv")
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            frame.to_sql("flights", conn, schema=schema, index=False)
        spec = _flights_spec(source=PG_URL, query=f'SELECT * FROM "{schema}".flights WHERE month <= 6')
        dataset = load_table(spec, PG_URL, str(flights_dir))
        assert dataset.rows == int((frame["month"] <= 6).sum())
        assert str(dataset.frame["scheduled_departure"].dtype).startswith("datetime64")
        expected = prepare_frame(frame[frame["month"] <= 6].reset_index(drop=True), spec, "csv")  # type: ignore[arg-type]
        assert dataset.fingerprint == expected.fingerprint
        with pytest.raises(BadInput, match=r"data\.query failed"):
            load_table(_flights_spec(query="SELECT nonsense FROM nowhere"), PG_URL, str(flights_dir))
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


# --------------------------------------------------------------------------- roles and summaries


def test_roles_are_inferred_from_real_columns() -> None:
    spec = make_spec({"source": "reviews.csv", "target": "label", "task": "text", "text_column": "text",
                      "drop": ["split"]})
    reviews = load_table(spec, "reviews.csv", str(REVIEWS.parent))
    assert reviews.roles == {"product_id": "id", "text": "text", "label": "target", "split": "drop"}
    flights = load_table(_flights_spec(group_column="carrier", sensitive=["origin"], id_column="flight_number"),
                         "flights.csv", str(FLIGHTS.parent))
    roles = flights.roles
    assert roles["scheduled_departure"] == "datetime" and roles["carrier"] == "group"
    assert roles["origin"] == "sensitive" and roles["flight_number"] == "id" and roles["arr_delay_min"] == "drop"
    assert roles["temp_f"] == "numeric" and roles["dest"] == "categorical" and roles["is_delayed"] == "target"
    assert "scheduled_departure" in flights.features and "origin" not in flights.features


def test_role_overrides_change_values_and_features() -> None:
    spec = make_spec({"source": "hpc_jobs.csv", "target": "runtime_class",
                      "roles": {"hour": "categorical", "num_pending": "drop", "compounds": "numeric"}})
    hpc = load_table(spec, "hpc_jobs.csv", str(HPC.parent))
    assert hpc.roles["hour"] == "categorical" and hpc.roles["num_pending"] == "drop"
    assert "num_pending" not in hpc.features and hpc.task == "multiclass"
    frame = pd.DataFrame({"when": ["03/01/2020", "04/01/2020"] * 10, "n": ["1", "2"] * 10, "y": [0, 1] * 10})
    parsed = prepare_frame(frame, make_spec({"source": "x.csv", "target": "y",
                                             "roles": {"when": "datetime", "n": "numeric"}}), "x.csv")
    assert str(parsed.frame["when"].dtype).startswith("datetime64") and parsed.frame["n"].dtype.kind in "if"
    with pytest.raises(BadInput, match="not numeric"):
        prepare_frame(frame.assign(n=["1", "two"] * 10),
                      make_spec({"source": "x.csv", "target": "y", "roles": {"n": "numeric"}}), "x.csv")


def test_rows_without_a_target_are_dropped_and_counted(flights_dir: Path) -> None:
    frame = pd.read_csv(flights_dir / "flights.csv")
    frame.loc[[3, 10, 11], "is_delayed"] = np.nan
    dataset = prepare_frame(frame, _flights_spec(), "flights.csv")  # type: ignore[arg-type]
    assert dataset.rows == 2997 and list(dataset.frame.index) == list(range(2997))
    from assay.plugins.loaders import validate_data

    [evidence] = validate_data(None, dataset)  # type: ignore[arg-type]
    assert evidence.data == {"rows_without_target": 3}


def test_summary_has_schema_missing_values_and_labels() -> None:
    spec = make_spec({"source": "flights.csv", "target": "is_delayed", "drop": ["arr_delay_min"]})
    flights = load_table(spec, "flights.csv", str(FLIGHTS.parent))
    summary = summarize(flights.frame, flights.roles, flights.target)
    frame = pd.read_csv(FLIGHTS)
    assert summary["rows"] == len(frame)
    assert summary["columns"]["arr_delay_min"] == "drop"  # type: ignore[index]
    assert summary["missing"]["wind_gust_mph"] == int(frame["wind_gust_mph"].isna().sum())  # type: ignore[index]
    assert "carrier" not in summary["missing"]  # type: ignore[operator]
    assert summary["labels"] == {"0": int((frame["is_delayed"] == 0).sum()), "1": int(frame["is_delayed"].sum())}
    diamonds = load_table(make_spec({"source": "diamonds.csv", "target": "price"}), "diamonds.csv",
                          str(EXAMPLES / "diamonds" / "data"))
    labels = summarize(diamonds.frame, diamonds.roles, diamonds.target)["labels"]
    assert set(labels) == {"mean", "std", "min", "max"}  # type: ignore[arg-type]


def test_a_column_whose_chunks_disagree_gets_one_type(tmp_path: Path) -> None:
    """A large CSV is read in chunks; numbers at the top of a column and text at its end must not
    leave a mix of ints and strings (the column is read again whole), and files whose chunks agree
    read exactly as a whole-file read would."""
    n = 300_000  # several of the C reader's chunks
    codes = np.arange(n).astype(str).astype(object)
    codes[-3:] = "unknown"
    pd.DataFrame({"code": codes, "x": np.linspace(0, 1, n)}).to_csv(tmp_path / "mixed.csv", index=False)
    mixed = read_table("mixed.csv", str(tmp_path))
    assert {type(v) for v in mixed["code"]} == {str} and mixed["code"].iloc[-1] == "unknown"
    assert mixed["x"].dtype == np.float64
    for path in (FLIGHTS, HPC, REVIEWS, EXAMPLES / "adult" / "data" / "adult.csv"):
        whole = pd.read_csv(path, na_values=["?"], skipinitialspace=True, low_memory=False)
        pd.testing.assert_frame_equal(read_table(path.name, str(path.parent)), whole)


@pytest.mark.parametrize("index", ["range", "labels"])
def test_prepare_frame_leaves_the_callers_frame_as_it_was(flights_dir: Path, index: str) -> None:
    """prepare_frame parses times, strips text and drops rows without a label on its own copy."""
    frame = pd.read_csv(flights_dir / "flights.csv").rename(columns={"carrier": " carrier "})
    frame.loc[frame.index[:5], "is_delayed"] = np.nan
    if index == "labels":
        frame.index = frame.index * 3 + 10
    before = frame.copy(deep=True)
    dataset = prepare_frame(frame, _flights_spec(), "flights.csv")  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(frame, before)
    assert dataset.frame.index.equals(pd.RangeIndex(len(frame) - 5))
    assert "carrier" in dataset.frame.columns
    assert pd.api.types.is_datetime64_any_dtype(dataset.frame["scheduled_departure"])
    assert not pd.api.types.is_datetime64_any_dtype(frame["scheduled_departure"])
