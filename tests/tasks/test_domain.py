"""Domain adaptation on the real CPS/PSID data, through the plugin's hooks.

The end-to-end run (tests/tasks/test_e2e.py) shows CPS → PSID is detected; here: two
random halves of CPS are *not* told apart, the weights are a proper density ratio, and
a spec asking for weights without a target domain is refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assay.errors import BadInput
from assay.kernel.types import Dataset, Run, SampleWeights, Splits
from assay.plugins.domain import CLIP, check_split, importance_weights
from assay.plugins.loaders import load_data
from assay.plugins.splitting import split_data
from tests.conftest import EXAMPLES
from tests.tasks.conftest import make_run, make_spec

CPS = EXAMPLES / "earnings_cps_psid" / "data" / "source.csv"


def _run(tmp_path: Path, source: pd.DataFrame, target: pd.DataFrame | None,
         weighting: bool) -> tuple[Run, Splits, Dataset | None]:
    """A run, its split and the target domain as the runner loads it (the ``load_data`` hook)."""
    source.to_csv(tmp_path / "source.csv", index=False)
    data = {"source": "source.csv", "target": "earnings_1978", "task": "regression"}
    if target is not None:
        target.to_csv(tmp_path / "target.csv", index=False)
        data["target_domain"] = "target.csv"
    spec = make_spec(data, split={"cv_folds": 3}, train={"domain_weighting": weighting})
    run = replace(make_run(spec), spec_path=str(tmp_path / "assay.toml"))
    dataset = load_data(spec=spec, source="source.csv", base_dir=str(tmp_path))
    domain = load_data(spec=spec, source="target.csv", base_dir=str(tmp_path)) if target is not None else None
    return run, split_data(run, dataset), domain


def test_two_halves_of_one_survey_are_not_a_domain_shift(tmp_path: Path) -> None:
    cps = pd.read_csv(CPS).sample(4000, random_state=1).reset_index(drop=True)
    run, splits, domain = _run(tmp_path, cps.iloc[:2000], cps.iloc[2000:], weighting=True)
    found, evidence, check = check_split(run, splits, domain)  # type: ignore[misc]
    assert evidence.data["adversarial_auc"] < 0.6 and check.status == "pass"  # type: ignore[union-attr]
    assert isinstance(found, SampleWeights) and found.source == "domain classifier (plugins.domain)"
    weights = found.values
    train = splits.train
    assert len(weights) == 2000 and np.all(weights[np.setdiff1d(np.arange(2000), train)] == 1.0)
    assert weights[train].mean() == pytest.approx(1.0)
    assert evidence.data["weighting"]["effective_sample_size"] > 0.8 * len(train)  # type: ignore[union-attr]


def test_importance_weights_are_a_clipped_density_ratio_with_mean_one() -> None:
    p = np.array([0.01, 0.2, 0.5, 0.8, 0.999999])
    w, clipped = importance_weights(p, prior=0.25)  # target rows are a quarter of the source rows
    ratio = p / (1 - p) / 0.25
    raw = np.clip(ratio, 1 / CLIP, CLIP)
    assert np.allclose(w, raw / raw.mean()) and w.mean() == pytest.approx(1.0)
    assert clipped == pytest.approx(2 / 5)  # the first and the last were clipped
    assert np.all(np.diff(w) > 0) or np.all(np.diff(w) >= 0)


def test_weights_without_a_target_domain_are_refused(tmp_path: Path) -> None:
    run, splits, domain = _run(tmp_path, pd.read_csv(CPS).head(500), None, weighting=True)
    with pytest.raises(BadInput, match=r"domain_weighting = true needs data\.target_domain"):
        check_split(run, splits, domain)
    unweighted = replace(run, spec=run.spec.model_copy(update={"train": run.spec.train.model_copy(
        update={"domain_weighting": False})}))
    assert check_split(unweighted, splits, domain) is None


def test_a_target_domain_without_the_source_columns_is_refused(tmp_path: Path) -> None:
    cps = pd.read_csv(CPS).head(600)
    run, splits, domain = _run(tmp_path, cps, cps.drop(columns=["married"]), weighting=False)
    with pytest.raises(BadInput, match="lacks column"):
        check_split(run, splits, domain)
