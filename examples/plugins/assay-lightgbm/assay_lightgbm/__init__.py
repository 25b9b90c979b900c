"""LightGBM model families for assay: a classifier, a regressor and a lambdarank ranker.

Installed next to assay, this plugin registers three trainers through the ``assay`` entry
point group; a spec picks them like any bundled family::

    [train]
    candidates = ["lightgbm"]          # binary / multiclass / regression
    candidates = ["lightgbm_ranker"]   # task = "ranking" (data.group_column is the query id)

It uses only assay's public kit: the hook marker and ``Trainer`` from ``assay``, the search
space distributions from ``assay.kit``. LightGBM and scipy are imported when a model is
built or searched, never when assay starts.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from assay import Run, Trainer, hookimpl
from assay.kit import loguniform, randint

try:
    __version__ = metadata.version("assay-lightgbm")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0"

CLASSIFICATION = frozenset({"binary", "multiclass"})

# What a fitted LightGBM model holds beyond the types skops trusts by default: the estimator
# itself and its booster (skops stores the booster's own model text, not a pickle).
LIGHTGBM_TYPES = ("lightgbm.basic.Booster",)


def _settings(run: Run | None) -> dict[str, Any]:
    # one thread per fit: the search already runs fits side by side; verbose=-1 keeps
    # LightGBM's per-fit log lines out of assay's output; every random state from the run's seed
    return {"random_state": run.seed if run is not None else 0, "n_jobs": 1, "verbose": -1}


def _class_weight(run: Run | None) -> str | None:
    # left out of the spec, assay resolves it from the class counts and sets it on the estimator
    return "balanced" if run is not None and run.spec.train.class_weight == "balanced" else None


def _lightgbm(task: str, run: Run | None = None) -> Any:
    from lightgbm import LGBMClassifier, LGBMRegressor

    if task == "regression":
        return LGBMRegressor(**_settings(run))
    return LGBMClassifier(class_weight=_class_weight(run), **_settings(run))


def _ranker(task: str, run: Run | None = None) -> Any:
    from assay_lightgbm.ranker import QueryLGBMRanker

    return QueryLGBMRanker(objective="lambdarank", **_settings(run))


GRID = {"num_leaves": [15, 31], "learning_rate": [0.05, 0.1], "min_child_samples": [10, 20]}


def _space() -> dict[str, Any]:
    return {"num_leaves": randint(8, 64), "learning_rate": loguniform(0.02, 0.3),
            "min_child_samples": randint(5, 60), "reg_lambda": loguniform(1e-4, 10.0),
            "colsample_bytree": [0.6, 0.8, 1.0]}


TRAINERS = (
    Trainer("lightgbm", CLASSIFICATION | {"regression"}, _lightgbm, grid=GRID, distributions=_space,
            preprocessing="ordinal", description="LightGBM gradient boosting (classifier or regressor)",
            trusted_types=("lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor", *LIGHTGBM_TYPES)),
    Trainer("lightgbm_ranker", frozenset({"ranking"}), _ranker, grid=GRID, distributions=_space,
            preprocessing="ordinal", description="LightGBM lambdarank (LGBMRanker), ranked within each query",
            trusted_types=("assay_lightgbm.ranker.QueryLGBMRanker", *LIGHTGBM_TYPES)),
)


@hookimpl
def register_trainers(register: Callable[[Trainer], None]) -> None:
    for trainer in TRAINERS:
        register(trainer)
