"""Post-decision features: ``data.decision_time`` / ``data.available_at`` on the real 2013 NYC flights.

A flight's departure delay (``dep_delay_min``) predicts a late arrival well (AUC 0.89 alone)
but is known only once the flight has left: useless to a model that predicts at booking.
The single-feature check cannot tell it from an honest predictor; declaring when the
decision is made lets ``post_decision_features`` name it.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assay.errors import BadInput
from assay.kernel.spec import TIME_UNITS, RunSpec, TimeExpression, parse_time_expression
from assay.plugins import leakage
from assay.testing import by_name, prepare
from tests.checks import datasets as ds
from tests.conftest import run_assay

BOOKING = "scheduled_departure - 1 days"
KNOWN_AT_DEPARTURE = '{ dep_delay_min = "scheduled_departure" }'

SPEC = """\
[project]
name = "{name}"

[data]
source = "data.csv"
target = "is_delayed"
task = "binary"
time_column = "scheduled_departure"
roles = {{ scheduled_departure = "drop" }}
drop = {drop}
{extra}
[split]
strategy = "time"
test_size = 0.25
cv_folds = 2
seed = 42

[train]
candidates = ["logistic_regression"]
tuning = "none"
n_jobs = 1

[gate]
policy = "assay:standard"
"""
CLEAN_DROP = '["arr_delay_min", "dep_delay_min", "flight_number", "tailnum", "month"]'
WITH_DEP_DELAY = '["arr_delay_min", "flight_number", "tailnum", "month"]'
DECLARED = f'decision_time = "{BOOKING}"\navailable_at = {KNOWN_AT_DEPARTURE}\n'


def spec(name: str, drop: str = CLEAN_DROP, extra: str = DECLARED) -> str:
    return SPEC.format(name=name, drop=drop, extra=extra)


def no_records(home: Path) -> bool:
    """Nothing was written: no home, or a ledger without a single record."""
    return not home.exists() or run_assay("audit", "log", "--json", home=home).json["count"] == 0


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return ds.flights(2000)


# --------------------------------------------------------------------------- the expression syntax

COLUMNS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                  min_size=1, max_size=30).filter(lambda c: c[-1] not in "+-")
UNIT_WORDS = st.sampled_from([w for u in TIME_UNITS for w in (u, u + "s", u.upper() + "S")])


@given(column=COLUMNS, sign=st.sampled_from("+-"), amount=st.integers(0, 10_000), unit=UNIT_WORDS,
       spaces=st.sampled_from(["", " ", "  "]))
def test_an_offset_expression_reads_back_its_column_and_seconds(column: str, sign: str, amount: int, unit: str,
                                                                spaces: str) -> None:
    parsed = parse_time_expression(f" {column}{spaces or ' '}{sign}{spaces}{amount}{spaces}{unit} ")
    per = TIME_UNITS[unit.lower().rstrip("s")]
    assert parsed == TimeExpression(column, (-1 if sign == "-" else 1) * amount * per)
    assert parse_time_expression(str(parsed)) == parsed  # the canonical text reads back the same


@given(st.text(max_size=60))
def test_any_text_is_an_expression_or_a_value_error_saying_how_to_write_one(text: str) -> None:
    try:
        parsed = parse_time_expression(text)
    except ValueError as exc:
        assert "minutes|hours|days" in str(exc)
    else:
        assert parsed.column and parsed.column == parsed.column.strip()
        assert parse_time_expression(str(parsed)) == parsed


@pytest.mark.parametrize(("text", "column", "seconds"), [
    ("scheduled_departure", "scheduled_departure", 0.0),
    ("scheduled_departure - 1 days", "scheduled_departure", -86_400.0),
    ("booked_at + 90 minutes", "booked_at", 5_400.0),
    ("t-1.5 hours", "t", -5_400.0),
    ("dep-time", "dep-time", 0.0),  # a sign inside a name is part of it
])
def test_examples_of_the_syntax(text: str, column: str, seconds: float) -> None:
    assert parse_time_expression(text) == TimeExpression(column, seconds)


def test_specs_without_the_keys_keep_their_dump_and_hash() -> None:
    bare = RunSpec.model_validate({"project": {"name": "p"}, "data": {"source": "d.csv", "target": "y"}})
    assert "decision_time" not in bare.model_dump()["data"] and "available_at" not in bare.model_dump()["data"]
    declared = RunSpec.model_validate({"project": {"name": "p"}, "data": {
        "source": "d.csv", "target": "y", "decision_time": BOOKING, "available_at": {"x": "scheduled_departure"}}})
    assert declared.model_dump()["data"]["decision_time"] == BOOKING and declared.hash != bare.hash


# --------------------------------------------------------------------------- bad input: exit 2, nothing written

BAD = {
    "scheduled_departure - one day": ("data.decision_time", "cannot read the offset '- one day'"),
    "scheduled_departure - 2 weeks": ("data.decision_time", "cannot read the offset '- 2 weeks'"),
    " - 1 days": ("data.decision_time", "names no column"),
    "sched_departure - 1 days": ("data.decision_time", "did you mean 'scheduled_departure'?"),
    "distance": ("data.decision_time", "'distance' of data.csv is int64, not a date/time"),
    "carrier": ("data.decision_time", "'carrier' of data.csv is not a date/time"),
}


@pytest.mark.parametrize("given_text", list(BAD))
def test_a_bad_decision_time_exits_2_with_one_message_and_no_record(tmp_path: Path, flights: pd.DataFrame,
                                                                    given_text: str) -> None:
    path = ds.write(tmp_path / "f", flights.head(300), spec("bad", extra=f"decision_time = {json.dumps(given_text)}\n"))
    home = tmp_path / "home"
    result = run_assay("run", str(path), "--json", home=home)
    key, words = BAD[given_text]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert str(path) in line or "assay.toml" in line
    assert f"{key}:" in line and words in line, line
    assert no_records(home)


@pytest.mark.parametrize(("extra", "key", "words"), [
    (f'decision_time = "{BOOKING}"\navailable_at = {{ dep_delay_min = "scheduled_departure + soon" }}\n',
     "data.available_at.dep_delay_min", "cannot read the offset '+ soon'"),
    (f'decision_time = "{BOOKING}"\navailable_at = {{ dep_delay = "scheduled_departure" }}\n',
     "data.available_at", "did you mean 'dep_delay_min'?"),
    (f'decision_time = "{BOOKING}"\navailable_at = {{ dep_delay_min = "actual_departure" }}\n',
     "data.available_at.dep_delay_min", "column 'actual_departure' is not in data.csv"),
    (f"available_at = {KNOWN_AT_DEPARTURE}\n", "data", "no decision time to compare with; add decision_time ="),
])
def test_a_bad_available_at_names_its_key(tmp_path: Path, flights: pd.DataFrame, extra: str, key: str,
                                          words: str) -> None:
    path = ds.write(tmp_path / "f", flights.head(300), spec("bad", extra=extra))
    result = run_assay("run", str(path), home=tmp_path / "home")
    assert result.returncode == 2, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert f"{key}:" in line and words in line, line
    assert no_records(tmp_path / "home")


def test_a_malformed_decision_time_given_with_set_says_so(tmp_path: Path, flights: pd.DataFrame) -> None:
    path = ds.write(tmp_path / "f", flights.head(300), spec("cli", extra=""))
    result = run_assay("run", str(path), "--set", "data.decision_time=scheduled_departure - 1 fortnight",
                       home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data.decision_time: cannot read the offset '- 1 fortnight'" in result.stderr
    assert "(got 'scheduled_departure - 1 fortnight')" in result.stderr
    assert no_records(tmp_path / "home")


def test_zoned_and_naive_times_are_refused(tmp_path: Path, flights: pd.DataFrame) -> None:
    frame = flights.head(300).copy()
    frame["booked_utc"] = (pd.to_datetime(frame["scheduled_departure"]) - pd.Timedelta(days=20)) \
        .dt.strftime("%Y-%m-%dT%H:%M:00+00:00")
    extra = 'decision_time = "booked_utc"\navailable_at = { dep_delay_min = "scheduled_departure" }\n'
    path = ds.write(tmp_path / "f", frame, spec("tz", extra=extra))
    with pytest.raises(BadInput, match=re.escape("times with a time zone (data.decision_time ('booked_utc')) "
                                                 "cannot be compared with times without one")):
        prepare(path)


# --------------------------------------------------------------------------- the check, called directly


def test_without_a_decision_time_the_check_skips_with_the_reason(tmp_path: Path, flights: pd.DataFrame) -> None:
    p = prepare(ds.write(tmp_path / "f", flights, spec("skip", drop=WITH_DEP_DELAY, extra="")))
    [check] = leakage.decision_checks(p.run, p.splits)
    assert check.status == "skip" and "no data.decision_time" in check.detail["reason"]


def test_a_timestamp_after_the_decision_matches_an_independent_count(tmp_path: Path, flights: pd.DataFrame) -> None:
    """Predicting 30 minutes after the scheduled departure: the actual departure time is in the
    future exactly when the flight left more than 30 minutes late."""
    frame = flights.copy()
    scheduled = pd.to_datetime(frame["scheduled_departure"])
    frame["actual_departure"] = (scheduled + pd.to_timedelta(frame["dep_delay_min"], unit="min")) \
        .dt.strftime("%Y-%m-%d %H:%M")
    extra = ('decision_time = "scheduled_departure + 30 minutes"\n'
             'available_at = { dep_delay_min = "scheduled_departure" }\n')
    body = spec("ts", drop=WITH_DEP_DELAY, extra=extra).replace('roles = { scheduled_departure = "drop" }',
                                           'roles = { actual_departure = "datetime" }')
    p = prepare(ds.write(tmp_path / "f", frame, body))
    assert "scheduled_departure" in p.dataset.features  # a date/time feature, but the decision's own column
    check = by_name(leakage.decision_checks(p.run, p.splits))["post_decision_features"]
    expected = float((frame["dep_delay_min"] > 30).mean())
    assert 0.05 < expected < 0.5
    assert check.value == pytest.approx(expected, abs=1e-6)
    assert check.status == "fail" and check.detail["flagged"] == ["actual_departure"]
    col = check.detail["columns"]["actual_departure"]
    assert col["available_at"] == "its own value" and col["rows"] == int((frame["dep_delay_min"] > 30).sum())
    late = frame.loc[frame["dep_delay_min"] > 30, "dep_delay_min"]
    assert col["median_after_decision"] == leakage.duration_words(float(np.median(late - 30)) * 60e9)
    # known at departure, 30 minutes before the decision: not flagged
    assert check.detail["columns"]["dep_delay_min"]["rows"] == 0
    assert "scheduled_departure" not in check.detail["columns"]
    assert "actual_departure is a date/time, after the decision at 'scheduled_departure + 30 minutes'" in check.message
    assert "data.drop" in check.detail["fix"] and "actual_departure" in check.detail["fix"]


def test_a_declared_availability_overrides_a_date_times_own_value(tmp_path: Path, flights: pd.DataFrame) -> None:
    """A scheduled arrival lies after the booking, but the timetable publishes it weeks before."""
    frame = flights.copy()
    frame["scheduled_arrival"] = (pd.to_datetime(frame["scheduled_departure"]) + pd.Timedelta(hours=3)) \
        .dt.strftime("%Y-%m-%d %H:%M")
    roles = 'roles = { scheduled_departure = "drop", scheduled_arrival = "datetime" }'
    undeclared = spec("arr", extra=f'decision_time = "{BOOKING}"\n').replace(
        'roles = { scheduled_departure = "drop" }', roles)
    p = prepare(ds.write(tmp_path / "u", frame, undeclared))
    check = by_name(leakage.decision_checks(p.run, p.splits))["post_decision_features"]
    assert check.status == "fail" and check.detail["flagged"] == ["scheduled_arrival"] and check.value == 1.0
    declared = undeclared.replace(f'decision_time = "{BOOKING}"\n', f'decision_time = "{BOOKING}"\n'
                                  'available_at = { scheduled_arrival = "scheduled_departure - 30 days" }\n')
    p = prepare(ds.write(tmp_path / "d", frame, declared))
    check = by_name(leakage.decision_checks(p.run, p.splits))["post_decision_features"]
    assert check.status == "pass" and check.value == 0.0 and check.message == ""


def test_a_few_late_rows_warn_and_more_fail(tmp_path: Path, flights: pd.DataFrame) -> None:
    """Share thresholds: > 0 warns, >= 1 % fails (flights that left more than 4 hours or 30 minutes late)."""
    outcomes = {}
    for minutes in (240, 30):
        extra = (f'decision_time = "scheduled_departure + {minutes} minutes"\n'
                 'available_at = { dep_delay_min = "scheduled_departure + 0 minutes" }\n')
        frame = flights.copy()
        frame["left_at"] = (pd.to_datetime(frame["scheduled_departure"])
                            + pd.to_timedelta(frame["dep_delay_min"], unit="min")).dt.strftime("%Y-%m-%d %H:%M")
        body = spec("w", extra=extra).replace('roles = { scheduled_departure = "drop" }',
                                              'roles = { scheduled_departure = "drop", left_at = "datetime" }')
        p = prepare(ds.write(tmp_path / str(minutes), frame, body))
        check = by_name(leakage.decision_checks(p.run, p.splits))["post_decision_features"]
        share = float((frame["dep_delay_min"] > minutes).mean())
        outcomes[minutes] = (check.status, check.value, share)
    assert 0 < outcomes[240][2] < 0.01 < outcomes[30][2]
    assert outcomes[240][0] == "warn" and outcomes[240][1] == pytest.approx(outcomes[240][2], abs=1e-6)
    assert outcomes[30][0] == "fail"


# --------------------------------------------------------------------------- through the real CLI


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, flights: pd.DataFrame) -> dict[str, tuple[Any, Path]]:
    """``assay run`` on the flights, with the departure delay let in and without it (two at a time)."""
    root = tmp_path_factory.mktemp("decision")
    cases = {"dep_delay": spec("booking", drop=WITH_DEP_DELAY), "clean": spec("booking")}
    paths = {name: ds.write(root / name, flights, body) for name, body in cases.items()}

    def run(name: str) -> tuple[Any, Path]:
        home = root / "homes" / name
        return run_assay("run", str(paths[name]), "--json", "-q", home=home), home

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(cases, pool.map(run, cases), strict=True))


def test_the_departure_delay_blocks_the_run_and_the_gate_names_it(runs: dict[str, tuple[Any, Path]]) -> None:
    result, home = runs["dep_delay"]
    assert result.returncode == 1, result.stderr[-3000:]
    out = result.json
    assert out["status"] == "blocked"
    blocking = [r["id"] for r in out["verdict"]["rules"] if r["outcome"] == "block"]
    assert "no-leakage[post_decision_features]" in blocking
    [reason] = [r for r in out["verdict"]["reasons"] if r.startswith("no-leakage[post_decision_features]")]
    assert ("dep_delay_min becomes known at 'scheduled_departure', after the decision at "
            "'scheduled_departure - 1 days' on 100.00% of rows (median 1 day after)") in reason
    assert re.search(r'Fix: leave \'dep_delay_min\' out: data\.drop = \[[^]]*"dep_delay_min"', reason)
    gate = run_assay("gate", out["run_id"], "--format", "json", home=home)
    assert gate.returncode == 1 and gate.json["verdict"]["reasons"] == out["verdict"]["reasons"]
    text = run_assay("gate", out["run_id"], home=home, env={"COLUMNS": "300"})
    assert text.returncode == 1
    [row] = [ln for ln in text.stdout.splitlines() if ln.lstrip().startswith("no-leakage[post_decision_features]")]
    assert "block" in row and "dep_delay_min becomes known at 'scheduled_departure'" in row


def test_the_single_feature_check_does_not_catch_it(runs: dict[str, tuple[Any, Path]]) -> None:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    result, home = runs["dep_delay"]
    checks = RunStore(Settings.resolve(home)).get_run(result.json["run_id"]).evidence["checks"]["leakage"]
    target = checks["target_leakage"]
    assert target["status"] == "pass" and target["detail"]["best_column"] == "dep_delay_min"
    assert 0.8 < target["detail"]["scores"]["dep_delay_min"] < 0.95
    assert checks["post_decision_features"]["detail"]["flagged"] == ["dep_delay_min"]


def test_nothing_is_flagged_on_the_clean_flights_columns(runs: dict[str, tuple[Any, Path]]) -> None:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    result, home = runs["clean"]
    assert result.returncode == 0, (result.json.get("verdict", {}).get("reasons"), result.stderr[-3000:])
    check = RunStore(Settings.resolve(home)).get_run(result.json["run_id"]).evidence["checks"]["leakage"][
        "post_decision_features"]
    assert check["status"] == "pass" and check["value"] == 0.0 and check["detail"]["flagged"] == []
    assert check["detail"]["declared_not_features"] == ["dep_delay_min"]
    assert "carrier" in check["detail"]["assumed_known_at_decision"]
