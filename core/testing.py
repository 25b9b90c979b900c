"""The kit for testing plugins (``assay.testing``): conformance checks and a check harness.

**Trainers.** A trainer plugin contributes a :class:`~assay.kernel.types.Trainer` whose
``build(task, run)`` returns an unfitted scikit-learn estimator. The core relies on that
estimator keeping scikit-learn's contract; these checks prove it on small real datasets that
ship with scikit-learn (breast cancer, wine, diabetes) or on a dataset you pass (ranking:
one with a ``group`` column, the query id)::

    from assay.testing import check_trainer
    check_trainer(MY_TRAINER, "binary")          # raises TrainerCheckFailed listing failures

or one pytest test per check, like scikit-learn's ``parametrize_with_checks``::

    from assay.testing import parametrize_trainer_checks

    @parametrize_trainer_checks([MY_TRAINER])
    def test_my_trainer(trainer_check):
        trainer_check()

The checks: the trainer registers cleanly; ``__init__`` only stores parameters; the
estimator clones; ``fit`` returns ``self``; learned attributes end in ``_`` and fitting
leaves parameters alone; an unfitted estimator refuses to predict; the search space
names real parameters; two fits with the same seed predict identically; the estimator
works inside the core's ``Pipeline`` and beats a dummy model (ranking: a constant score);
the fitted pipeline round-trips through skops trusting only the trainer's declared
``trusted_types``.

**Tuners.** :func:`check_tuner` builds a real :class:`~assay.kernel.types.SearchRequest` and checks
that the search has the scikit-learn search interface, keeps to the budget, uses the folds it
is given, sets only parameters of the family's space, is reproducible with the seed and
refits the best candidate.

**Checks.** :func:`prepare` builds a real run context, dataset and split from a spec with
the installed plugins; :func:`run_hook` calls one plugin's ``validate_data``, ``check_split``
or ``evaluate`` as the runner does; :func:`check_plugin` checks its results keep the
contract of check results. docs/checks.md walks through writing a check with them.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.kernel.types import (
    Check,
    Dataset,
    Evidence,
    FittedModel,
    Run,
    SearchRequest,
    Splits,
    Trainer,
    Tuner,
)

if TYPE_CHECKING:
    import pandas as pd

#: Tasks with a bundled sample dataset (real data that ships with scikit-learn).
SAMPLE_TASKS = ("binary", "multiclass", "regression")
PREPROCESSING = ("scaled", "ordinal", "none")


class TrainerCheckFailed(AssertionError):
    """One or more conformance checks failed; ``failures`` maps check name to the reason."""

    def __init__(self, trainer: str, task: str, failures: dict[str, str]) -> None:
        self.trainer, self.task, self.failures = trainer, task, failures
        lines = "\n".join(f"  {name}: {reason}" for name, reason in failures.items())
        super().__init__(f"trainer {trainer!r} ({task}) failed {len(failures)} conformance check(s):\n{lines}")


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""


# --------------------------------------------------------------------------- datasets


def make_dataset(frame: pd.DataFrame, target: str, task: str, **data: Any) -> Dataset:
    """A :class:`Dataset` for ``frame`` with roles inferred as a run would (``data`` = extra ``[data]`` keys)."""
    from assay.kernel.dataset import fingerprint_frame, infer_roles

    spec = _spec(target, task, data)
    roles = infer_roles(frame, spec)
    return Dataset(frame, target, spec.data.task, roles, fingerprint_frame(frame), "conformance", "conformance")


@functools.cache
def sample_dataset(task: str) -> Dataset:
    """A small real dataset bundled with scikit-learn for ``task``."""
    from sklearn import datasets

    loaders = {"binary": datasets.load_breast_cancer, "multiclass": datasets.load_wine,
               "regression": datasets.load_diabetes}
    if task not in loaders:
        raise ValueError(f"no bundled sample dataset for task {task!r} (bundled: {', '.join(SAMPLE_TASKS)}); "
                         "pass dataset=make_dataset(frame, target, task)")
    frame = loaders[task](as_frame=True).frame
    return make_dataset(frame, "target", task)


def _spec(target: str, task: str, data: dict[str, Any]) -> Any:
    from assay.kernel.spec import RunSpec

    return RunSpec.model_validate({"project": {"name": "conformance"},
                                   "data": {"source": "conformance.csv", "target": target, "task": task, **data}})


# --------------------------------------------------------------------------- the case


@dataclass(frozen=True)
class BareFit:
    estimator: Any
    returned: Any
    attributes_before: set[str]
    params_before: dict[str, str]



@dataclass
class TrainerCase:
    """What the checks share: the trainer, the task, data, a run context and a scratch home."""

    trainer: Trainer
    task: str
    dataset: Dataset
    seed: int = 0
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="assay-conformance-")))

    def run(self, seed: int | None = None) -> Run:
        from assay.storage.settings import Settings

        d = self.dataset
        data: dict[str, Any] = {"roles": {c: r for c, r in d.roles.items()
                                          if r in ("numeric", "categorical", "text", "datetime", "drop")}}
        if d.columns_with("group"):
            data["group_column"] = d.columns_with("group")[0]
        if d.columns_with("text"):
            data["text_column"] = d.columns_with("text")[0]
        spec = _spec(d.target, self.task, data)
        spec.split.seed = self.seed if seed is None else seed
        settings = Settings.resolve(self.home, f"sqlite:///{self.home / 'assay.db'}")
        return Run(run_id="conformance", spec=spec, spec_path="<conformance>", settings=settings)

    def build(self, seed: int | None = None) -> Any:
        return self.trainer.build(self.task, self.run(seed))

    @functools.cached_property
    def positions(self) -> tuple[Any, Any]:
        """Seeded train/test row positions (grouped or stratified when the task calls for it)."""
        import numpy as np
        from sklearn.model_selection import GroupShuffleSplit, train_test_split

        d = self.dataset
        rows = np.arange(d.rows)
        groups = d.columns_with("group")
        if groups:
            split = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
            train, test = next(split.split(rows, groups=d.frame[groups[0]].to_numpy()))
            return train, test
        stratify = d.frame[d.target] if self.task in ("binary", "multiclass", "text") else None
        train, test = train_test_split(rows, test_size=0.3, random_state=0, stratify=stratify)
        return np.sort(train), np.sort(test)

    def part(self, which: str) -> tuple[Any, Any]:
        train, test = self.positions
        frame = self.dataset.frame.iloc[train if which == "train" else test]
        return frame[self.dataset.features], frame[self.dataset.target]

    def queries(self, which: str) -> Any:
        """The part's query ids (ranking: the ``group`` column), else None."""
        groups = self.dataset.columns_with("group")
        if self.task != "ranking" or not groups:
            return None
        train, test = self.positions
        return self.dataset.frame[groups[0]].to_numpy()[train if which == "train" else test]

    def fit_params(self, prefix: str = "model__") -> dict[str, Any]:
        """What the core's fit passes besides ``X`` and ``y``: each training row's query id when ranking."""
        queries = self.queries("train")
        return {} if queries is None else {f"{prefix}query_id": queries}

    def pipeline(self, seed: int | None = None) -> Any:
        from assay.kit import make_pipeline_for

        X, _ = self.part("train")
        return make_pipeline_for(self.trainer, self.run(seed), self.dataset, X)

    @functools.cached_property
    def fitted(self) -> Any:
        """The core's pipeline fitted on the training part (shared by the checks that only read it)."""
        X, y = self.part("train")
        return self.pipeline().fit(X, y, **self.fit_params())

    @functools.cached_property
    def bare_fit(self) -> BareFit:
        """The bare estimator fitted on the preprocessed training part, with what it was before."""
        Xt, y, _ = self.transformed
        est = self.build()
        attributes, params = set(vars(est)), _params_repr(est)
        return BareFit(est, est.fit(Xt, y, **self.fit_params(prefix="")), attributes, params)

    @functools.cached_property
    def transformed(self) -> tuple[Any, Any, Any]:
        """The training part through the core's preprocessing: what the bare estimator sees."""
        pipe = self.pipeline()
        X, y = self.part("train")
        X_test, _ = self.part("test")
        prep = pipe.named_steps["prep"]
        return prep.fit_transform(X, y), y, prep.transform(X_test)


# --------------------------------------------------------------------------- the checks


def check_registration(case: TrainerCase) -> None:
    """The trainer is a Trainer with a name, a build function, the task and a known preprocessing."""
    t = case.trainer
    assert isinstance(t, Trainer), f"expected an assay.kernel.types.Trainer, got {type(t).__name__}"
    assert t.name and t.name.isidentifier(), f"name {t.name!r} must be a non-empty identifier"
    assert callable(t.build), "build must be callable as build(task, run)"
    assert case.task in t.tasks, f"task {case.task!r} is not in the trainer's tasks {sorted(t.tasks)}"
    assert t.preprocessing in PREPROCESSING, f"preprocessing {t.preprocessing!r} is not one of {PREPROCESSING}"


def check_init_stores_params(case: TrainerCase) -> None:
    """``__init__`` stores each parameter unchanged under its own name, and nothing else public."""
    est = case.build()
    for method in ("get_params", "set_params", "fit", "predict"):
        assert callable(getattr(est, method, None)), f"{type(est).__name__} has no {method}()"
    params = est.get_params(deep=False)
    twin = type(est)(**params)  # rebuilt from its parameters: each must come back as the very object passed
    for name, value in params.items():
        assert hasattr(twin, name), f"parameter {name!r} is not stored as an attribute of the same name"
        assert getattr(twin, name) is value, f"parameter {name!r} is changed by __init__; validate it in fit()"
    public = {k for k in vars(est) if not k.startswith("_")}
    extra = sorted(public - set(params) - _parent_init_args(type(est)))
    assert not extra, f"__init__ sets attributes that are not parameters: {', '.join(extra)}"
    learned = sorted(k for k in public if k.endswith("_"))
    assert not learned, f"learned attributes exist before fit: {', '.join(learned)}"


def check_clone(case: TrainerCase) -> None:
    """``sklearn.base.clone`` gives an equal, independent, unfitted estimator."""
    from sklearn.base import clone

    est = case.build()
    twin = clone(est)
    assert type(twin) is type(est), "clone changed the estimator's type"
    assert _params_repr(twin) == _params_repr(est), "clone does not reproduce the parameters"
    assert twin is not est


def check_fit_returns_self(case: TrainerCase) -> None:
    """``fit`` returns the estimator itself."""
    fit = case.bare_fit
    assert fit.returned is fit.estimator, f"fit returned {type(fit.returned).__name__}, not self"


def check_learned_attributes(case: TrainerCase) -> None:
    """Attributes set by ``fit`` end in ``_``; ``fit`` does not change the parameters."""
    fit = case.bare_fit
    new = {k for k in set(vars(fit.estimator)) - fit.attributes_before if not k.startswith("_")}
    bad = sorted(k for k in new if not k.endswith("_"))
    assert not bad, f"fit sets attributes without a trailing underscore: {', '.join(bad)}"
    assert new, "fit sets no learned attribute ending in '_' (scikit-learn's check_is_fitted relies on one)"
    assert _params_repr(fit.estimator) == fit.params_before, "fit changed the estimator's parameters"


def check_unfitted_refuses(case: TrainerCase) -> None:
    """An unfitted estimator raises ``NotFittedError`` instead of predicting."""
    from sklearn.exceptions import NotFittedError

    _, _, Xt_test = case.transformed
    est = case.build()
    try:
        est.predict(Xt_test)
    except NotFittedError:
        return
    except Exception as exc:
        raise AssertionError(f"predict before fit raised {type(exc).__name__}, not NotFittedError") from exc
    raise AssertionError("predict before fit returned predictions")


def check_search_space(case: TrainerCase) -> None:
    """Every grid and distribution key is a parameter of the estimator, settable in the pipeline."""
    from sklearn.base import clone

    t = case.trainer
    pipe = case.pipeline()
    known = set(pipe.named_steps["model"].get_params())
    for source, space in (("grid", t.grid), ("distributions", t.search_space())):
        unknown = sorted(set(space) - known)
        assert not unknown, f"{source} names unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        for key, values in space.items():
            value = _sample(values)
            clone(pipe).set_params(**{f"model__{key}": value})


def check_deterministic(case: TrainerCase) -> None:
    """Two pipelines built and fitted with the same seed predict the holdout identically."""
    from assay.storage.modelio import predictions_hash

    X, y = case.part("train")
    X_test, _ = case.part("test")
    first = predictions_hash(case.fitted, X_test)
    second = predictions_hash(case.pipeline().fit(X, y, **case.fit_params()), X_test)
    assert first == second, "two fits with the same seed predict differently; seed every random state from run.seed"


def check_pipeline(case: TrainerCase) -> None:
    """Inside the core's Pipeline the model predicts sane values and beats a dummy model."""
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor

    X, y = case.part("train")
    X_test, y_test = case.part("test")
    pipe = case.fitted
    pred = np.asarray(pipe.predict(X_test))
    assert pred.shape[0] == len(X_test), f"predict returned {pred.shape[0]} rows for {len(X_test)}"
    classification = case.task in ("binary", "multiclass", "text")
    if classification:
        classes = np.asarray(getattr(pipe, "classes_", []))
        assert len(classes) == y.nunique(), "a classifier must expose classes_ after fit"
        assert set(np.unique(pred)) <= set(classes), "predict returned labels outside classes_"
        if hasattr(pipe, "predict_proba"):
            proba = np.asarray(pipe.predict_proba(X_test))
            assert proba.shape == (len(X_test), len(classes)), f"predict_proba has shape {proba.shape}"
            assert np.allclose(proba.sum(axis=1), 1.0), "predict_proba rows do not sum to 1"
    else:
        assert np.isfinite(pred.astype(float)).all(), "predict returned NaN or infinite values"
    from assay.kit import known_metrics, metric, score_model, score_ranking

    metric_name = case.run().spec.metric
    if metric_name not in known_metrics():
        return
    if case.task == "ranking":
        # a constant score ranks each query's items by the metric's seeded tie-break: chance
        queries = case.queries("test")
        assert queries is not None, "a ranking dataset needs a group column (the query id)"
        mine = score_ranking(y_test, pred, queries, (metric_name,))[metric_name]
        base = score_ranking(y_test, np.zeros(len(y_test)), queries, (metric_name,))[metric_name]
        dummy_name = "a constant score's"
    else:
        dummy = (DummyRegressor() if case.task == "regression" else DummyClassifier(strategy="prior")).fit(X, y)
        mine = score_model(pipe, X_test, y_test, (metric_name,)).get(metric_name)
        base = score_model(dummy, X_test, y_test, (metric_name,)).get(metric_name)
        dummy_name = "a dummy model's"
    assert mine is not None, f"{metric_name} could not be computed from the model's predictions"
    better = base is None or (mine > base if metric(metric_name).greater_is_better else mine < base)
    assert better, f"{metric_name} {mine:.4f} does not beat {dummy_name} {base:.4f}"


def check_skops_roundtrip(case: TrainerCase) -> None:
    """The fitted pipeline saves with skops and loads trusting only the types the trainer declares."""
    import numpy as np

    from assay.errors import Finding
    from assay.storage.modelio import load_model, predictions_hash, save_model
    from assay.storage.store import ArtifactStore

    X_test, _ = case.part("test")
    pipe = case.fitted
    store = ArtifactStore(case.home)
    digest = save_model(store, pipe)
    try:
        loaded = load_model(store, digest, trainers=[case.trainer])
    except Finding as exc:
        raise AssertionError(f"{exc.message}: declare them in the Trainer's trusted_types, or avoid them") from exc
    assert predictions_hash(loaded, X_test) == predictions_hash(pipe, X_test), "the loaded model predicts differently"
    assert np.array_equal(np.asarray(loaded.predict(X_test)), np.asarray(pipe.predict(X_test)))


CHECKS: tuple[Callable[[TrainerCase], None], ...] = (
    check_registration,
    check_init_stores_params,
    check_clone,
    check_fit_returns_self,
    check_learned_attributes,
    check_unfitted_refuses,
    check_search_space,
    check_deterministic,
    check_pipeline,
    check_skops_roundtrip,
)


def _parent_init_args(cls: type) -> set[str]:
    """Arguments of the base classes' ``__init__`` (a meta-estimator may store those too, as scikit-learn allows)."""
    import inspect

    names: set[str] = set()
    for parent in cls.__mro__[1:]:
        init = parent.__dict__.get("__init__")
        if init is None or parent is object:
            continue
        try:
            names |= set(inspect.signature(init).parameters) - {"self"}
        except (TypeError, ValueError):
            continue
    return names


def _params_repr(est: Any) -> dict[str, str]:
    return {k: repr(v) for k, v in est.get_params(deep=False).items()}


def _sample(values: Any) -> Any:
    if hasattr(values, "rvs"):
        return values.rvs(random_state=0)
    values = list(values)
    assert values, "an empty list of values cannot be searched"
    return values[0]


# --------------------------------------------------------------------------- running


def trainer_checks(trainer: Trainer, task: str, dataset: Dataset | None = None,
                   seed: int = 0) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(check name, zero-argument callable)`` pairs for ``trainer`` on ``task``."""
    case = TrainerCase(trainer, task, dataset if dataset is not None else sample_dataset(task), seed)
    for check in CHECKS:
        yield check.__name__, functools.partial(check, case)


def check_trainer(trainer: Trainer, task: str, dataset: Dataset | None = None, seed: int = 0) -> list[CheckResult]:
    """Run every conformance check; return the results or raise :class:`TrainerCheckFailed`.

    :param trainer: the trainer a plugin registers.
    :param task: one of the trainer's tasks.
    :param dataset: data to check on (default: a bundled sample for ``task``; see :func:`make_dataset`).
    :param seed: the run seed the trainer is built with.
    """
    results = _run_checks(trainer_checks(trainer, task, dataset, seed))
    failures = {r.name: r.message for r in results if not r.passed}
    if failures:
        raise TrainerCheckFailed(trainer.name, task, failures)
    return results


def _only(*plugins: object) -> Any:
    """A plugin manager with ``plugins`` alone (each validated: unknown hooks are an error)."""
    from assay.kernel.manager import PluginManager, register_plugin

    pm = PluginManager()
    for i, plugin in enumerate(plugins):
        register_plugin(pm, plugin, getattr(plugin, "__name__", f"plugin{i}"), strict=True)
    return pm


def registered_trainers(*plugins: object) -> list[Trainer]:
    """The trainers that ``plugins`` (modules or objects with ``register_trainers``) register."""
    from assay.kernel.runner import collect_trainers

    return list(collect_trainers(_only(*plugins)).values())


def registered_tuners(*plugins: object) -> list[Tuner]:
    """The tuners that ``plugins`` (modules or objects with ``register_tuners``) register."""
    from assay.kernel.runner import collect_tuners

    return list(collect_tuners(_only(*plugins)).values())


def parametrize_trainer_checks(trainers: Iterable[Trainer], tasks: Sequence[str] | None = None,
                               datasets: dict[str, Dataset] | None = None) -> Any:
    """A ``pytest.mark.parametrize`` over every (trainer, task, check): the test gets ``trainer_check``.

    :param trainers: the trainers to check.
    :param tasks: the tasks to check them on (default: each trainer's tasks that have data).
    :param datasets: data per task, for tasks without a bundled sample (text, ranking) or your own.
    """
    import pytest

    datasets = datasets or {}
    params = []
    for trainer in trainers:
        wanted = [t for t in (tasks or sorted(trainer.tasks)) if t in trainer.tasks]
        for task in wanted:
            if task not in datasets and task not in SAMPLE_TASKS:
                params.append(pytest.param(None, id=f"{trainer.name}[{task}]",
                                           marks=pytest.mark.skip(reason=f"no dataset for task {task!r}")))
                continue
            for name, check in _lazy_checks(trainer, task, datasets.get(task)):
                params.append(pytest.param(check, id=f"{trainer.name}[{task}]-{name}"))
    return pytest.mark.parametrize("trainer_check", params)


def _lazy_checks(trainer: Trainer, task: str, dataset: Dataset | None) -> Iterator[tuple[str, Callable[[], None]]]:
    """Like :func:`trainer_checks`, but loads the data when a check runs, not at collection."""

    @functools.cache
    def case() -> TrainerCase:
        return TrainerCase(trainer, task, dataset if dataset is not None else sample_dataset(task))

    for check in CHECKS:
        yield check.__name__, _Deferred(check, case)


@dataclass(frozen=True)
class _Deferred:
    check: Callable[[TrainerCase], None]
    case: Callable[[], TrainerCase]

    def __call__(self) -> None:
        self.check(self.case())

    def __repr__(self) -> str:
        return self.check.__name__


# --------------------------------------------------------------------------- tuners


class TunerCheckFailed(AssertionError):
    """One or more tuner conformance checks failed; ``failures`` maps check name to the reason."""

    def __init__(self, tuner: str, failures: dict[str, str]) -> None:
        self.tuner, self.failures = tuner, failures
        lines = "\n".join(f"  {name}: {reason}" for name, reason in failures.items())
        super().__init__(f"tuner {tuner!r} failed {len(failures)} conformance check(s):\n{lines}")


class _RecordedFolds:
    """The folds a search is handed, counting how often it asks for them (a tuner must use these)."""

    def __init__(self, folds: Sequence[tuple[Any, Any]]) -> None:
        self.folds = list(folds)
        self.calls = 0

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[tuple[Any, Any]]:
        self.calls += 1
        yield from self.folds

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.folds)


def _logistic(task: str, run: Run | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000)


#: the family a tuner is checked with: a grid and distributions over one real parameter
TUNER_FAMILY = Trainer("conformance_logistic", frozenset({"binary"}), _logistic,
                       grid={"C": [0.01, 0.1, 1.0, 10.0]},
                       distributions={"C": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]},
                       preprocessing="scaled")


@dataclass
class TunerCase:
    """What the tuner checks share: the tuner, a family, real data, folds over the training part."""

    tuner: Tuner
    trainer: Trainer = TUNER_FAMILY
    budget: int = 4
    seed: int = 0

    @functools.cached_property
    def data(self) -> tuple[Any, Any, Any, Any, list[tuple[Any, Any]]]:
        import numpy as np
        from sklearn.model_selection import StratifiedKFold, train_test_split

        d = sample_dataset("binary")
        X, y = d.frame[d.features], d.frame[d.target]
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros(len(y_train)), y_train))
        return X_train, y_train, X_test, y_test, folds

    def request(self, budget: int | None = None, seed: int | None = None) -> tuple[SearchRequest, _RecordedFolds]:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        *_, folds = self.data
        cv = _RecordedFolds(folds)
        pipeline = Pipeline([("prep", StandardScaler()), ("model", self.trainer.build("binary", None))])
        request = SearchRequest(pipeline, self.trainer, cv, "roc_auc", self.budget if budget is None else budget,
                                self.seed if seed is None else seed, 1)
        return request, cv

    def search(self, budget: int | None = None, seed: int | None = None) -> tuple[Any, _RecordedFolds]:
        X, y, *_ = self.data
        request, cv = self.request(budget, seed)
        search = self.tuner.make_search(request)
        returned = search.fit(X, y)
        assert returned is search, f"fit returned {type(returned).__name__}, not the search itself"
        return search, cv

    @functools.cached_property
    def fitted(self) -> tuple[Any, _RecordedFolds]:
        return self.search()


def check_tuner_registration(case: TunerCase) -> None:
    """The tuner is a Tuner with an identifier name and a callable ``make_search(request)``."""
    t = case.tuner
    assert isinstance(t, Tuner), f"expected an assay.kernel.types.Tuner, got {type(t).__name__}"
    assert t.name and t.name.isidentifier(), f"name {t.name!r} must be a non-empty identifier"
    assert callable(t.make_search), "make_search must be callable as make_search(request)"
    request, _ = case.request()
    search = t.make_search(request)
    assert callable(getattr(search, "fit", None)), f"make_search returned {type(search).__name__}, which has no fit()"
    assert not hasattr(search, "best_estimator_"), "make_search must return an unfitted search"


def check_search_results(case: TunerCase) -> None:
    """After ``fit``: ``best_estimator_``, ``best_params_``, ``best_index_``, ``best_score_`` and ``cv_results_``."""
    import numpy as np

    search, _ = case.fitted
    for name in ("best_estimator_", "best_params_", "best_index_", "best_score_", "cv_results_"):
        assert hasattr(search, name), f"the fitted search has no {name}"
    results = search.cv_results_
    for key in ("params", "mean_test_score", "std_test_score"):
        assert key in results, f"cv_results_ has no {key!r}"
    n = len(results["params"])
    assert n >= 1, "cv_results_ lists no candidate"
    assert len(results["mean_test_score"]) == n == len(results["std_test_score"]), \
        "cv_results_ columns have different lengths"
    assert 0 <= int(search.best_index_) < n, f"best_index_ {search.best_index_} is outside 0..{n - 1}"
    best = float(results["mean_test_score"][search.best_index_])
    assert np.isclose(best, float(search.best_score_)), \
        f"best_score_ {search.best_score_} is not cv_results_['mean_test_score'][best_index_] ({best})"
    assert dict(results["params"][search.best_index_]) == dict(search.best_params_), \
        "best_params_ is not cv_results_['params'][best_index_]"


def check_budget(case: TunerCase) -> None:
    """A search tries at most ``budget`` distinct settings (halving lists each round), a budget of 1 one."""
    search, _ = case.fitted
    n = _distinct(search.cv_results_["params"])
    assert n <= case.budget, f"{n} candidate settings tried for a budget of {case.budget}"
    one, _ = case.search(budget=1)
    assert _distinct(one.cv_results_["params"]) == 1, "a budget of 1 must try one candidate setting"


def _distinct(params: Iterable[Mapping[str, Any]]) -> int:
    return len({repr(sorted(p.items())) for p in params})


def check_uses_the_folds(case: TunerCase) -> None:
    """The search scores candidates on the folds it is given (``request.cv``), never on its own split."""
    _, cv = case.fitted
    assert cv.calls >= 1, "the search never asked request.cv for its folds; pass it as cv= (never split yourself)"


def check_params_in_space(case: TunerCase) -> None:
    """Every parameter the search sets is a ``model__`` parameter of the family's search space."""
    search, _ = case.fitted
    space = {f"model__{k}" for k in case.trainer.search_space()} | {f"model__{k}" for k in case.trainer.grid}
    for params in search.cv_results_["params"]:
        unknown = sorted(set(params) - space)
        assert not unknown, f"a candidate sets {', '.join(unknown)}, outside the family's space ({', '.join(sorted(space))})"


def check_tuner_deterministic(case: TunerCase) -> None:
    """Two searches with the same seed try the same candidates and pick the same best."""
    first, _ = case.fitted
    second, _ = case.search()
    assert [dict(p) for p in first.cv_results_["params"]] == [dict(p) for p in second.cv_results_["params"]], \
        "two searches with the same seed tried different candidates; draw them from request.seed"
    assert dict(first.best_params_) == dict(second.best_params_)


def check_refit(case: TunerCase) -> None:
    """``best_estimator_`` is refitted on all the rows ``fit`` got, and predicts new ones."""
    import numpy as np

    search, _ = case.fitted
    X, y, X_test, _, _ = case.data
    best = search.best_estimator_
    model = best.named_steps["model"] if hasattr(best, "named_steps") else best
    assert getattr(model, "n_features_in_", X.shape[1]) == X.shape[1]
    seen = getattr(best, "classes_", None)
    assert seen is not None and set(np.asarray(seen)) == set(np.unique(y)), "best_estimator_ is not fitted on y"
    assert len(best.predict(X_test)) == len(X_test)


TUNER_CHECKS: tuple[Callable[[TunerCase], None], ...] = (
    check_tuner_registration,
    check_search_results,
    check_budget,
    check_uses_the_folds,
    check_params_in_space,
    check_tuner_deterministic,
    check_refit,
)


def check_tuner(tuner: Tuner, budget: int = 4, seed: int = 0) -> list[CheckResult]:
    """Run every tuner conformance check on a real dataset; return the results or raise :class:`TunerCheckFailed`.

    :param tuner: the tuner a plugin registers.
    :param budget: the candidate settings the search may try.
    :param seed: the run seed the search gets.
    """
    case = TunerCase(tuner, budget=budget, seed=seed)
    results = _run_checks([(c.__name__, functools.partial(c, case)) for c in TUNER_CHECKS])
    failures = {r.name: r.message for r in results if not r.passed}
    if failures:
        raise TunerCheckFailed(tuner.name, failures)
    return results


def _run_checks(checks: Iterable[tuple[str, Callable[[], None]]]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name, check in checks:
        try:
            check()
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, AssertionError):
                message = f"{type(exc).__name__}: {message}"
            results.append(CheckResult(name, False, message))
        else:
            results.append(CheckResult(name, True))
    return results


# --------------------------------------------------------------------------- the check harness


@dataclass(frozen=True)
class Prepared:
    """A real run context, dataset and split, built from a spec by the installed plugins.

    Nothing is recorded: it is what a run has in hand before its stages, for calling a check
    plugin's hooks the way the runner does (:func:`run_hook`).
    """

    run: Run
    dataset: Dataset
    splits: Splits
    runner: Any

    def fit(self, candidates: Sequence[str] | None = None, tuning: str = "none") -> FittedModel:
        """Search and refit ``candidates`` with the installed ``fit_model`` (as the train stage does).

        ``candidates`` left out: the spec's first candidate for the task (``train.candidates``,
        else every family for the task, in registration order).
        """
        return fit(self, candidates, tuning)


def prepare(spec_path: Path | str, overrides: Sequence[str] | None = None, home: Path | None = None,
            plugins: Iterable[tuple[str, object]] = ()) -> Prepared:
    """Load and split the data of ``spec_path`` (``--set`` style ``overrides``) with the installed plugins.

    :param home: the state directory the run context points at (default ``.assay`` beside the spec).
    :param plugins: extra ``(name, plugin)`` pairs, e.g. the plugin under test.
    """
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec
    from assay.storage.settings import Settings

    spec, base_dir = load_spec(Path(spec_path), list(overrides or []))
    settings = Settings.resolve(home or base_dir / ".assay")
    runner = Runner(make_plugin_manager(extra_plugins=plugins), settings, spec, Path(spec_path))
    run, dataset, _policy = runner.prepare()
    splits = runner.call("split_data", run=run, dataset=dataset)
    return Prepared(run, dataset, splits, runner)


def fit(prepared: Prepared, candidates: Sequence[str] | None = None, tuning: str = "none") -> FittedModel:
    """``fit_model`` on the prepared split for the named families and tuner (the training part only).

    ``candidates`` left out: the spec's first candidate for the task (``train.candidates``,
    else the first family registered for the task).
    """
    run = prepared.run
    if candidates is None:
        candidates = [prepared.runner.choose_trainers(run, prepared.dataset.task)[0].name]
    unknown = [c for c in candidates if c not in run.trainers]
    if unknown:
        raise ValueError(f"no trainer named {unknown[0]!r} (installed: {', '.join(sorted(run.trainers))})")
    if tuning not in run.tuners:
        raise ValueError(f"no tuner named {tuning!r} (installed: {', '.join(sorted(run.tuners))})")
    model: FittedModel = prepared.runner.call("fit_model", run=run, splits=prepared.splits,
                                              trainers=[run.trainers[c] for c in candidates],
                                              tuner=run.tuners[tuning], sample_weights=None)
    return model


def scores(run: Run, model: FittedModel, splits: Splits) -> Any:
    """The :class:`~assay.kernel.types.Scores` the runner hands ``evaluate``: the baseline (from the installed
    ``fit_baseline``) and the model and baseline predictions on the holdout and the scored training rows."""
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner

    runner = Runner(make_plugin_manager(), run.settings, run.spec, Path(run.spec_path))
    return runner.score(run, model, splits)


def run_hook(plugin: object, hook: str, prepared: Prepared, model: FittedModel | None = None) -> list[Any]:
    """Call ``plugin``'s own ``hook`` (``validate_data``, ``check_split`` or ``evaluate``) as a run would.

    The plugin is called alone (no other plugin's results mixed in), with the arguments the
    runner passes at that stage; ``evaluate`` needs the ``model`` (see :meth:`Prepared.fit`).
    Returns the plugin's results as one list.
    """
    from assay.kernel.runner import Runner

    r = prepared.runner
    alone = Runner(_only(plugin), r.settings, r.spec, r.spec_path)
    kwargs: dict[str, Any] = {"run": prepared.run}
    if hook == "validate_data":
        kwargs["dataset"] = prepared.dataset
    elif hook == "check_split":
        kwargs.update(splits=prepared.splits, target_domain=None)
    elif hook == "evaluate":
        if model is None:
            raise ValueError("evaluate needs the fitted model: run_hook(plugin, 'evaluate', prepared, prepared.fit())")
        kwargs.update(model=model, splits=prepared.splits, target_domain=None,
                      scores=r.score(prepared.run, model, prepared.splits))
    else:
        raise ValueError(f"run_hook: {hook!r} is not a check hook (validate_data, check_split, evaluate)")
    results = alone.call(hook, **kwargs)
    return [item for batch in results or [] for item in (batch or [])]


def by_name(results: Iterable[Any]) -> dict[str, Check]:
    """``{name: Check}`` of the checks in a hook's results (Evidence items are skipped)."""
    return {c.name: c for c in results if isinstance(c, Check)}


# --------------------------------------------------------------------------- check plugins


class CheckPluginFailed(AssertionError):
    """A check plugin broke the contract of check results; ``failures`` maps check name to the reason."""

    def __init__(self, plugin: str, failures: dict[str, str]) -> None:
        self.plugin, self.failures = plugin, failures
        lines = "\n".join(f"  {name}: {reason}" for name, reason in failures.items())
        super().__init__(f"check plugin {plugin!r} failed {len(failures)} conformance check(s):\n{lines}")


STATUSES = ("pass", "warn", "fail", "error", "skip")
CHECK_HOOKS = ("validate_data", "check_split", "evaluate")


def _identifier(text: str) -> bool:
    return bool(text) and text.replace("_", "a").replace("-", "a").isalnum() and text == text.lower()


def _check_results(results: list[Any], where: str) -> None:
    import json

    from assay.kernel.types import to_jsonable

    seen: set[tuple[str, str]] = set()
    for item in results:
        if isinstance(item, Check):
            key = (item.group, item.name)
            assert _identifier(item.group) and _identifier(item.name), \
                f"{where}: check {item.group}.{item.name}: group and name must be lower-case identifiers"
            assert key not in seen, f"{where}: check {item.group}.{item.name} is reported twice"
            seen.add(key)
            assert item.status in STATUSES, f"{where}: check {item.group}.{item.name}: status {item.status!r} is not one of {STATUSES}"
            value = item.value
            assert value is None or isinstance(value, (int, float, str)), \
                f"{where}: check {item.group}.{item.name}: value must be a number, a string or None, not {type(value).__name__}"
            if isinstance(value, float):
                assert value == value and value not in (float("inf"), float("-inf")), \
                    f"{where}: check {item.group}.{item.name}: value {value} is not finite; use None and say why in detail"
            if value is None and item.status not in ("skip", "pass"):
                assert item.detail or item.message, \
                    f"{where}: check {item.group}.{item.name}: no value and no detail or message saying why"
            json.dumps(item.to_evidence(), allow_nan=False)
        elif isinstance(item, Evidence):
            assert _identifier(item.section), f"{where}: evidence section {item.section!r} must be a lower-case identifier"
            try:
                json.dumps(to_jsonable(item.data), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise AssertionError(f"{where}: evidence section {item.section!r} is not JSON data: {exc}") from exc
        else:
            raise AssertionError(f"{where}: returned a {type(item).__name__}; return Check and Evidence values")


def check_plugin(plugin: object, prepared: Prepared, model: FittedModel | None = None) -> list[CheckResult]:
    """Check a check plugin's results on real data; return the results or raise :class:`CheckPluginFailed`.

    For each of ``validate_data``, ``check_split`` and ``evaluate`` the plugin implements:
    every result is a :class:`Check` or :class:`Evidence`; names are lower-case identifiers,
    reported once; statuses are one of :data:`STATUSES`; values are finite numbers, strings or
    ``None`` with a reason; everything serializes to JSON without NaN; a second call returns
    the same results; and the data handed in is left unchanged.

    :param plugin: the plugin module or object.
    :param prepared: a run context from :func:`prepare`.
    :param model: the fitted model for ``evaluate`` (default: ``prepared.fit()`` when needed).
    """
    from assay.kernel.dataset import fingerprint_frame
    from assay.kernel.types import to_jsonable

    implemented = {c.name for c in _only(plugin).get_hookcallers(plugin) or []} & set(CHECK_HOOKS)
    name = getattr(plugin, "__name__", type(plugin).__name__)
    checks: list[tuple[str, Callable[[], None]]] = []
    if not implemented:
        checks.append(("check_implements_a_check_hook", functools.partial(_fail, f"{name} implements none of {CHECK_HOOKS}")))
    if "evaluate" in implemented and model is None:
        model = prepared.fit()
    for hook in CHECK_HOOKS:
        if hook not in implemented:
            continue

        def conforms(hook: str = hook) -> None:
            before = fingerprint_frame(prepared.dataset.frame)
            first = run_hook(plugin, hook, prepared, model)
            assert fingerprint_frame(prepared.dataset.frame) == before, f"{hook} changed the dataset it was given"
            _check_results(first, hook)
            second = run_hook(plugin, hook, prepared, model)
            assert to_jsonable(_evidence_of(first)) == to_jsonable(_evidence_of(second)), \
                f"{hook}: a second call on the same data returned different results; seed from run.seed"

        checks.append((f"check_{hook}_results", conforms))
    results = _run_checks(checks)
    failures = {r.name: r.message for r in results if not r.passed}
    if failures:
        raise CheckPluginFailed(name, failures)
    return results


def _fail(message: str) -> None:
    raise AssertionError(message)


def _evidence_of(results: list[Any]) -> list[Any]:
    return [(r.group, r.name, r.to_evidence()) if isinstance(r, Check) else (r.section, r.data) for r in results]
