"""Model search and refit (``fit_model``): preprocessing inside the pipeline, CV on train only.

Each candidate family is a ``Pipeline(prep, model)``, so imputation, encoding and scaling
are fit inside every CV fold, never on the holdout. The tuner searches each family on
the training part's folds; the family with the best mean CV score is refit on the whole
training part. ``executor = "dask://HOST:PORT"`` runs the searches on a Dask cluster.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from assay import FittedModel, Run, SampleWeights, SearchRequest, Splits, Trainer, Tuner, hookimpl
from assay.errors import BadInput
from assay.kit import make_pipeline_for

if TYPE_CHECKING:
    from assay.kit import TrainSpec

# --------------------------------------------------------------------------- defaults scaled to the data
# Measured on 2 cores (benchmarks/bench_defaults.py, RESULTS.md "Defaults (issue 11)"). Below
# SMALL_ROWS training rows a CV fit takes milliseconds, mostly scikit-learn's per-call overhead:
# worker processes cost more to start than they save and OpenMP threads spin-wait on each other,
# so one process, one thread; and CV scores on folds of a few hundred rows differ by more between
# folds than between settings, so each family is scored with its defaults (budget 1).
SMALL_ROWS = 2_000
#: Above this many training rows the CV folds' training-set scores are not worth their cost
#: (predicting 128k rows is a third of a boosting fit); the gap check scores the refit model anyway.
TRAIN_SCORE_ROWS = 20_000
#: train.budget when left out, by training rows (first bound above them). Successive halving with
#: factor 3 costs about one full-data CV per round, and 3**k candidates take k + 1 rounds
#: (3 → 2 rounds, 9 → 3; 4 or 8 also take 2 rounds but start on a third of the rows, not a ninth).
BUDGETS = ((SMALL_ROWS, 1), (10_000, 3), (100_000, 9), (None, 3))
#: train.class_weight when left out: "balanced" once the rarest class has fewer rows than this share
#: of the most common one (under 2 in 7, 28.6 %, of a two-class table). A milder imbalance barely
#: moves a ranking metric, unweighted probabilities need no prior correction, and scikit-learn
#: bins weighted rows by weighted percentiles: 5.6x slower boosting fits on 128k rows (1.3 s -> 7.1 s).
RARE_CLASS_RATIO = 0.4
CLASSIFICATION_TASKS = frozenset({"binary", "multiclass", "text"})


@dataclass(frozen=True)
class Setting:
    """One training setting as used: its value, whether the spec gave it, and why it is what it is."""

    value: Any
    given: bool
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": "spec" if self.given else "auto", "reason": self.reason}


def scaled_defaults(train: TrainSpec, task: str, rows: int, class_counts: Sequence[int] = ()) -> dict[str, Setting]:
    """``train.budget``, ``n_jobs`` and ``class_weight`` as a run uses them, plus two internal choices.

    A value the spec gives always wins; one it leaves out (``None``) is chosen from ``rows``
    (training rows) and ``class_counts`` (training rows per class). ``threads`` caps the
    BLAS/OpenMP threads of fits in this process (``None``: no cap); ``train_scores`` says whether
    the CV folds' training-set scores are computed.
    """
    out: dict[str, Setting] = {}
    small = rows < SMALL_ROWS
    if train.budget is not None:
        out["budget"] = Setting(train.budget, True, "train.budget")
    else:
        bound, budget = next((b, n) for b, n in BUDGETS if b is None or rows < b)
        where = f"< {bound:,}" if bound is not None else f"≥ {BUDGETS[-2][0]:,}"
        why = ("CV folds this small cannot tell settings apart: each family's defaults" if budget == 1
               else f"{budget} settings per family")
        out["budget"] = Setting(budget, False, f"{rows:,} training rows ({where}): {why}")
    if train.n_jobs is not None:
        out["n_jobs"] = Setting(train.n_jobs if train.n_jobs != 0 else 1, True, "train.n_jobs")
    elif small:
        out["n_jobs"] = Setting(1, False, f"{rows:,} training rows (< {SMALL_ROWS:,}): fits are too short "
                                          "to pay for worker processes")
    elif train.tuning == "none" or out["budget"].value == 1:
        # Worker processes pay off over a search, not over k folds: the first parallel call starts the
        # workers, each importing numpy, pandas and scikit-learn before its first fit (on the 2-core VM
        # 8.9 s at load 12, 0.24 s for the next call), and joblib gives each one thread, so 5 folds on
        # 2 workers take 3 one-thread fit times where in one process they take 5 two-thread ones.
        out["n_jobs"] = Setting(1, False, "no search: each family fits only its folds, as plain cross-validation "
                                          "does, here on the libraries' own threads (worker processes cost "
                                          "more to start than they save)")
    else:
        out["n_jobs"] = Setting(-1, False, f"{rows:,} training rows: one worker process per core")
    if out["n_jobs"].value == 1 and small:
        out["threads"] = Setting(1, False, "one process on small data: one thread, no spin-waiting")
    else:
        out["threads"] = Setting(None, False, "threads as the libraries choose")
    if train.class_weight is not None:
        out["class_weight"] = Setting(train.class_weight, True, "train.class_weight")
    elif task not in CLASSIFICATION_TASKS or len(class_counts) < 2:
        out["class_weight"] = Setting("none", False, f"task {task!r}: no classes to weight")
    else:
        ratio = min(class_counts) / max(class_counts)
        rare = ratio < RARE_CLASS_RATIO
        out["class_weight"] = Setting("balanced" if rare else "none", False,
                                      f"rarest class has {ratio:.0%} of the most common class's rows "
                                      f"({'<' if rare else '≥'} {RARE_CLASS_RATIO:.0%})")
    scores = rows <= TRAIN_SCORE_ROWS
    out["train_scores"] = Setting(scores, False, f"{rows:,} training rows "
                                                 f"({'≤' if scores else '>'} {TRAIN_SCORE_ROWS:,})")
    return out


class FoldsByIndex:
    """A CV splitter replaying fixed folds, found by the rows' index labels.

    Works on any subset of the training part (successive halving subsamples it), so every
    tuner sees the very folds recorded in the split. ``fit_model`` labels the training rows
    by their positions in the dataset, so the labels are unique whatever the frame's index.
    """

    def __init__(self, folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.folds = [(np.asarray(tr), np.asarray(va)) for tr, va in folds]

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.folds)

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        labels = np.asarray(X.index)
        for tr, va in self.folds:
            yield np.flatnonzero(np.isin(labels, tr)), np.flatnonzero(np.isin(labels, va))


@contextlib.contextmanager
def executor(address: str, modules: Sequence[str] = (), timeout: str = "10s") -> Iterator[None]:
    """Run joblib-parallel work locally, or on the Dask cluster at ``dask://HOST:PORT``.

    Searches use scikit-learn's ``Parallel``, so under joblib's dask backend every CV fit is
    a task on the cluster's workers (all their threads, whatever ``train.n_jobs`` says); the
    parallel loops inside a fit stay on its worker (see :class:`_WorkerLocal`).
    ``modules`` must import on the scheduler and every worker: a task the scheduler cannot
    unpickle is dropped and the search would wait forever, so a missing plugin is refused
    up front, as is a scikit-learn or numpy version that differs from this process's.
    """
    if address == "local":
        yield
        return
    import joblib
    from distributed import Client

    try:
        client = Client(address.replace("dask://", "tcp://"), timeout=timeout, set_as_default=False)
    except OSError as exc:
        raise BadInput(f"train.executor: cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        _check_cluster(client, address, modules)
        with client.as_current(), joblib.parallel_backend(_dask_backend(), client=client):
            yield
    finally:
        client.close()


class _WorkerLocal:
    """One search task as it runs on a Dask worker: joblib loops inside it run there, in threads.

    joblib's dask backend also sends the parallel loops *inside* a task to the cluster — a
    random forest's 200 trees become 200 tiny tasks whatever the forest's ``n_jobs`` says —
    and workers secede threads to wait for them: scheduling overhead and more busy threads
    than cores (a 2-worker search ran 1.5× faster than 1 worker; with this wrapper 1.84×).
    """

    def __init__(self, func: Any) -> None:
        self.func = func
        inner = getattr(func, "function", func)  # scikit-learn's wrapper keeps the function here
        self.__name__ = "worker_local_" + getattr(inner, "__name__", type(inner).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from joblib import parallel_config

        with parallel_config(backend="threading"):
            return self.func(*args, **kwargs)


def _dask_backend() -> str:
    """Register and name joblib's dask backend with each task wrapped in :class:`_WorkerLocal`."""
    import joblib
    from joblib._dask import DaskDistributedBackend

    class WorkerLocalDaskBackend(DaskDistributedBackend):
        def submit(self, func: Any, callback: Any = None) -> Any:
            func.items = [(_WorkerLocal(f), args, kwargs) for f, args, kwargs in func.items]
            return super().submit(func, callback)

    joblib.register_parallel_backend("assay-dask", WorkerLocalDaskBackend)
    return "assay-dask"


def _check_cluster(client: Any, address: str, modules: Sequence[str]) -> None:
    import numpy
    import sklearn

    def probe(modules: Sequence[str], dask_worker: Any = None, dask_scheduler: Any = None) -> dict[str, Any]:
        # Defined here so cloudpickle ships it by value: the probe itself needs nothing installed.
        import importlib

        missing = []
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:
                missing.append(f"{name} ({type(exc).__name__}: {exc})")
        versions = {}
        for dist in ("sklearn", "numpy"):
            try:
                versions[dist] = importlib.import_module(dist).__version__
            except ImportError:
                versions[dist] = None
        return {"missing": missing, "versions": versions}

    mine = {"sklearn": sklearn.__version__, "numpy": numpy.__version__}
    found = {"scheduler": client.run_on_scheduler(probe, list(modules)), **client.run(probe, list(modules))}
    if not any(k != "scheduler" for k in found):
        raise BadInput(f"train.executor: the Dask cluster at {address} has no workers")
    for where, report in found.items():
        if report["missing"]:
            raise BadInput(f"train.executor: the Dask {where} at {address} cannot import "
                           f"{', '.join(report['missing'])}; install the plugin there (or ship it with "
                           "Client.upload_file) so the cluster can run the search")
        if where != "scheduler" and report["versions"] != mine:
            raise BadInput(f"train.executor: Dask worker {where} has {report['versions']}, this process has {mine}; "
                           "use the same scikit-learn and numpy on the cluster")


@hookimpl
def fit_model(run: Run, splits: Splits, trainers: Sequence[Trainer], tuner: Tuner,
              sample_weights: SampleWeights | None = None) -> FittedModel:
    import pandas as pd

    from assay.kit import TrainProgress, known_metrics, metric, query_fit_params, search_scorer

    spec = run.spec.train
    primary = run.spec.metric
    if primary not in known_metrics():
        raise BadInput(f"{run.spec_path}: train.metric: unknown metric {primary!r} (known: {', '.join(known_metrics())})")
    sign = 1.0 if metric(primary).greater_is_better else -1.0
    # Only the training part is searched; rows are labelled by dataset position for FoldsByIndex.
    X, y = splits.X("train"), splits.y("train")
    X.index = y.index = pd.Index(splits.train)
    label_folds = [(splits.train[tr], splits.train[va]) for tr, va in splits.folds]
    cv = FoldsByIndex(label_folds)
    fit_params: dict[str, Any] = {}
    if sample_weights is not None:
        fit_params["model__sample_weight"] = np.asarray(sample_weights.values)[splits.train]
    fit_params.update(query_fit_params(splits))  # ranking: each training row's query id
    scoring = search_scorer(primary, splits)  # a scorer name, or a per-query scorer for ranking metrics
    candidates: list[dict[str, Any]] = []
    best: tuple[float, Trainer, Any] | None = None
    task = splits.dataset.task
    counts = list(y.value_counts()) if task in CLASSIFICATION_TASKS else []
    settings = scaled_defaults(spec, task, len(y), counts)
    budget, n_jobs = settings["budget"].value, settings["n_jobs"].value
    class_weight = settings["class_weight"].value
    searches = []
    for trainer in trainers:
        pipeline = make_pipeline_for(trainer, run, splits.dataset, X, class_weight)
        if n_jobs == 1 and settings["threads"].value is None and not settings["n_jobs"].given and \
                pipeline.get_params().get("model__n_jobs") == 1:
            # one process: a family held to one job for worker processes (a forest's trees) uses every core
            pipeline.set_params(model__n_jobs=-1)
        search = tuner.make_search(SearchRequest(pipeline, trainer, cv, scoring, budget, run.seed, n_jobs))
        if not settings["train_scores"].value and getattr(search, "return_train_score", False):
            search.set_params(return_train_score=False)
        searches.append((trainer, search))
    # what a Dask cluster must be able to import to run these searches
    modules = sorted({__name__, *(type(s).__module__ for _, s in searches),
                      *(type(s.estimator.named_steps["model"]).__module__ for _, s in searches
                        if hasattr(getattr(s, "estimator", None), "named_steps"))})
    progress = TrainProgress(run, [(t.name, s) for t, s in searches], len(splits.folds))
    with executor(spec.executor, modules), _thread_cap(settings["threads"].value):
        for trainer, search in searches:
            started = time.perf_counter()
            with progress.family(trainer.name, search):
                search.fit(X, y, **fit_params)
            entry = _describe_search(trainer, search, sign, started)
            candidates.append(entry)
            if best is None or entry["cv_mean"] * sign > best[0] * sign:
                best = (entry["cv_mean"], trainer, search)
    assert best is not None
    mean, trainer, search = best
    chosen = next(c for c in candidates if c["family"] == trainer.name)
    return FittedModel(
        family=trainer.name,
        estimator=search.best_estimator_,
        params=chosen["params"],
        cv={primary: {"mean": mean, "std": chosen["cv_std"], "train_mean": chosen["train_mean"]}},
        candidates=candidates,
        search={"tuner": tuner.name, "budget": budget, "metric": primary, "folds": len(splits.folds),
                "seed": run.seed, "executor": spec.executor, "n_jobs": n_jobs,
                "settings": {name: s.as_json() for name, s in settings.items()}},
        # every family is Pipeline(prep, model) searched on the training part's folds only
        preprocessing_inside_cv=True, holdout_used_in_tuning=False, tuner=tuner.name,
        class_weight=class_weight, executor=spec.executor,
    )


@contextlib.contextmanager
def _thread_cap(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        yield


def _describe_search(trainer: Trainer, search: Any, sign: float, started: float) -> dict[str, Any]:
    """One family's search summary for ``model.candidates`` (scores in the metric's own sign)."""
    i = int(search.best_index_)
    results = search.cv_results_
    return {
        "family": trainer.name,
        "cv_mean": float(results["mean_test_score"][i]) * sign,
        "cv_std": float(results["std_test_score"][i]),
        "train_mean": float(results["mean_train_score"][i]) * sign if "mean_train_score" in results else None,
        "params": {k.removeprefix("model__"): v for k, v in search.best_params_.items()},
        # successive halving lists each candidate once per round; count the settings tried
        "n_candidates": int(search.n_candidates_[0]) if hasattr(search, "n_candidates_") else len(results["params"]),
        "fit_s": round(time.perf_counter() - started, 3),
    }
