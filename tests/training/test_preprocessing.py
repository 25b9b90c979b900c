"""The preprocessing a family asks for: what reaches the model from each column role."""

from __future__ import annotations

import numpy as np
import pandas as pd

from assay.kernel.types import Dataset
from assay.kit import build_preprocessor


def dated_frame() -> Dataset:
    rng = np.random.default_rng(0)
    when = pd.Series(pd.date_range("2013-01-01", periods=400, freq="17h"))
    when[::37] = pd.NaT  # missing timestamps
    frame = pd.DataFrame({"x": rng.normal(size=400), "when": when, "y": rng.integers(0, 2, 400)})
    return Dataset(frame, "y", "binary", {"x": "numeric", "when": "datetime", "y": "target"}, "sha256:0", "t")


def test_scaled_preprocessing_scales_calendar_features_and_fills_missing_dates() -> None:
    dataset = dated_frame()
    prep, _ = build_preprocessor(dataset, "scaled")
    out = prep.fit_transform(dataset.frame[["x", "when"]])
    assert out.shape == (400, 1 + 4)  # x, then year, month, day of week, hour of "when"
    assert np.isfinite(out).all()  # NaT became the median, not NaN
    calendar = out[:, 1:]
    varying = calendar.std(axis=0) > 0
    assert np.allclose(calendar.mean(axis=0), 0, atol=1e-9)
    assert np.allclose(calendar.std(axis=0)[varying], 1)  # a year of 2013 is no longer 2013


def test_tree_preprocessing_keeps_calendar_values_and_missing_dates_as_nan() -> None:
    dataset = dated_frame()
    prep, _ = build_preprocessor(dataset, "ordinal")
    out = prep.fit_transform(dataset.frame[["x", "when"]])
    assert set(np.unique(out[~np.isnan(out[:, 1]), 1])) == {2013.0}
    assert np.isnan(out[::37, 1]).all()  # trees route missing values themselves
