"""Ranking: per-query metrics, the rankers' estimator contract, and the search wiring.

Metrics are checked against a plain per-query implementation (hypothesis) and against
scikit-learn's ``ndcg_score``; the rankers against ``check_estimator``; the scorer and
the query ids inside a real scikit-learn search on the real travel-mode-choice data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from assay.kit import PairwiseLogisticRanker, PointwiseRanker, PopularityRanker, metric, score_ranking
from tests.conftest import EXAMPLES
from tests.tasks.conftest import make_run, make_spec

TRAVEL = EXAMPLES / "travel_mode_choice" / "data" / "travel_mode_choice.csv"


def naive(y: np.ndarray, scores: np.ndarray, queries: np.ndarray, k: int) -> dict[str, float]:
    """Textbook per-query NDCG@k / AP / RR (distinct scores, so no tie rule is involved)."""
    ndcg, ap, rr = [], [], []
    for q in np.unique(queries):
        rel = y[queries == q][np.argsort(-scores[queries == q])]
        ideal = np.sort(rel)[::-1]
        dcg = sum((2 ** r - 1) / math.log2(i + 2) for i, r in enumerate(rel[:k]))
        idcg = sum((2 ** r - 1) / math.log2(i + 2) for i, r in enumerate(ideal[:k]))
        if idcg > 0:
            ndcg.append(dcg / idcg)
        hits = np.flatnonzero(rel > 0)
        if len(hits):
            ap.append(np.mean([(j + 1) / (pos + 1) for j, pos in enumerate(hits)]))
            rr.append(1 / (hits[0] + 1))
    nan = float("nan")
    return {"ndcg": float(np.mean(ndcg)) if ndcg else nan, "map": float(np.mean(ap)) if ap else nan,
            "mrr": float(np.mean(rr)) if rr else nan}


@st.composite
def ranked(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = draw(st.integers(1, 60))
    queries = np.asarray(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)))
    y = np.asarray(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=float)
    scores = np.random.default_rng(draw(st.integers(0, 1000))).permutation(n).astype(float)  # distinct
    return y, scores, queries, draw(st.integers(1, 12))


@settings(max_examples=200, deadline=None)
@given(ranked())
def test_ranking_metrics_match_the_textbook(case: tuple[np.ndarray, np.ndarray, np.ndarray, int]) -> None:
    y, scores, queries, k = case
    expected = naive(y, scores, queries, k)
    got = {"ndcg": metric(f"ndcg@{k}").fn(y, scores, queries), "map": metric("map").fn(y, scores, queries),
           "mrr": metric("mrr").fn(y, scores, queries)}
    for name, value in expected.items():
        assert (math.isnan(value) and math.isnan(got[name])) or got[name] == pytest.approx(value), name


def test_ndcg_matches_scikit_learn_on_equal_size_queries() -> None:
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    y = (rng.random((30, 5)) < 0.3).astype(float)  # binary relevance: 2^r - 1 == r
    y[:, 0] = 1.0
    scores = rng.normal(size=(30, 5))
    queries = np.repeat(np.arange(30), 5)
    ours = metric("ndcg@3").fn(y.ravel(), scores.ravel(), queries)
    assert ours == pytest.approx(ndcg_score(y, scores, k=3))


def test_tied_scores_cost_what_they_cost_on_average() -> None:
    y = np.tile([1.0, 0.0, 0.0, 0.0], 2000)
    queries = np.repeat(np.arange(2000), 4)
    constant = metric("mrr").fn(y, np.zeros_like(y), queries)
    assert constant == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=0.01)  # not 1.0 from file order
    assert score_ranking(y, np.zeros_like(y), np.zeros_like(y), ("map",)) != {"map": 1.0}


@parametrize_with_checks([PointwiseRanker(Ridge()), PairwiseLogisticRanker(max_pairs_per_query=None, random_state=0)])
def test_rankers_honour_the_estimator_contract(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]


def _travel() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    frame = pd.read_csv(TRAVEL).drop(columns=["terminal_wait_min"])
    X = pd.get_dummies(frame.drop(columns=["chosen", "query_id"]), columns=["mode"], dtype=float)
    return frame, X, frame["chosen"].to_numpy(dtype=float), frame["query_id"].to_numpy()


def test_pairwise_ranker_learns_within_query_order_and_ignores_query_attributes() -> None:
    _, X, y, q = _travel()
    train, test = q % 4 != 0, q % 4 == 0
    X = (X - X.mean()) / X.std()
    model = PairwiseLogisticRanker(C=1.0, random_state=0).fit(X[train], y[train], query_id=q[train])
    n_train = len(np.unique(q[train]))
    assert model.n_queries_ == n_train and model.n_pairs_ == 2 * n_train * 3  # chosen vs 3 others, both ways
    ndcg = metric("ndcg@10").fn(y[test], model.predict(X[test]), q[test])
    chance = (1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5)) / 4  # one relevant item among four, at random
    assert ndcg > chance + 0.05  # cost and time alone (no income interactions) are a weak but real signal
    coef = dict(zip(X.columns, model.coef_, strict=True))
    assert coef["in_vehicle_time_min"] < 0  # slower modes rank lower
    # income and party size are constant within a query: shifting them per query changes nothing
    shifted = X.copy()
    shifted["household_income_k"] += q * 0.37
    again = PairwiseLogisticRanker(C=1.0, random_state=0).fit(shifted[train], y[train], query_id=q[train])
    assert np.allclose(again.coef_, model.coef_, atol=1e-6)
    assert again.score(X[test], y[test], query_id=q[test]) == pytest.approx(ndcg)


def test_popularity_baseline_scores_items_by_training_relevance() -> None:
    frame, _, y, _ = _travel()
    X = frame[["mode"]]
    model = PopularityRanker(key=("mode",), smoothing=0.0).fit(X, y)
    shares = frame.groupby("mode")["chosen"].mean()
    assert np.allclose(model.predict(X), frame["mode"].map(shares).to_numpy())
    assert PopularityRanker(key=("mode",)).fit(X, y).predict(pd.DataFrame({"mode": ["boat"]}))[0] == \
        pytest.approx(y.mean())


def test_query_scorer_and_query_ids_drive_a_grouped_search() -> None:
    """The search inputs the fitting plugin takes from metrics/ranking, in a real GridSearchCV."""
    from sklearn.compose import make_column_transformer
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from assay.kit import QueryScorer, query_fit_params, search_scorer
    from assay.plugins.loaders import prepare_frame
    from assay.plugins.ranking import validate_data
    from assay.plugins.splitting import split_data

    spec = make_spec({"source": "t.csv", "target": "chosen", "task": "ranking", "group_column": "query_id",
                      "drop": ["terminal_wait_min"]}, split={"cv_folds": 3, "seed": 1})
    dataset = prepare_frame(pd.read_csv(TRAVEL), spec, "t.csv")  # type: ignore[arg-type]
    splits = split_data(make_run(spec), dataset)
    scorer = search_scorer("ndcg@10", splits)
    assert isinstance(scorer, QueryScorer) and search_scorer("r2", splits) == "r2"
    params = query_fit_params(splits)
    assert np.array_equal(params["model__query_id"], dataset.frame["query_id"].to_numpy()[splits.train])
    X, y = splits.X("train"), splits.y("train")
    X.index = y.index = pd.Index(splits.train)  # rows labelled by dataset position, as the fitting plugin does
    numeric = [c for c in X.columns if c != "mode"]
    pipe = make_pipeline(make_column_transformer((StandardScaler(), numeric), (OneHotEncoder(), ["mode"])),
                         PairwiseLogisticRanker(random_state=0))
    folds = [(splits.train[tr], splits.train[va]) for tr, va in splits.folds]
    from assay.plugins.training import FoldsByIndex

    search = GridSearchCV(pipe, {"pairwiselogisticranker__C": [0.1, 1.0]}, cv=FoldsByIndex(folds),
                          scoring=scorer, error_score="raise")
    search.fit(X, y, pairwiselogisticranker__query_id=params["model__query_id"])
    assert 0.6 < search.best_score_ <= 1.0
    assert search.best_estimator_[-1].n_queries_ == len(np.unique(params["model__query_id"]))
    [evidence, check] = validate_data(make_run(spec), dataset)
    assert evidence.data["queries"]["count"] == 210 and check.status == "pass"


@pytest.mark.parametrize("ranker", [PointwiseRanker(Ridge()), PairwiseLogisticRanker(random_state=0)],
                         ids=["pointwise", "pairwise"])
def test_ranking_models_saved_under_the_rankers_old_module_still_load(
        ranker: object, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Earlier versions saved the rankers as ``assay.plugins.rankers.*``; those files load as the kit's classes."""
    from pathlib import Path

    from assay.plugins.ranking import RANKING_TRAINERS
    from assay.storage.modelio import load_model, save_model, skops_io
    from assay.storage.store import ArtifactStore

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(float) + (X[:, 1] > 1)
    queries = np.repeat(np.arange(6), 10)
    fitted = ranker.fit(X, y, query_id=queries)  # type: ignore[attr-defined]
    store = ArtifactStore(Path(str(tmp_path)))
    cls = type(fitted)
    assert cls.__module__ == "assay.rankers"
    current = save_model(store, fitted)
    monkeypatch.setattr(cls, "__module__", "assay.plugins.rankers")  # the class as an earlier version named it
    legacy = save_model(store, fitted)
    monkeypatch.undo()
    sio = skops_io()
    assert f"assay.plugins.rankers.{cls.__name__}" in sio.get_untrusted_types(data=store.get_bytes(legacy))
    assert f"assay.rankers.{cls.__name__}" in sio.get_untrusted_types(data=store.get_bytes(current))
    for digest in (legacy, current):
        loaded = load_model(store, digest, RANKING_TRAINERS)
        assert type(loaded) is cls
        assert np.array_equal(loaded.predict(X), fitted.predict(X))  # type: ignore[attr-defined]
