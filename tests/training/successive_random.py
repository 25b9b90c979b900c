"""An example third-party tuner plugin: successive random search ("racing" on the CV folds).

``budget`` random candidates are scored fold by fold; after each fold the worse half is
dropped, so most of the compute goes to promising settings. It follows the Tuner contract
(``fit``, ``best_estimator_``, ``best_params_``, ``best_score_``, ``best_index_``,
``cv_results_``) and runs its fits through scikit-learn's ``Parallel``, so
``executor = "dask://..."`` distributes it like the bundled tuners. docs/plugins.md
("Writing a tuner") walks through it; tests install it through a real entry point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from assay import SearchRequest, Tuner, hookimpl


def _fit_and_score(estimator: Any, X: Any, y: Any, train: Any, test: Any, scorer: Any,
                   fit_params: dict[str, Any]) -> float:
    from sklearn.utils import _safe_indexing

    params = {k: _safe_indexing(v, train) if hasattr(v, "__len__") and len(v) == len(X) else v
              for k, v in fit_params.items()}
    estimator.fit(_safe_indexing(X, train), _safe_indexing(y, train), **params)
    return float(scorer(estimator, _safe_indexing(X, test), _safe_indexing(y, test)))


class SuccessiveRandomSearch:
    """Random candidates raced over the CV folds; the better half survives each fold."""

    def __init__(self, estimator: Any, space: dict[str, Any], n_candidates: int, cv: Any, scoring: str,
                 random_state: int, n_jobs: int) -> None:
        self.estimator = estimator
        self.space = space
        self.n_candidates = n_candidates
        self.cv = cv
        self.scoring = scoring
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, **fit_params: Any) -> SuccessiveRandomSearch:
        from sklearn.base import clone
        from sklearn.metrics import check_scoring
        from sklearn.model_selection import ParameterSampler
        from sklearn.utils.parallel import Parallel, delayed

        candidates = list(ParameterSampler(self.space, self.n_candidates, random_state=self.random_state)) or [{}]
        scorer = check_scoring(self.estimator, scoring=self.scoring)
        folds = list(self.cv.split(X, y))
        scores: list[list[float]] = [[] for _ in candidates]
        alive = list(range(len(candidates)))
        for k, (train, test) in enumerate(folds):
            results = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_and_score)(clone(self.estimator).set_params(**candidates[i]), X, y, train, test,
                                        scorer, fit_params)
                for i in alive)
            for i, score in zip(alive, results, strict=True):
                scores[i].append(score)
            if k < len(folds) - 1 and len(alive) > 1:
                alive.sort(key=lambda i: -float(np.mean(scores[i])))
                alive = sorted(alive[: math.ceil(len(alive) / 2)])
        means = np.array([np.mean(s) for s in scores])
        finished = np.array([len(s) == len(folds) for s in scores])
        self.best_index_ = int(np.flatnonzero(finished)[np.argmax(means[finished])])
        self.best_params_ = candidates[self.best_index_]
        self.best_score_ = float(means[self.best_index_])
        self.cv_results_ = {"params": candidates, "mean_test_score": means,
                            "std_test_score": np.array([np.std(s) for s in scores]),
                            "n_folds_scored": np.array([len(s) for s in scores])}
        self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_).fit(X, y, **fit_params)
        return self


def make_search(request: SearchRequest) -> SuccessiveRandomSearch:
    return SuccessiveRandomSearch(request.estimator, request.space, request.budget, request.cv, request.scoring,
                                  request.seed, request.n_jobs)


@hookimpl
def register_tuners(register: Any) -> None:
    register(Tuner("successive_random", make_search, "random candidates raced over the CV folds"))
