"""Tuning through the real hooks: each bundled tuner honours ``budget`` and never sees the holdout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assay.errors import BadInput
from assay.kernel.manager import make_plugin_manager
from assay.kernel.runner import Runner
from assay.kernel.spec import load_spec
from assay.kernel.types import FittedModel, Run, Splits, Tuner
from assay.storage.settings import Settings
from tests.training.conftest import project


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, adult_3k_csv: Path) -> Any:
    """Loaded data, the split and the runner for the Adult sample, through the real hooks."""

    def make(*overrides: str) -> tuple[Runner, Run, Splits]:
        directory = project(tmp_path_factory.mktemp("tuners"), adult_3k_csv)
        spec, _ = load_spec(directory / "assay.toml", list(overrides))
        runner = Runner(make_plugin_manager(), Settings.resolve(directory / "home"), spec, directory / "assay.toml")
        run, dataset, _ = runner.prepare()
        splits = runner.pm.hook.split_data(run=run, dataset=dataset)
        return runner, run, splits

    return make


class SearchSpy:
    """Wraps a tuner's search object and remembers every ``fit`` call's rows."""

    def __init__(self, search: Any, seen: list[Any]) -> None:
        self.search, self.seen = search, seen

    def fit(self, X: Any, y: Any, **fit_params: Any) -> SearchSpy:
        self.seen.append(np.asarray(X.index))
        self.search.fit(X, y, **fit_params)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.search, name)


def fit(runner: Runner, run: Run, splits: Splits, seen: list[Any] | None = None) -> FittedModel:
    tuner = runner.choose_tuner(run)
    if seen is not None:
        inner = tuner.make_search
        tuner = Tuner(tuner.name, lambda *args: SearchSpy(inner(*args), seen))
    trainers = runner.choose_trainers(run, splits.dataset.task)
    model: FittedModel = runner.call("fit_model", run=run, splits=splits, trainers=trainers, tuner=tuner,
                                     sample_weights=None)
    return model


@pytest.mark.parametrize(("family", "tuning", "budget", "expected"), [
    ("hist_gradient_boosting", "none", 3, 1),
    ("hist_gradient_boosting", "grid", 3, 3),     # the 8-point grid is sampled down to the budget
    ("logistic_regression", "grid", 50, 4),       # ... and used whole when it fits
    ("hist_gradient_boosting", "random", 4, 4),
    ("hist_gradient_boosting", "halving_grid", 5, 5),
    ("hist_gradient_boosting", "halving_random", 4, 4),
])
def test_each_tuner_tries_budget_candidates_on_the_training_part_only(prepared: Any, family: str, tuning: str,
                                                                     budget: int, expected: int) -> None:
    runner, run, splits = prepared(f"train.candidates=['{family}']", f"train.tuning='{tuning}'",
                                   f"train.budget={budget}")
    seen: list[Any] = []
    model = fit(runner, run, splits, seen)
    assert model.candidates[0]["n_candidates"] == expected
    assert model.search["tuner"] == tuning and model.search["budget"] == budget and model.search["seed"] == 11
    assert len(seen) == 1
    assert np.array_equal(np.sort(seen[0]), np.sort(splits.train))  # the rows searched are the training part
    assert not set(seen[0]) & set(splits.test.tolist())
    assert model.holdout_used_in_tuning is False and model.preprocessing_inside_cv is True and model.tuner == tuning
    # the refit model is fully fitted on the training part
    assert model.estimator.named_steps["prep"].n_features_in_ == len(splits.dataset.features)


def test_changing_the_holdout_changes_nothing_in_tuning(prepared: Any) -> None:
    """Scramble every holdout row (features and labels): the search and the refit model are unchanged."""
    runner, run, splits = prepared("train.tuning='halving_random'", "train.budget=3")
    clean = fit(runner, run, splits)

    frame = splits.dataset.frame.copy()
    rng = np.random.default_rng(0)
    test = splits.test
    for col in splits.dataset.features:
        frame.iloc[test, frame.columns.get_loc(col)] = frame[col].iloc[rng.permutation(test)].to_numpy()
    target = frame.columns.get_loc(splits.dataset.target)
    frame.iloc[test, target] = frame[splits.dataset.target].iloc[test].map({"<=50K": ">50K", ">50K": "<=50K"}).to_numpy()
    scrambled_data = replace(splits.dataset, frame=frame)
    scrambled = fit(runner, run, replace(splits, dataset=scrambled_data))

    assert not frame.iloc[test].equals(splits.dataset.frame.iloc[test])
    assert scrambled.family == clean.family and scrambled.params == clean.params
    assert scrambled.cv == clean.cv and scrambled.candidates[0]["cv_mean"] == clean.candidates[0]["cv_mean"]
    X_train = splits.X("train")
    assert np.array_equal(scrambled.estimator.predict_proba(X_train), clean.estimator.predict_proba(X_train))


def test_folds_follow_the_rows_whatever_the_frame_index(prepared: Any) -> None:
    """A frame indexed by arbitrary labels (e.g. read from Parquet with an index) gives the same search."""
    runner, run, splits = prepared("train.candidates=['logistic_regression']", "train.tuning='grid'",
                                   "train.budget=4")
    plain = fit(runner, run, splits)
    frame = splits.dataset.frame.copy()
    frame.index = np.arange(len(frame))[::-1] * 7 + 1000
    relabelled = fit(runner, run, replace(splits, dataset=replace(splits.dataset, frame=frame)))
    assert relabelled.cv == plain.cv and relabelled.params == plain.params


def test_an_unreachable_dask_scheduler_is_a_clear_bad_input() -> None:
    from assay.plugins.training import executor

    with pytest.raises(BadInput, match=r"train.executor: cannot reach the Dask scheduler at dask://127.0.0.1:9"), \
            executor("dask://127.0.0.1:9", timeout="1s"):
        pass
