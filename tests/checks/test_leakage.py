"""Leakage checks called directly on real data, against independent computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from assay.plugins import leakage
from assay.testing import Prepared, by_name, prepare
from tests.checks import datasets as ds
from tests.conftest import EXAMPLES


def _prepared(tmp: Path, frame: pd.DataFrame, spec: str) -> Prepared:
    return prepare(ds.write(tmp, frame, spec))


@pytest.fixture(scope="module")
def fair() -> pd.DataFrame:
    return ds.adult_fair(2000)


# --------------------------------------------------------------------------- duplicates


def test_duplicates_match_an_independent_count(tmp_path: Path, fair: pd.DataFrame) -> None:
    p = _prepared(tmp_path, ds.with_duplicates(fair, 0.08), ds.adult_spec("d", "random"))
    checks = by_name(leakage.duplicate_checks(p.splits))
    frame = p.dataset.frame
    train = frame.iloc[p.splits.train]
    test = frame.iloc[p.splits.test]
    expected = test.merge(train.drop_duplicates(), how="left", indicator=True)["_merge"].eq("both").mean()
    assert checks["duplicates"].value == pytest.approx(expected, abs=1e-6)
    assert checks["duplicates"].status == "fail"
    for pair in checks["duplicates"].detail["examples"]:
        a, b = frame.iloc[pair["test_row"]], frame.iloc[pair["train_row"]]
        assert a.equals(b) and pair["test_row"] in set(p.splits.test) and pair["train_row"] in set(p.splits.train)
    assert checks["fold_duplicates"].status == "fail"


def test_copies_with_other_casing_spacing_and_float_noise_still_count(tmp_path: Path, fair: pd.DataFrame) -> None:
    copies = fair.sample(200, random_state=11).copy()
    copies["workclass"] = copies["workclass"].str.upper() + "  "
    copies["occupation"] = " " + copies["occupation"].str.lower()
    copies["age"] = copies["age"].astype(float) + 1e-9
    frame = pd.concat([fair, copies]).sample(frac=1.0, random_state=12).reset_index(drop=True)
    checks = by_name(leakage.duplicate_checks(_prepared(tmp_path, frame, ds.adult_spec("n", "random")).splits))
    assert checks["duplicates"].status == "fail"
    assert checks["duplicates"].value > 0.05


def test_clean_adult_has_no_copies_but_collides_on_model_inputs(adult_small: Path) -> None:
    p = prepare(adult_small / "assay.toml")
    check = by_name(leakage.duplicate_checks(p.splits))["duplicates"]
    assert check.status == "pass" and check.value == 0
    assert check.detail["same_model_inputs_share"] > 0  # distinct people, identical coarse attributes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=30),
       st.lists(st.text(alphabet="abcXYZ ", max_size=8), min_size=1, max_size=30))
def test_normalization_ignores_case_spacing_and_float_noise(numbers: list[float], words: list[str]) -> None:
    # any rounding has boundaries: noise can carry a value that sits exactly on one across it
    for v in numbers:
        if v != 0:
            scaled = abs(v) * 10.0 ** (leakage.SIGNIFICANT_DIGITS - 1 - np.floor(np.log10(abs(v))))
            assume(abs(scaled - np.floor(scaled) - 0.5) > 1e-4)
    n = min(len(numbers), len(words))
    frame = pd.DataFrame({"x": numbers[:n], "w": words[:n]})
    noisy = pd.DataFrame({"x": [v * (1 + 1e-12) for v in numbers[:n]],
                          "w": ["  " + w.upper().replace(" ", "   ") + " " for w in words[:n]]})
    both = leakage.row_hashes(pd.concat([frame, noisy], ignore_index=True))
    assert (both[:n] == both[n:]).all()


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=1e-6, max_value=1e9), st.floats(min_value=1e-4, max_value=0.5))
def test_rounding_keeps_values_apart_beyond_six_digits(x: float, rel: float) -> None:
    a, b = leakage.round_significant(np.array([x, x * (1 + rel)]), 6)
    assert a != b
    assert abs(a - x) <= abs(x) * 1e-5


# --------------------------------------------------------------------------- entities and time


def test_entity_overlap_counts_shared_people(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = ds.with_entities(fair, people=600)
    shuffled = _prepared(tmp_path / "r", frame, ds.adult_spec("e", "random", 'id_column = "person_id"\n'))
    checks = by_name(leakage.entity_checks(shuffled.run, shuffled.splits))
    ids = shuffled.dataset.frame["person_id"]
    train_ids = set(ids.iloc[shuffled.splits.train])
    expected = ids.iloc[shuffled.splits.test].isin(train_ids).mean()
    assert checks["entity_overlap"].value == pytest.approx(expected)
    assert checks["entity_overlap"].status == "fail" and checks["fold_entity_overlap"].status == "fail"
    grouped = _prepared(tmp_path / "g", frame, ds.adult_spec("e", "group", 'id_column = "person_id"\n'))
    checks = by_name(leakage.entity_checks(grouped.run, grouped.splits))
    assert checks["entity_overlap"].status == "pass" and checks["fold_entity_overlap"].status == "pass"


def test_rows_without_an_entity_id_share_nothing(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = fair.assign(person_id=[f"P{i}" for i in range(len(fair))])
    frame.loc[frame.index[::3], "person_id"] = None  # a third of the rows have no id: not one shared entity
    p = _prepared(tmp_path, frame, ds.adult_spec("e", "random", 'id_column = "person_id"\n'))
    checks = by_name(leakage.entity_checks(p.run, p.splits))
    assert checks["entity_overlap"].value == 0 and checks["fold_entity_overlap"].value == 0


def test_no_entity_column_is_a_skip_with_a_reason(adult_small: Path) -> None:
    p = prepare(adult_small / "assay.toml")
    checks = by_name(leakage.entity_checks(p.run, p.splits))
    assert {c.status for c in checks.values()} == {"skip"}
    assert "id_column" in checks["entity_overlap"].detail["reason"]


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return ds.flights(3000)


def test_time_order_on_flights(tmp_path: Path, flights: pd.DataFrame) -> None:
    shuffled = _prepared(tmp_path / "r", flights, ds.flights_spec("f", "random"))
    checks = by_name(leakage.temporal_checks(shuffled.run, shuffled.splits))
    times = pd.to_datetime(shuffled.dataset.frame["scheduled_departure"])
    last = times.iloc[shuffled.splits.train].max()
    assert checks["temporal_order"].value == pytest.approx((times.iloc[shuffled.splits.test] <= last).mean())
    assert checks["temporal_order"].status == "fail" and checks["fold_temporal_order"].status == "fail"
    in_time = _prepared(tmp_path / "t", flights, ds.flights_spec("f", "time"))
    checks = by_name(leakage.temporal_checks(in_time.run, in_time.splits))
    assert checks["temporal_order"].status == "pass" and checks["fold_temporal_order"].status == "pass"
    assert checks["future_features"].status == "skip"


def test_a_timestamp_from_after_departure_is_named(tmp_path: Path, flights: pd.DataFrame) -> None:
    frame = flights.copy()
    departure = pd.to_datetime(frame["scheduled_departure"])
    frame["arrival_logged_at"] = (departure + pd.to_timedelta(frame["arr_delay_min"] + 120, unit="min")) \
        .dt.strftime("%Y-%m-%d %H:%M")
    spec = ds.flights_spec("f", "time").replace('drop = [', 'roles = { arrival_logged_at = "datetime" }\ndrop = [')
    p = _prepared(tmp_path, frame, spec)
    check = by_name(leakage.temporal_checks(p.run, p.splits))["future_features"]
    assert check.status == "fail"
    assert "arrival_logged_at" in check.detail["columns"] and "arrival_logged_at" in check.message


# --------------------------------------------------------------------------- single-feature leakage


def test_target_copies_are_named_and_honest_features_are_not(tmp_path: Path, fair: pd.DataFrame) -> None:
    frame = ds.with_target_copy(fair)
    frame["income_band"] = np.where(frame["income"] == ">50K", "upper", "lower")
    p = _prepared(tmp_path, frame, ds.adult_spec("t"))
    check = by_name(leakage.target_checks(p.splits))["target_leakage"]
    assert check.status == "fail"
    assert set(check.detail["columns"]) == {"high_earner_flag", "income_band"}
    honest = {c: v for c, v in check.detail["scores"].items() if c not in ("high_earner_flag", "income_band")}
    assert max(honest.values()) < 0.85  # relationship / marital status are strong but far from perfect


def test_regression_target_rescaled_is_leakage(tmp_path: Path) -> None:
    diamonds = pd.read_csv(EXAMPLES / "diamonds" / "data" / "diamonds.csv")
    spec = '[project]\nname = "d"\n[data]\nsource = "data.csv"\ntarget = "price"\ntask = "regression"\n'
    clean = by_name(leakage.target_checks(_prepared(tmp_path / "c", diamonds, spec).splits))["target_leakage"]
    assert clean.status == "pass" and clean.detail["metric"] == "r2"
    assert clean.detail["best_column"] in {"carat", "length_mm", "width_mm", "depth_mm"}  # strong, honest
    leaky = diamonds.assign(price_eur=diamonds["price"] * 0.92 + 3)
    check = by_name(leakage.target_checks(_prepared(tmp_path / "l", leaky, spec).splits))["target_leakage"]
    assert check.status == "fail" and check.detail["columns"] == ["price_eur"]


def test_multiclass_label_recoded_is_leakage(tmp_path: Path) -> None:
    jobs = pd.read_csv(EXAMPLES / "hpc_jobs" / "data" / "hpc_jobs.csv")
    jobs["queue"] = jobs["runtime_class"].map({"VF": "express", "F": "short", "M": "normal", "L": "long"})
    spec = '[project]\nname = "h"\n[data]\nsource = "data.csv"\ntarget = "runtime_class"\ntask = "multiclass"\n'
    check = by_name(leakage.target_checks(_prepared(tmp_path, jobs, spec).splits))["target_leakage"]
    assert check.detail["metric"] == "roc_auc_ovr"
    assert check.status == "fail" and check.detail["columns"] == ["queue"]


def test_identifier_handed_out_in_label_order(tmp_path: Path, fair: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    frame = fair.copy()
    order = np.argsort((frame["income"] == ">50K").to_numpy() + rng.random(len(frame)) * 0.6)
    frame["application_no"] = np.empty(len(frame), dtype=np.int64)
    frame.loc[order, "application_no"] = 100_000 + np.arange(len(frame))
    frame["random_key"] = [f"K{v:08d}" for v in rng.permutation(len(frame))]
    # the loader would give the text key role "id" (kept out of the features); make it a feature
    p = _prepared(tmp_path, frame, ds.adult_spec("i", extra_data='roles = { random_key = "categorical" }\n'))
    check = by_name(leakage.target_checks(p.splits))["identifier_columns"]
    assert check.status == "fail" and check.detail["columns"] == ["application_no"]
    assert set(check.detail["identifier_like"]) == {"application_no", "random_key"}
    assert check.detail["identifier_like"]["random_key"]["score"] < 0.6


# --------------------------------------------------------------------------- text


def test_near_duplicate_reviews_across_the_split(tmp_path: Path) -> None:
    reviews = pd.read_csv(EXAMPLES / "fine_food_reviews" / "data" / "reviews.csv").sample(1500, random_state=0)
    spec = ('[project]\nname = "r"\n[data]\nsource = "data.csv"\ntarget = "label"\ntask = "text"\n'
            'text_column = "text"\ndrop = ["split", "product_id"]\n')
    prepared = _prepared(tmp_path / "c", reviews, spec)
    clean = by_name(leakage.text_checks(prepared.splits))["near_duplicate_texts"]
    assert clean.status != "fail"
    texts = prepared.dataset.frame["text"]
    for pair in clean.detail["columns"]["text"]["examples"]:  # the data has real re-posted reviews: warn
        assert texts.iloc[pair["test_row"]][:200] == texts.iloc[pair["train_row"]][:200]
    reposted = reviews.sample(150, random_state=1).copy()
    reposted["text"] = reposted["text"].str.upper() + " Five stars."
    frame = pd.concat([reviews, reposted]).sample(frac=1.0, random_state=2)
    check = by_name(leakage.text_checks(_prepared(tmp_path / "d", frame, spec).splits))["near_duplicate_texts"]
    assert check.status == "fail"
    detail = check.detail["columns"]["text"]
    assert detail["near_duplicates"] >= 10 and all(e["cosine"] >= 0.9 for e in detail["examples"])


# --------------------------------------------------------------------------- conduct


def test_conduct_facts() -> None:
    from assay.kernel.types import FittedModel

    def model(**conduct: object) -> FittedModel:
        return FittedModel("f", None, {}, {}, [], **conduct)  # type: ignore[arg-type]

    good = by_name(leakage.evaluate(model=model(preprocessing_inside_cv=True, holdout_used_in_tuning=False,
                                                tuner="random")))
    assert {c.status for c in good.values()} == {"pass"} and good["holdout_used_in_tuning"].detail["tuner"] == "random"
    bad = by_name(leakage.evaluate(model=model(preprocessing_inside_cv=False, holdout_used_in_tuning=True)))
    assert {c.status for c in bad.values()} == {"fail"}
    unknown = by_name(leakage.evaluate(model=model()))
    assert {c.status for c in unknown.values()} == {"error"}
    assert "did not report" in unknown["preprocessing_inside_cv"].detail["reason"]
