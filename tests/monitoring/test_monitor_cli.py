"""``assay monitor RUN_ID --current DATA``: a user's commands on real, really shifted data."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest

from tests.monitoring.conftest import TrainedRun, assay, monitor_json


def rule(doc: dict, rule_id: str) -> dict:
    return next(r for r in doc["verdict"]["rules"] if r["id"] == rule_id)


# --------------------------------------------------------------------------- drift


def test_a_later_period_drifts_beyond_the_policy(flights: TrainedRun, summer: tuple[int, dict, Path]) -> None:
    code, doc, _ = summer
    assert code == 1 and doc["status"] == "beyond_policy"
    drift = doc["drift"]
    assert drift["share_drifted"] > 0.3
    assert drift["tested"] == len(drift["columns"]) == 15
    # summer weather in New York is not January's
    for col in ("temp_f", "dewpoint_f", "humidity_pct"):
        assert drift["columns"][col]["drifted"] is True, col
    # 2,000 reference rows: evidently measures distances (Wasserstein, Jensen-Shannon), not p-values
    temp = drift["columns"]["temp_f"]
    assert temp["method"] == "Wasserstein distance (normed)" and temp["statistic"] == "distance"
    assert temp["score"] >= temp["threshold"] == 0.1
    assert drift["columns"]["carrier"]["method"] == "Jensen-Shannon distance"
    assert rule(doc, "drift")["outcome"] == "block"
    assert rule(doc, "drift")["measured"] == pytest.approx(drift["share_drifted"])
    assert doc["drift"]["prediction"]["reference"] == "holdout"
    assert doc["checks"]["monitoring"]["feature_drift"]["status"] == "warn"
    assert doc["model"]["ref"] == flights.result["model"]["ref"]
    assert doc["run_id"] == flights.run_id and doc["kind"] == "monitor"


def test_a_random_split_of_the_training_period_is_not_flagged(same_period: tuple[int, dict]) -> None:
    code, doc = same_period
    assert code == 0 and doc["status"] == "stable"
    assert doc["drift"]["share_drifted"] <= 0.3
    weather = ("temp_f", "dewpoint_f", "humidity_pct", "wind_speed_mph", "pressure_mbar")
    assert not any(doc["drift"]["columns"][c]["drifted"] for c in weather)
    # the holdout is the prediction reference: in-sample predictions of the training rows would look drifted
    assert doc["drift"]["prediction"]["drifted"] is False
    assert rule(doc, "drift")["outcome"] == "pass"
    assert "current" not in doc["metrics"]  # no labels, no live metrics
    origin = doc["fairness"]["origin"]  # selection rates need no labels; equalized odds does
    assert origin["labelled"] is False and "equalized_odds_difference" not in origin
    assert 0 < origin["selection_rate_ratio"] <= 1
    assert rule(doc, "live-performance")["reason"].startswith("not applicable")


def test_text_output_names_the_drifted_columns_and_the_verdict(flights: TrainedRun) -> None:
    result = assay("monitor", flights.run_id, "--current", flights.batch("summer.csv"), home=flights.home)
    assert result.returncode == 1
    assert "BEYOND POLICY" in result.stdout
    assert "drift.share_drifted" in result.stdout
    assert "temp_f" in result.stdout and "Wasserstein distance (normed)" in result.stdout


def test_a_large_unlabelled_batch_scores_a_sample_for_prediction_drift(flights: TrainedRun, tmp_path: Path) -> None:
    """25,000 rows without labels or the sensitive column: nothing needs every row's prediction, so the
    model scores a uniform 20,000 of them (``monitor.score_rows``), and prediction drift comes out as
    it does with every row scored (the test's power is bounded by the 750-row holdout reference)."""
    from assay.plugins.monitoring import (
        PREDICTION,
        drift_values,
        frame_from_parquet,
        predict,
        prediction_drift,
    )
    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore
    from tests.conftest import EXAMPLES

    frame = pd.read_csv(EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv")
    for months, seed in (([1, 2, 3, 4], 5), ([7, 8], 6)):  # not drifted (p ≈ 0.55), drifted (p ≈ 0.03)
        big = frame[frame["month"].isin(months)].sample(25_000, replace=True, random_state=seed)
        big = big.drop(columns=["origin", "is_delayed"]).reset_index(drop=True)
        big.to_csv(tmp_path / "big.csv", index=False)
        result = assay("monitor", flights.run_id, "--current", str(tmp_path / "big.csv"), "--format", "json",
                       home=flights.home)
        assert result.returncode in (0, 1), result.stderr
        sampled = result.json["drift"]["prediction"]
        assert sampled["rows"] == 25_000 and sampled["rows_scored"] == 20_000

        evidence = flights.result_evidence()
        store = ArtifactStore(flights.home)
        model = load_model(store, evidence["model"]["artifact"])
        stored = evidence["monitoring"]["holdout"]["predictions"]["artifact"]
        reference = frame_from_parquet(store.get_bytes(stored))[PREDICTION].to_numpy()
        pred, proba, kind = predict(model, big[evidence["monitoring"]["reference"]["features"]], "binary")
        every = prediction_drift(reference, drift_values(pred, proba, kind), kind)
        assert sampled["method"] == every["method"]
        assert sampled["drifted"] == every["drifted"], (months, sampled, every)
        assert sampled["score"] == pytest.approx(every["score"], abs=0.05)


def test_the_scored_sample_is_seeded_and_skipped_when_every_row_counts() -> None:
    from types import SimpleNamespace

    from assay.kernel.spec import MonitorSpec
    from assay.plugins.monitoring import scoring_rows

    run = SimpleNamespace(seed=3, spec=SimpleNamespace(monitor=MonitorSpec(score_rows=1000)))
    batch = pd.DataFrame({"x": range(5000)})
    rows = scoring_rows(run, batch, every_row=False)  # type: ignore[arg-type]
    assert rows is not None and len(rows) == len(set(rows)) == 1000
    assert list(rows) == sorted(rows) and rows.min() >= 0 and rows.max() < 5000
    assert list(scoring_rows(run, batch, every_row=False)) == list(rows)  # type: ignore[arg-type]
    assert scoring_rows(run, batch, every_row=True) is None  # type: ignore[arg-type]
    assert scoring_rows(run, batch.head(1000), every_row=False) is None  # type: ignore[arg-type]


# --------------------------------------------------------------------------- labelled batches


def test_a_labelled_later_batch_shows_the_performance_drop(flights: TrainedRun) -> None:
    code, doc = monitor_json(flights, "autumn.csv", "--labels")
    test_auc = doc["metrics"]["test"]["roc_auc"]
    current = doc["metrics"]["current"]
    assert current["roc_auc"] < test_auc - 0.05
    low, high = current["roc_auc_ci"]
    assert low <= current["roc_auc"] <= high < test_auc  # the drop is beyond bootstrap noise
    assert doc["performance"]["rows"] == 1500 and doc["performance"]["bootstrap"] == 200
    assert doc["performance"]["change"] == pytest.approx(current["roc_auc"] - test_auc)
    live = rule(doc, "live-performance")
    assert live["outcome"] == "block" and live["threshold"] == pytest.approx(test_auc - 0.05)
    assert code == 1
    # label drift and fairness on the batch (origin is the sensitive column of this spec)
    assert doc["drift"]["target"]["column"] == "is_delayed"
    origin = doc["fairness"]["origin"]
    assert set(origin["by_group"]) == {"EWR", "JFK", "LGA"}
    assert sum(g["count"] for g in origin["by_group"].values()) == 1500
    assert 0 <= origin["equalized_odds_difference"] <= 1
    assert 0 < origin["selection_rate_ratio"] <= 1
    low, high = origin["selection_rate_ratio_ci"]
    assert low <= origin["selection_rate_ratio"] <= high


def test_a_labelled_batch_from_the_training_period_keeps_its_performance(flights: TrainedRun) -> None:
    code, doc = monitor_json(flights, "same_period.csv", "--labels")
    low, high = doc["metrics"]["current"]["roc_auc_ci"]
    assert low <= doc["metrics"]["test"]["roc_auc"] <= high
    assert rule(doc, "live-performance")["outcome"] == "pass"
    assert code == 0


def test_regression_errors_grow_on_another_population(earnings: TrainedRun, tmp_path: Path) -> None:
    """CPS-trained earnings model on PSID people: R² holds up (more variance) but errors grow 30%+."""
    policy = tmp_path / "monitor.toml"
    policy.write_text(MONITOR_POLICY, encoding="utf-8")
    code, psid = monitor_json(earnings, "psid_batch.csv", "--labels", "--policy", str(policy))
    assert code == 1
    assert psid["metrics"]["current"]["rmse"] > 1.3 * psid["metrics"]["test"]["rmse"]
    assert rule(psid, "live-error")["outcome"] == "block"
    assert {"age", "married", "earnings_1975"} <= set(psid["drift"]["drifted_columns"])
    assert psid["drift"]["target"]["drifted"] is True  # PSID people earn more in 1978 too
    assert psid["drift"]["sensitive"]["black"]["drifted"] is True  # 7% vs 25% black
    # fairness over time: the same evidence as the training run's fairness plugin, on the batch
    assert set(psid["fairness"]) == {"black", "hispanic", "black&hispanic"}
    black = psid["fairness"]["black"]
    assert set(black["by_group"]) == {"0", "1"} and black["labelled"] is True
    assert black["by_group"]["1"]["mae"] > 0 and black["relative_mae_gap"] is not None
    training_fairness = set(earnings.result_evidence()["fairness"]["black"])
    assert training_fairness <= set(black)
    code, cps = monitor_json(earnings, "cps_batch.csv", "--labels", "--policy", str(policy))
    assert code == 0, [r for r in cps["verdict"]["rules"] if r["outcome"] != "pass"]
    assert cps["drift"]["share_drifted"] <= 0.3
    assert "train-only" not in {r["id"] for r in cps["verdict"]["rules"]}  # train-stage rules are for the gate


MONITOR_POLICY = """\
name = "monitor-test"

[[rules]]
id = "drift"
path = "drift.share_drifted"
op = "<="
threshold = 0.3
stage = "monitor"

[[rules]]
id = "live-error"
description = "Live RMSE stays within 120% of the holdout RMSE."
path = "metrics.current.rmse"
op = "<="
threshold = "metrics.test.rmse * 1.2"
stage = "monitor"
when = ["metrics.current", "task == 'regression'"]

[[rules]]
id = "train-only"
path = "metrics.test.r2"
op = ">="
threshold = 0.99
"""


# --------------------------------------------------------------------------- schema problems


def _write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_a_missing_column_exits_2_naming_it(flights: TrainedRun, tmp_path: Path) -> None:
    before = assay("monitor", "history", flights.run_id, "--json", home=flights.home).json["results"]
    batch = pd.read_csv(flights.batch("same_period.csv")).drop(columns=["temp_f"])
    result = assay("monitor", flights.run_id, "--current", _write(batch, tmp_path / "b.csv"), home=flights.home)
    assert result.returncode == 2
    assert "missing column 'temp_f'" in result.stderr
    assert "Traceback" not in result.stderr
    after = assay("monitor", "history", flights.run_id, "--json", home=flights.home).json["results"]
    assert len(after) == len(before)  # bad input writes nothing


def test_a_column_of_the_wrong_type_exits_2_naming_it(flights: TrainedRun, tmp_path: Path) -> None:
    batch = pd.read_csv(flights.batch("same_period.csv"))
    batch["distance"] = batch["distance"].astype(object)
    batch.loc[batch.index[:4], "distance"] = ["far", "n/a", "far", "??"]
    result = assay("monitor", flights.run_id, "--current", _write(batch, tmp_path / "b.csv"), home=flights.home)
    assert result.returncode == 2
    assert "column 'distance' has the wrong type" in result.stderr
    assert "'far'" in result.stderr


def test_labels_without_the_target_column_exit_2(flights: TrainedRun) -> None:
    batch = flights.batch("same_period.csv")
    frame = pd.read_csv(batch).drop(columns=["is_delayed"])
    path = Path(batch).with_name("unlabelled.csv")
    frame.to_csv(path, index=False)
    result = assay("monitor", flights.run_id, "--current", str(path), "--labels", home=flights.home)
    assert result.returncode == 2 and "'is_delayed'" in result.stderr


def test_new_categories_are_findings_not_crashes(flights: TrainedRun, tmp_path: Path) -> None:
    batch = pd.read_csv(flights.batch("same_period.csv"))
    batch.loc[batch.index[:40], "carrier"] = "ZZ"  # an airline the model never saw
    batch["distance"] = batch["distance"].astype(str)  # numbers exported as text are read as numbers
    result = assay("monitor", flights.run_id, "--current", _write(batch, tmp_path / "b.csv"), "--format", "json",
                   home=flights.home)
    assert result.returncode in (0, 1), result.stderr
    doc = result.json
    new = doc["schema"]["new_categories"]["carrier"]
    assert new["values"] == ["ZZ"] and new["rows"] == 40
    assert doc["checks"]["schema"]["new_categories"]["status"] == "warn"
    assert "extra_columns" in doc["schema"] and "tailnum" in doc["schema"]["extra_columns"]


def test_an_unknown_run_or_file_exits_2(flights: TrainedRun) -> None:
    result = assay("monitor", "NOSUCHRUN0000", "--current", flights.batch("summer.csv"), home=flights.home)
    assert result.returncode == 2 and "not found" in result.stderr
    result = assay("monitor", flights.run_id, "--current", flights.batch("nope.csv"), home=flights.home)
    assert result.returncode == 2 and "nope.csv" in result.stderr
    result = assay("monitor", flights.run_id, "--current", flights.batch("assay.toml"), home=flights.home)
    assert result.returncode == 2 and ".csv or .parquet" in result.stderr


# --------------------------------------------------------------------------- outputs


def test_the_evidently_report_is_an_artifact_with_its_hash_recorded(flights: TrainedRun,
                                                                    summer: tuple[int, dict, Path]) -> None:
    _, doc, out = summer
    digest = doc["report"]["html"]
    # the --html page embeds evidently's report unchanged below assay's verdict (tests/monitoring/test_monitor_html.py)
    srcdoc = re.search(r'srcdoc="([^"]*)"', out.read_text(encoding="utf-8"))
    assert srcdoc is not None
    data = html.unescape(srcdoc.group(1)).encode("utf-8")
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    stored = flights.home / "artifacts" / "sha256" / digest[7:9] / digest[7:]
    assert stored.read_bytes() == data
    assert b"temp_f" in data and len(data) == doc["report"]["bytes"]
    assert doc["report"]["generator"].startswith("evidently 0.7")


def test_junit_and_markdown_for_ci(flights: TrainedRun, tmp_path: Path) -> None:
    junit = tmp_path / "monitor.xml"
    result = assay("monitor", flights.run_id, "--current", flights.batch("summer.csv"), "--format", "junit",
                   "--output", str(junit), home=flights.home)
    assert result.returncode == 1 and result.stdout == ""
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1
    failing = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failing == ["drift"]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run_id"] == flights.run_id and props["status"] == "beyond_policy"
    # a model version stands for the run that trained it
    md = assay("monitor", flights.result["model"]["ref"], "--current", flights.batch("same_period.csv"), "--format",
               "markdown", home=flights.home)
    assert md.returncode == 0
    assert md.stdout.startswith(f"### ✅ assay monitor: stable — {flights.result['model']['ref']}")
    assert f"Run `{flights.run_id}`" in md.stdout and "| drift | pass |" in md.stdout


# --------------------------------------------------------------------------- history


def test_history_shows_the_series_and_the_trend(flights: TrainedRun, tmp_path: Path) -> None:
    for batch in ("same_period.csv", "summer.csv"):
        assay("monitor", flights.run_id, "--current", flights.batch(batch), home=flights.home)
    doc = assay("monitor", "history", flights.run_id, "--json", home=flights.home).json
    last = doc["results"][-2:]
    assert [Path(r["source"]).name for r in last] == ["same_period.csv", "summer.csv"]
    assert [r["status"] for r in last] == ["stable", "beyond_policy"]
    assert last[0]["share_drifted"] < 0.3 < last[1]["share_drifted"]
    assert doc["trend"]["share_drifted"]["direction"] == "rising"
    assert all(r["share_threshold"] == 0.3 for r in last)
    times = [r["time"] for r in doc["results"]]
    assert times == sorted(times)
    assert doc["trend"]["share_drifted"]["threshold"] == 0.3
    page = tmp_path / "history.html"
    text = assay("monitor", "history", flights.run_id, "--html", str(page), home=flights.home)
    assert text.returncode == 0 and "summer.csv" in text.stdout and "share drifted" in text.stdout
    html = page.read_text()
    assert html.count("<svg") >= 1 and "threshold 0.3" in html and "<script" not in html
    ids = [r["monitor_id"] for r in doc["results"]]
    assert len(set(ids)) == len(ids)


def test_history_of_a_run_never_monitored(earnings: TrainedRun) -> None:
    result = assay("monitor", "history", earnings.run_id, home=earnings.home)
    assert result.returncode == 0


def test_monitor_help_lists_both_shapes(flights: TrainedRun) -> None:
    result = assay("monitor", "--help", home=flights.home)
    assert result.returncode == 0
    assert "assay monitor RUN_ID --current DATA" in result.stdout and "history" in result.stdout


def test_a_monitor_rule_can_be_waived_for_the_model(flights: TrainedRun, summer: tuple[int, dict, Path],
                                                    tmp_path: Path) -> None:
    """`assay waive drift --model …` (a signed ledger record) turns the blocking drift rule into `waived` on
    later monitor runs of that model; a rule name the model's gate and monitor results never had is refused."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(flights.home, home)  # the session's home stays unwaived for the other tests
    model = flights.result["model"]["ref"]
    assert rule(summer[1], "drift")["outcome"] == "block"

    typo = assay("waive", "drfit", "--model", model, "--reason", "r", "--approver", "a", "--expires", "2099-12-31",
                 home=home)
    assert typo.returncode == 2 and "did you mean 'drift'" in typo.stderr
    waived = assay("waive", "drift", "--model", model, "--reason", "summer traffic is expected to differ",
                   "--approver", "ops-lead", "--expires", "2099-12-31", home=home)
    assert waived.returncode == 0, waived.stderr

    result = assay("monitor", flights.run_id, "--current", flights.batch("summer.csv"), "--format", "json", home=home)
    drift = rule(result.json, "drift")
    assert drift["outcome"] == "waived" and "ops-lead" in json.dumps(drift)
    assert result.json["drift"]["share_drifted"] == pytest.approx(summer[1]["drift"]["share_drifted"])
    blocking = [r["id"] for r in result.json["verdict"]["rules"] if r["outcome"] in ("block", "error")]
    assert result.returncode == (1 if blocking else 0), blocking


def test_the_standard_pack_watches_errors_predictions_and_fairness_in_production(
        earnings: TrainedRun, same_period: tuple[int, dict]) -> None:
    code, psid = monitor_json(earnings, "psid_batch.csv", "--labels")  # the run's policy: assay:standard
    live_error = rule(psid, "live-error")
    assert code == 1 and live_error["outcome"] == "block"
    assert live_error["measured"] == pytest.approx(psid["metrics"]["current"]["rmse"])
    assert live_error["measured"] > 1.25 * psid["metrics"]["test"]["rmse"]
    assert rule(psid, "live-four-fifths")["reason"].startswith("not applicable")  # regression
    code, cps = monitor_json(earnings, "cps_batch.csv", "--labels")
    assert rule(cps, "live-error")["outcome"] == "pass"

    _, flights_doc = same_period  # binary, unlabelled, with the sensitive column
    assert rule(flights_doc, "live-error")["reason"].startswith("not applicable")
    assert rule(flights_doc, "prediction-drift")["outcome"] == "pass"
    four_fifths = [r for r in flights_doc["verdict"]["rules"] if r["id"].startswith("live-four-fifths")]
    assert four_fifths and all(r["outcome"] in ("pass", "warn") for r in four_fifths)
    assert {r["measured"] for r in four_fifths} == {flights_doc["fairness"]["origin"]["selection_rate_ratio"]}


def test_the_text_output_leads_with_what_needs_attention_and_keeps_rule_ids_whole(
        earnings: TrainedRun, flights: TrainedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = assay("monitor", earnings.run_id, "--current", earnings.batch("psid_batch.csv"), "--labels",
                   home=earnings.home)
    assert result.returncode == 1, result.stderr
    table = result.stdout[result.stdout.index("(monitor rules)"):]
    rows = [line.split("│")[0].strip() for line in table.splitlines() if "│" in line and line.split("│")[0].strip()]
    outcomes = [line.split("│")[1].strip() for line in table.splitlines()
                if "│" in line and line.split("│")[0].strip()]
    assert outcomes[0] == "block" and outcomes[rows.index("live-error")] == "block"  # the blocks first
    order = {"block": 0, "error": 0, "warn": 1, "waived": 2, "pass": 3, "n/a": 4}
    assert [order[o] for o in outcomes] == sorted(order[o] for o in outcomes)
    assert "live-four-fifths" in rows and outcomes[rows.index("live-four-fifths")] == "n/a"
    blocks = outcomes.count("block")
    assert re.search(rf"BEYOND POLICY  {blocks} block, .*\d+ pass, \d+ n/a", result.stdout)
    # a per-group rule keeps its group in the id (rich would read "[origin]" as markup and drop it)
    result = assay("monitor", flights.run_id, "--current", flights.batch("same_period.csv"), home=flights.home)
    assert result.returncode in (0, 1), result.stderr
    assert "live-four-fifths[origin]" in result.stdout
    markdown = assay("monitor", earnings.run_id, "--current", earnings.batch("psid_batch.csv"), "--labels",
                     "--format", "markdown", home=earnings.home).stdout
    md_rows = [line for line in markdown.splitlines() if line.startswith("| ") and "outcome" not in line]
    assert all(row.split(" | ")[1] == "block" for row in md_rows[:blocks])
    assert any(row.startswith("| live-error | block |") for row in md_rows[:blocks])
