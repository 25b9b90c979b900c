"""A conformance kit for trainer plugins (``assay.testing``).

A trainer plugin contributes a :class:`~assay.types.Trainer` whose ``build(task, run)``
returns an unfitted scikit-learn estimator. The core relies on that estimator keeping
scikit-learn's contract; these checks prove it on small real datasets that ship with
scikit-learn (breast cancer, wine, diabetes) or on a dataset you pass::

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
works inside the core's ``Pipeline`` and beats a dummy model; the fitted pipeline
round-trips through skops with :mod:`assay.modelio` (no untrusted types).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.types import Dataset, Run, Trainer

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
    from assay.dataset import fingerprint_frame, infer_roles

    spec = _spec(target, task, data)
    roles = infer_roles(frame, spec)
    return Dataset(frame, target, task, roles, fingerprint_frame(frame), "conformance", "conformance")


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
    from assay.spec import RunSpec

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
        from assay.settings import Settings

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

    def pipeline(self, seed: int | None = None) -> Any:
        from assay.plugins.training import make_pipeline_for

        X, _ = self.part("train")
        return make_pipeline_for(self.trainer, self.run(seed), self.dataset, X)

    @functools.cached_property
    def fitted(self) -> Any:
        """The core's pipeline fitted on the training part (shared by the checks that only read it)."""
        X, y = self.part("train")
        return self.pipeline().fit(X, y)

    @functools.cached_property
    def bare_fit(self) -> BareFit:
        """The bare estimator fitted on the preprocessed training part, with what it was before."""
        Xt, y, _ = self.transformed
        est = self.build()
        attributes, params = set(vars(est)), _params_repr(est)
        return BareFit(est, est.fit(Xt, y), attributes, params)

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
    assert isinstance(t, Trainer), f"expected an assay.types.Trainer, got {type(t).__name__}"
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
    from assay.modelio import predictions_hash

    X, y = case.part("train")
    X_test, _ = case.part("test")
    first = predictions_hash(case.fitted, X_test)
    second = predictions_hash(case.pipeline().fit(X, y), X_test)
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
    metric_name = case.run().spec.metric
    from assay.kit import known_metrics, score_model

    if metric_name not in known_metrics():
        return
    dummy = (DummyRegressor() if case.task == "regression" else DummyClassifier(strategy="prior")).fit(X, y)
    mine = score_model(pipe, X_test, y_test, (metric_name,)).get(metric_name)
    base = score_model(dummy, X_test, y_test, (metric_name,)).get(metric_name)
    assert mine is not None, f"{metric_name} could not be computed from the model's predictions"
    from assay.kit import metric

    better = base is None or (mine > base if metric(metric_name).greater_is_better else mine < base)
    assert better, f"{metric_name} {mine:.4f} does not beat a dummy model's {base:.4f}"


def check_skops_roundtrip(case: TrainerCase) -> None:
    """The fitted pipeline saves with skops and loads trusting only the types the trainer declares."""
    import numpy as np

    from assay.errors import Finding
    from assay.modelio import load_model, predictions_hash, save_model
    from assay.store import ArtifactStore

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
    results: list[CheckResult] = []
    for name, check in trainer_checks(trainer, task, dataset, seed):
        try:
            check()
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, AssertionError):
                message = f"{type(exc).__name__}: {message}"
            results.append(CheckResult(name, False, message))
        else:
            results.append(CheckResult(name, True))
    failures = {r.name: r.message for r in results if not r.passed}
    if failures:
        raise TrainerCheckFailed(trainer.name, task, failures)
    return results


def registered_trainers(*plugins: object) -> list[Trainer]:
    """The trainers that ``plugins`` (modules or objects with ``register_trainers``) register."""
    from assay.manager import PluginManager, register_plugin

    pm = PluginManager()
    for i, plugin in enumerate(plugins):
        register_plugin(pm, plugin, getattr(plugin, "__name__", f"plugin{i}"), strict=True)
    found: list[Trainer] = []
    pm.hook.register_trainers(register=found.append)
    return found


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
