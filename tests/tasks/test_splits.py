"""Splits: group and time splits are leak-free for the holdout and for every CV fold.

Property tests drive the real ``split_data`` hook implementation on generated frames:
any group sizes (including one giant group), tied and unsorted timestamps, any seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.errors import BadInput
from assay.kit import prepare_frame
from assay.plugins.splitting import check_split, split_data
from tests.tasks.conftest import make_run, make_spec

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _covers(splits: object, n: int) -> None:
    train, test = splits.train, splits.test  # type: ignore[attr-defined]
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    for tr, va in splits.folds:  # type: ignore[attr-defined]
        assert len(np.intersect1d(tr, va)) == 0
        assert tr.max() < len(train) and va.max() < len(train)  # positions within the training part


@st.composite
def grouped_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, int, float, int]:
    folds = draw(st.integers(2, 5))
    n_groups = draw(st.integers(folds + 1, 40))
    sizes = draw(st.lists(st.integers(1, 30), min_size=n_groups, max_size=n_groups))
    groups = np.repeat([f"g{i}" for i in range(n_groups)], sizes)
    order = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(len(groups))
    frame = pd.DataFrame({"entity": groups[order], "x": np.arange(len(groups), dtype=float),
                          "y": np.arange(len(groups)) % 2})
    return frame, folds, draw(st.floats(0.1, 0.5)), draw(st.integers(0, 10_000))


@SETTINGS
@given(grouped_frames())
def test_group_split_never_puts_an_entity_on_both_sides(case: tuple[pd.DataFrame, int, float, int]) -> None:
    frame, folds, test_size, seed = case
    spec = make_spec({"source": "x.csv", "target": "y", "group_column": "entity"},
                     split={"strategy": "group", "cv_folds": folds, "test_size": test_size, "seed": seed})
    dataset = prepare_frame(frame, spec, "x.csv")
    try:
        splits = split_data(make_run(spec), dataset)
    except BadInput as exc:  # too few groups left for the folds: refused with a message, never a leak
        assert "groups" in str(exc)
        return
    _covers(splits, len(frame))
    g = frame["entity"].to_numpy()
    assert not set(g[splits.train]) & set(g[splits.test])
    assert len(splits.folds) == folds
    for tr, va in splits.folds:
        assert not set(g[splits.train[tr]]) & set(g[splits.train[va]])
    assert np.array_equal(splits.groups, g[splits.train])


@st.composite
def timed_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, int, float, bool]:
    n = draw(st.integers(12, 300))
    distinct = draw(st.integers(1, n))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    stamps = rng.integers(0, distinct, n)  # heavy ties when distinct is small; rows unsorted
    as_datetime = draw(st.booleans())
    times = (pd.Timestamp("2020-01-01") + pd.to_timedelta(stamps, unit="h")) if as_datetime else stamps
    frame = pd.DataFrame({"when": times, "x": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    return frame, draw(st.integers(2, 6)), draw(st.floats(0.05, 0.5)), as_datetime


@SETTINGS
@given(timed_frames())
def test_time_split_trains_strictly_before_it_tests(case: tuple[pd.DataFrame, int, float, bool]) -> None:
    frame, folds, test_size, _ = case
    spec = make_spec({"source": "x.csv", "target": "y", "time_column": "when"},
                     split={"strategy": "time", "cv_folds": folds, "test_size": test_size})
    dataset = prepare_frame(frame, spec, "x.csv")
    try:
        splits = split_data(make_run(spec), dataset)
    except BadInput as exc:  # all times tied: no honest split exists, and it says so
        assert "time" in str(exc) or "tied" in str(exc)
        return
    _covers(splits, len(frame))
    t = dataset.frame["when"].to_numpy()
    assert t[splits.train].max() < t[splits.test].min()
    assert 1 <= len(splits.folds) <= folds
    for tr, va in splits.folds:
        assert t[splits.train[tr]].max() < t[splits.train[va]].min()


def test_time_split_refuses_rows_without_a_time() -> None:
    frame = pd.DataFrame({"when": ["2020-01-01", None, "2020-01-03"] * 10, "y": [0, 1, 0] * 10})
    spec = make_spec({"source": "x.csv", "target": "y", "time_column": "when"}, split={"strategy": "time"})
    with pytest.raises(BadInput, match="no 'when' value"):
        split_data(make_run(spec), prepare_frame(frame, spec, "x.csv"))


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "y": (rng.random(1000) < 0.1).astype(int)})
    spec = make_spec({"source": "x.csv", "target": "y"}, split={"strategy": "stratified", "seed": 3})
    dataset = prepare_frame(frame, spec, "x.csv")
    a, b = split_data(make_run(spec), dataset), split_data(make_run(spec), dataset)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    y = frame["y"].to_numpy()
    assert abs(y[a.test].mean() - y.mean()) < 0.01
    for _, va in a.folds:
        assert abs(y[a.train[va]].mean() - y.mean()) < 0.02
    other = make_spec({"source": "x.csv", "target": "y"}, split={"strategy": "stratified", "seed": 4})
    assert not np.array_equal(split_data(make_run(other), dataset).test, a.test)


def test_split_evidence_names_rows_by_position_digest() -> None:
    frame = pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100) % 2})
    spec = make_spec({"source": "x.csv", "target": "y"}, split={"strategy": "random"})
    splits = split_data(make_run(spec), prepare_frame(frame, spec, "x.csv"))
    [evidence] = check_split(make_run(spec), splits)
    import hashlib

    expected = "sha256:" + hashlib.sha256(np.sort(splits.test).astype("<i8").tobytes()).hexdigest()
    assert evidence.section == "split"
    assert evidence.data["test"]["rows_sha256"] == expected
    assert evidence.data["train"]["rows_sha256"] != expected
    assert evidence.data["folds_sha256"].startswith("sha256:")
