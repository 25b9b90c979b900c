"""The evidently layer and the trend maths, on small real frames (no training run needed)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from assay.commands.monitor import svg_chart
from assay.commands.monitor_history import trend
from assay.plugins.monitoring import data_drift, parse_snapshot, prediction_drift
from tests.conftest import EXAMPLES

TYPES = {"temp_f": "numeric", "carrier": "categorical", "wind_gust_mph": "numeric"}


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return pd.read_csv(EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv",
                       usecols=["month", "temp_f", "carrier", "wind_gust_mph"])


def test_evidently_picks_the_test_by_type_and_sample_size(flights: pd.DataFrame) -> None:
    winter, summer = flights[flights.month <= 2], flights[flights.month.isin([7, 8])]
    small, _ = data_drift(winter.sample(500, random_state=0), summer.sample(500, random_state=0), TYPES,
                          ["temp_f", "carrier"], {})
    large, _ = data_drift(winter.sample(2000, random_state=0), summer.sample(2000, random_state=0), TYPES,
                          ["temp_f", "carrier"], {})
    assert small["columns"]["temp_f"]["method"] == "K-S p_value"
    assert small["columns"]["carrier"]["method"].startswith(("chi-square", "Z-test"))
    assert large["columns"]["temp_f"]["method"] == "Wasserstein distance (normed)"
    assert large["columns"]["carrier"]["method"] == "Jensen-Shannon distance"
    for result in (small, large):
        temp = result["columns"]["temp_f"]
        assert temp["drifted"] is True  # 36 °F against 80 °F
        assert temp["threshold"] == (0.05 if temp["statistic"] == "p_value" else 0.1)
    assert large["columns"]["temp_f"]["score"] >= 0.1 and small["columns"]["temp_f"]["score"] < 0.05


def test_a_column_that_lost_all_its_values_counts_as_drifted(flights: pd.DataFrame) -> None:
    reference = flights[flights.month <= 2].sample(400, random_state=0)
    current = flights[flights.month <= 2].sample(400, random_state=1).assign(wind_gust_mph=np.nan)
    drift, _ = data_drift(reference, current, TYPES, ["temp_f", "carrier", "wind_gust_mph"], {})
    gust = drift["columns"]["wind_gust_mph"]
    assert gust["drifted"] is True and gust["detail"] == "no values in the current batch"
    assert gust["missing"]["current"] == 1.0
    assert drift["columns"]["temp_f"]["drifted"] is False  # same months, same weather
    assert drift["tested"] == 3 and "wind_gust_mph" in drift["drifted_columns"]


def test_prediction_drift_on_scores_and_labels() -> None:
    rng = np.random.default_rng(0)
    same = prediction_drift(rng.beta(2, 5, 800), rng.beta(2, 5, 800), "numeric")
    shifted = prediction_drift(rng.beta(2, 5, 800), rng.beta(5, 2, 800), "numeric")
    assert same["drifted"] is False and shifted["drifted"] is True
    assert shifted["mean"]["current"] > shifted["mean"]["reference"]
    labels = prediction_drift(rng.choice(["a", "b"], 800, p=[0.8, 0.2]), rng.choice(["a", "b"], 800, p=[0.3, 0.7]),
                              "categorical")
    assert labels["drifted"] is True and labels["kind"] == "categorical"


def test_parse_snapshot_reads_direction_from_the_method_when_there_is_no_test() -> None:
    snapshot = {"metrics": [
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "a", "method": "K-S p_value",
                    "threshold": 0.05}, "value": 0.01},
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "b", "method": "Wasserstein distance (normed)",
                    "threshold": 0.1}, "value": 0.01},
        {"config": {"type": "evidently:metric_v2:ValueDrift", "column": "c", "method": "PSI", "threshold": 0.1},
         "value": float("nan")},
        {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 1, "share": 0.5}},
    ], "tests": []}
    parsed = parse_snapshot(snapshot)
    assert parsed["a"]["drifted"] is True and parsed["a"]["statistic"] == "p_value"
    assert parsed["b"]["drifted"] is False and parsed["b"]["statistic"] == "distance"
    assert parsed["c"]["drifted"] is None and parsed["c"]["score"] is None
    assert set(parsed) == {"a", "b", "c"}


def test_trend_counts_batches_to_the_threshold() -> None:
    rising = trend([0.1, 0.15, 0.2], 0.3, rising_is_bad=True)
    assert rising["direction"] == "rising" and rising["worsening"]
    assert rising["slope"] == pytest.approx(0.05) and rising["batches_to_threshold"] == pytest.approx(2.0)
    falling_metric = trend([0.70, 0.68, None, 0.66], 0.62, rising_is_bad=False)
    assert falling_metric["points"] == 3 and falling_metric["batches_to_threshold"] == pytest.approx(
        (0.66 - 0.62) / abs(falling_metric["slope"]))
    improving = trend([0.4, 0.3, 0.2], 0.3, rising_is_bad=True)
    assert improving["worsening"] is False and improving["batches_to_threshold"] is None
    assert trend([0.2], 0.3, rising_is_bad=True)["slope"] is None
    assert trend([], None, rising_is_bad=True)["last"] is None


def test_the_history_chart_is_plain_svg() -> None:
    svg = svg_chart("share drifted", [0.1, None, 0.2, 0.35], [("threshold", 0.3, "#d62728")])
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f"{ns}circle")) == 3  # one point per measured batch
    assert any("threshold 0.3" in (t.text or "") for t in root.iter(f"{ns}text"))
    assert not root.findall(f"{ns}script")
