"""Bundled model families (``register_trainers``), by task.

binary / multiclass: logistic regression, histogram gradient boosting, random forest.
regression: ridge, histogram gradient boosting, random forest.
Each family brings a grid (for grid search) and distributions (for random/halving).

Objectives: classifiers minimize log loss (logistic regression; boosting's
``log_loss``; forests split on Gini impurity), regressors squared error. With
``train.class_weight = "balanced"`` classes are weighted inversely to their frequency,
so a rare class is not ignored; left out, it is "balanced" only when a class is rare
(:func:`assay.plugins.training.scaled_defaults`). Evaluation maps balanced probabilities
back to the training prior before it applies a business cost. Ranking and text
families live in :mod:`assay.plugins.ranking` and :mod:`assay.plugins.text`.

Constructor settings are scikit-learn's defaults where those already scale with the data
(boosting stops early only above 10,000 rows); each departure says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assay import Run, Trainer, hookimpl
from assay.kit import loguniform, randint

CLASSIFICATION = frozenset({"binary", "multiclass"})


def _class_weight(run: Run | None) -> str | None:
    if run is None:
        return "balanced"
    # left out of the spec: None here, and fit_model sets what it resolved for this training part
    return "balanced" if run.spec.train.class_weight == "balanced" else None


def _logistic(task: str, run: Run | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, class_weight=_class_weight(run))


def _ridge(task: str, run: Run | None = None) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge()


def _hgb(task: str, run: Run | None = None) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    # scikit-learn's rounds (100) and early stopping ("auto": on a seeded 10 % slice of the fold,
    # only above 10,000 rows, where that slice is big enough to judge by). Forcing it on below
    # that judged rounds by as few as 45 rows (breast cancer); 200 rounds doubled a 128k-row fit
    # (1.3 s -> 2.4 s) for +0.0005 holdout AUC (0.9841 -> 0.9846, the 200k benchmark table).
    seed = run.seed if run else 0
    if task == "regression":
        return HistGradientBoostingRegressor(random_state=seed)
    return HistGradientBoostingClassifier(random_state=seed, class_weight=_class_weight(run))


def _forest(task: str, run: Run | None = None) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    # 100 trees (scikit-learn's default): 200 cost twice as much and moved CV AUC by 0.0001-0.0004
    # (breast cancer; 5,000 Adult rows)
    seed = run.seed if run else 0
    if task == "regression":
        return RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1, min_samples_leaf=2)
    return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1, min_samples_leaf=2,
                                  class_weight=_class_weight(run))


# What the fitted estimators hold beyond the types skops trusts by default (their saved
# models load only with these declared; see Trainer.trusted_types).
BOOSTING_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # the loss and link objects (trusted by default in recent skops, not in all it supports)
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    # the internal categorical preprocessor: partial(check_array, dtype=...); skops checks the
    # partial's function and arguments on their own, so trusting partial itself is safe
    "functools.partial",
    "sklearn.utils.validation.check_array",
)
FOREST_TYPES = ("sklearn.tree._tree.Tree",)

BUILTIN_TRAINERS = (
    Trainer("logistic_regression", CLASSIFICATION, _logistic,
            grid={"C": [0.01, 0.1, 1.0, 10.0]},
            distributions=(lambda: {"C": loguniform(1e-3, 1e2)}),
            preprocessing="scaled", description="L2-regularized logistic regression"),
    Trainer("ridge", frozenset({"regression"}), _ridge,
            grid={"alpha": [0.1, 1.0, 10.0, 100.0]},
            distributions=(lambda: {"alpha": loguniform(1e-3, 1e3)}),
            preprocessing="scaled", description="ridge regression"),
    Trainer("hist_gradient_boosting", CLASSIFICATION | {"regression"}, _hgb,
            grid={"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31], "l2_regularization": [0.0, 1.0]},
            distributions=(lambda: {"learning_rate": loguniform(0.02, 0.3),
                                         "max_leaf_nodes": randint(8, 64),
                                         "min_samples_leaf": randint(10, 100),
                                         "l2_regularization": loguniform(1e-4, 10.0)}),
            preprocessing="ordinal", description="histogram gradient boosting", trusted_types=BOOSTING_TYPES),
    Trainer("random_forest", CLASSIFICATION | {"regression"}, _forest,
            grid={"max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 5]},
            distributions=(lambda: {"max_features": ["sqrt", 0.3, 0.5],
                                         "min_samples_leaf": randint(1, 20),
                                         "max_depth": [None, 8, 16]}),
            preprocessing="ordinal", description="random forest", trusted_types=FOREST_TYPES),
)


@hookimpl
def register_trainers(register: Callable[[Trainer], None]) -> None:
    for trainer in BUILTIN_TRAINERS:
        register(trainer)
