"""What ``assay run`` stores for monitoring: a stratified, content-addressed reference sample."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.kernel.dataset import fingerprint_frame
from assay.plugins.monitoring import frame_from_parquet, frame_to_parquet, stratified_sample
from assay.storage.settings import Settings
from assay.storage.store import ArtifactStore, RunStore
from tests.monitoring.conftest import TrainedRun


def stored(run: TrainedRun) -> tuple[dict, ArtifactStore]:
    settings = Settings.resolve(run.home)
    return RunStore(settings).get_run(run.run_id).evidence["monitoring"], ArtifactStore(settings.home)


def test_the_run_stores_a_stratified_reference_of_the_training_part(flights: TrainedRun) -> None:
    monitoring, artifacts = stored(flights)
    info = monitoring["reference"]
    data = artifacts.get_bytes(info["artifact"])  # raises if the bytes do not match the recorded hash
    assert info["artifact"] == "sha256:" + hashlib.sha256(data).hexdigest()
    reference = frame_from_parquet(data)
    assert len(reference) == info["rows"] == 2000  # monitor.reference_rows
    assert info["fingerprint"] == fingerprint_frame(reference)
    # features, the sensitive column and the target; nothing the spec dropped
    assert set(reference.columns) == {*info["features"], "origin", "is_delayed"}
    assert not {"tailnum", "flight_number", "arr_delay_min", "month"} & set(reference.columns)
    assert info["roles"]["origin"] == "sensitive" and info["roles"]["is_delayed"] == "target"
    assert info["roles"]["temp_f"] == "numeric" and info["roles"]["carrier"] == "categorical"
    assert info["sensitive"] == ["origin"] and info["part"] == "train"
    # stratified: the delay rate of the sample is the training data's, to within one row
    train = pd.read_csv(flights.directory / "train.csv")
    assert abs(reference["is_delayed"].mean() - train["is_delayed"].mean()) < 0.01
    # the categories of the whole training part are recorded, not only those the sample drew
    assert set(reference["dest"]) <= set(info["categories"]["dest"]) <= set(train["dest"])
    assert len(info["categories"]["dest"]) > 0.9 * train["dest"].nunique()
    holdout = frame_from_parquet(artifacts.get_bytes(monitoring["holdout"]["artifact"]))
    assert len(holdout) == monitoring["holdout"]["rows"] == 750  # the whole 25% holdout
    assert set(holdout.columns) == set(reference.columns)
    # the prediction-drift reference: the model's positive-class probability on those holdout rows
    stored_pred = monitoring["holdout"]["predictions"]
    scores = frame_from_parquet(artifacts.get_bytes(stored_pred["artifact"]))["prediction"]
    assert stored_pred["kind"] == "numeric" and len(scores) == 750 and scores.between(0, 1).all()


def test_a_failure_to_store_the_reference_blocks_instead_of_crashing_the_run() -> None:
    from assay.plugins.monitoring import evaluate

    results = evaluate(run=None, model=None, splits=None, scores=None)  # type: ignore[arg-type]
    assert len(results) == 1
    check = results[0]
    assert (check.group, check.name, check.status) == ("monitoring", "reference", "error")


def test_regression_reference_is_stratified_by_target_deciles(earnings: TrainedRun) -> None:
    monitoring, artifacts = stored(earnings)
    reference = frame_from_parquet(artifacts.get_bytes(monitoring["reference"]["artifact"]))
    train = pd.read_csv(earnings.directory / "cps_train.csv")
    assert len(reference) == 2000
    # deciles of the target are evenly represented: the quartiles match the training data's closely
    for q in (0.25, 0.5, 0.75):
        assert abs(reference["earnings_1978"].quantile(q) - train["earnings_1978"].quantile(q)) < 0.1 * train[
            "earnings_1978"].std()
    assert monitoring["reference"]["roles"]["black"] == "sensitive"
    assert "earnings_1978" not in monitoring["reference"]["categories"]  # a regression target has no classes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labels=st.lists(st.sampled_from(["a", "b", "c"]), min_size=4, max_size=120),
       n=st.integers(min_value=1, max_value=150), seed=st.integers(0, 2**16))
def test_stratified_sample_has_the_size_asked_and_keeps_class_shares(labels: list[str], n: int, seed: int) -> None:
    frame = pd.DataFrame({"y": labels, "x": range(len(labels))})
    sample = stratified_sample(frame, "y", "binary", n, seed)
    assert len(sample) == min(n, len(frame))
    assert sample.index.is_unique and set(sample.index) <= set(frame.index)
    assert (sample["x"] == frame.loc[sample.index, "x"]).all()
    counts = frame["y"].value_counts()
    stratified = n < len(frame) and counts.min() >= 2 and len(counts) <= min(n, len(frame) - n)
    if stratified:
        got = sample["y"].value_counts()
        for label, total in counts.items():
            assert abs(got.get(label, 0) - n * total / len(frame)) < 1 + 1e-9


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_parquet_round_trip_keeps_values_and_dtypes(data: st.DataObject) -> None:
    rows = data.draw(st.integers(1, 30))
    frame = pd.DataFrame({
        "n": data.draw(st.lists(st.floats(allow_nan=True, allow_infinity=False, width=64), min_size=rows,
                                max_size=rows)),
        "i": data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=rows, max_size=rows)),
        "c": data.draw(st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=rows, max_size=rows)),
    })
    back = frame_from_parquet(frame_to_parquet(frame))
    # a gap in a text column comes back as NaN, as a CSV reads it (None would be a category to a model)
    assert all(v != v for v in back["c"][frame["c"].isna()])
    pd.testing.assert_frame_equal(back, frame.astype({"c": object}).where(frame.notna(), float("nan")))
    assert fingerprint_frame(back) == fingerprint_frame(frame)


def test_stored_holdout_predictions_are_the_models_on_the_sampled_rows(adult_small: Path, tmp_path: Path) -> None:
    """The prediction reference comes from the run's own holdout scores, taken at the sampled rows:
    it must equal what the model predicts on the stored holdout sample, row for row."""
    import numpy as np

    from assay.plugins.monitoring import store_reference
    from assay.testing import fit, prepare, scores

    prepared = prepare(adult_small / "assay.toml", ["monitor.reference_rows=300", "split.cv_folds=2"],
                       home=tmp_path / "home")
    model = fit(prepared, ("hist_gradient_boosting",))
    assert len(prepared.splits.test) > 300  # the holdout is sampled, not kept whole
    [evidence] = store_reference(prepared.run, model, prepared.splits, scores(prepared.run, model, prepared.splits))
    info = evidence.data["holdout"]
    artifacts = ArtifactStore(prepared.run.settings.home)
    holdout = frame_from_parquet(artifacts.get_bytes(info["artifact"]))
    stored_pred = frame_from_parquet(artifacts.get_bytes(info["predictions"]["artifact"]))["prediction"]
    assert len(holdout) == len(stored_pred) == 300 and info["predictions"]["kind"] == "numeric"
    features = evidence.data["reference"]["features"]
    expected = model.estimator.predict_proba(holdout[features])[:, 1]
    np.testing.assert_allclose(stored_pred.to_numpy(), expected, rtol=0, atol=1e-12)
    # the sample is the holdout's rows in data order, stratified by the label
    test = prepared.splits.part("test")
    assert holdout["income"].value_counts(normalize=True).to_dict() == pytest.approx(
        test["income"].value_counts(normalize=True).to_dict(), abs=0.01)
