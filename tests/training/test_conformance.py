"""The trainer conformance kit (``assay.testing``): bundled trainers pass, broken ones are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

import assay.plugins.trainers
from assay.kernel.types import Trainer
from assay.testing import (
    TrainerCheckFailed,
    check_trainer,
    make_dataset,
    parametrize_trainer_checks,
    registered_trainers,
)

BUNDLED = registered_trainers(assay.plugins.trainers)
CLASSIFICATION = frozenset({"binary", "multiclass"})


def test_the_bundled_plugin_registers_its_trainers() -> None:
    assert {t.name for t in BUNDLED} == {"logistic_regression", "ridge", "hist_gradient_boosting", "random_forest"}


@parametrize_trainer_checks(BUNDLED)
def test_bundled_trainers_conform(trainer_check: Any) -> None:
    trainer_check()


@pytest.mark.parametrize("trainer", [t for t in BUNDLED if "binary" in t.tasks], ids=lambda t: t.name)
def test_bundled_trainers_conform_on_mixed_real_data(trainer: Trainer, adult_3k_csv: Path) -> None:
    """Adult has categorical and numeric columns: the one-hot and ordinal paths both get exercised."""
    import pandas as pd

    frame = pd.read_csv(adult_3k_csv, na_values=["?"], skipinitialspace=True).head(800)
    dataset = make_dataset(frame, "income", "binary", drop=["fnlwgt", "split"], sensitive=["sex", "race"])
    assert dataset.columns_with("categorical") and dataset.columns_with("numeric")
    results = check_trainer(trainer, "binary", dataset)
    assert all(r.passed for r in results) and len(results) == 10


# --------------------------------------------------------------------------- broken trainers


class StoresConvertedParams(BaseEstimator, ClassifierMixin):
    def __init__(self, C: Any = 1.0) -> None:
        self.C = [C]  # __init__ must store parameters unchanged

    def fit(self, X: Any, y: Any) -> StoresConvertedParams:
        self.model_ = LogisticRegression(C=self.C[0]).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: Any) -> Any:
        return self.model_.predict(X)


class FitReturnsNone(BaseEstimator, ClassifierMixin):
    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X: Any, y: Any) -> None:
        self.model_ = LogisticRegression(C=self.C).fit(X, y)
        self.classes_ = self.model_.classes_

    def predict(self, X: Any) -> Any:
        return self.model_.predict(X)


class LearnedWithoutUnderscore(BaseEstimator, ClassifierMixin):
    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X: Any, y: Any) -> LearnedWithoutUnderscore:
        self.model = LogisticRegression(C=self.C).fit(X, y)
        self.classes_ = self.model.classes_
        return self

    def predict(self, X: Any) -> Any:
        return self.model.predict(X)


class Unseeded(BaseEstimator, ClassifierMixin):
    """Predicts from a random projection drawn without a seed: two fits disagree."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X: Any, y: Any) -> Unseeded:
        self.projection_ = np.random.default_rng().normal(size=(np.shape(X)[1], 3))
        self.model_ = LogisticRegression(C=self.C).fit(np.asarray(X) @ self.projection_, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: Any) -> Any:
        return self.model_.predict(np.asarray(X) @ self.projection_)

    def predict_proba(self, X: Any) -> Any:
        return self.model_.predict_proba(np.asarray(X) @ self.projection_)


def _broken(cls: type, grid: dict[str, list[Any]] | None = None) -> Trainer:
    return Trainer(f"broken_{cls.__name__.lower()}", CLASSIFICATION, lambda task, run=None: cls(),
                   grid=grid or {"C": [0.1, 1.0]})


@pytest.mark.parametrize(("trainer", "failing"), [
    (_broken(StoresConvertedParams), "check_init_stores_params"),
    (_broken(FitReturnsNone), "check_fit_returns_self"),
    (_broken(LearnedWithoutUnderscore), "check_learned_attributes"),
    (_broken(Unseeded), "check_deterministic"),
    (_broken(LearnedWithoutUnderscore, grid={"max_depth": [3]}), "check_search_space"),
], ids=["init-converts-params", "fit-returns-none", "learned-without-underscore", "unseeded", "bad-grid"])
def test_a_broken_trainer_fails_the_check_that_names_its_fault(trainer: Trainer, failing: str) -> None:
    with pytest.raises(TrainerCheckFailed) as caught:
        check_trainer(trainer, "binary")
    assert failing in caught.value.failures, caught.value.failures
    assert failing in str(caught.value)
    # a custom class the trainer does not declare is refused on load: the kit says so, and how to fix it
    assert "not trusted" in caught.value.failures["check_skops_roundtrip"]
    assert "trusted_types" in caught.value.failures["check_skops_roundtrip"]


def test_a_custom_class_loads_once_its_trainer_declares_it() -> None:
    from assay.storage.modelio import dotted_name

    undeclared = _broken(Unseeded)
    with pytest.raises(TrainerCheckFailed) as caught:
        check_trainer(undeclared, "binary")
    assert dotted_name(Unseeded) in caught.value.failures["check_skops_roundtrip"]
    declared = Trainer("declared", CLASSIFICATION, lambda task, run=None: Unseeded(), grid={"C": [0.1, 1.0]},
                       trusted_types=(dotted_name(Unseeded),))
    with pytest.raises(TrainerCheckFailed) as caught:
        check_trainer(declared, "binary")
    assert "check_skops_roundtrip" not in caught.value.failures
    assert "check_deterministic" in caught.value.failures  # still unseeded: only the trust list changed


def test_a_trainer_that_cannot_beat_a_dummy_is_flagged() -> None:
    from sklearn.dummy import DummyClassifier

    trainer = Trainer("constant", CLASSIFICATION, lambda task, run=None: DummyClassifier(strategy="uniform",
                                                                                         random_state=0))
    with pytest.raises(TrainerCheckFailed) as caught:
        check_trainer(trainer, "binary")
    assert set(caught.value.failures) == {"check_pipeline"}
    assert "does not beat a dummy" in caught.value.failures["check_pipeline"]


def test_a_trainer_for_another_task_is_refused() -> None:
    ridge = next(t for t in BUNDLED if t.name == "ridge")
    with pytest.raises(TrainerCheckFailed) as caught:
        check_trainer(ridge, "binary")
    assert "task 'binary' is not in the trainer's tasks" in caught.value.failures["check_registration"]
