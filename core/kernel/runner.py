"""The runner: the one place that calls hooks, in the order of a run.

data → split → train → evaluate → gate, each step recorded through the ``record`` hook.
User errors found before the run starts (spec, data, columns) leave nothing behind;
once the run has started, any failure is recorded as ``run_failed`` and the run is
``errored`` — the gate fails closed.
"""

from __future__ import annotations

import contextlib
import difflib
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from assay.errors import AssayError, BadInput, InternalError
from assay.kernel.ids import new_run_id
from assay.kernel.manager import PluginManager
from assay.kernel.spec import RunSpec
from assay.kernel.types import (
    Baseline,
    Check,
    Dataset,
    Event,
    EventKind,
    Evidence,
    FittedModel,
    Predictions,
    RuleOutcome,
    Run,
    SampleWeights,
    Scores,
    Splits,
    StageSummary,
    Trainer,
    Tuner,
    Verdict,
    to_jsonable,
)
from assay.storage.settings import Settings, redact_secrets, redact_url

if TYPE_CHECKING:
    from datetime import date

    import numpy as np

    from assay.kernel.types import MonitorContext

RegistryItem = TypeVar("RegistryItem", Trainer, Tuner)

#: Training rows the train side of the evaluation scores: all of them up to this many, else a seeded sample.
TRAIN_SCORED = 20_000
#: Up to this many rows are scored on one native thread (see :func:`_few_threads`).
SINGLE_THREAD_ROWS = 100_000
#: The rule id of the outcome that blocks a gate where no rule applied (fail closed).
NO_APPLICABLE_RULE = "no-applicable-rule"

# Signals that end a run through the failure path (recorded, row errored); SIGKILL cannot be caught,
# and the store reports a run whose owner process is gone as killed instead.
FAILURE_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Killed(BaseException):
    """A run was sent SIGTERM or SIGHUP (a BaseException, like KeyboardInterrupt: no handler swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"killed by {signal.Signals(signum).name}")


def _hold_signals() -> None:
    """Ignore further SIGTERM / SIGHUP (the failure is being recorded; a second one would cut that short)."""
    if threading.current_thread() is threading.main_thread():
        for signum in FAILURE_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


@contextmanager
def signals_as_failures() -> Iterator[None]:
    """Turn SIGTERM / SIGHUP into :class:`Killed` for the duration (main thread only; handlers restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        _hold_signals()
        raise Killed(signum)

    previous = {signum: signal.signal(signum, handler) for signum in FAILURE_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@dataclass(frozen=True)
class ImportedModel:
    """A model fitted outside assay, brought under its checks and gate in place of training.

    ``provenance`` (where it came from: the tracking server's run id, the model's URI, ...) is
    recorded in the ``run_started`` and ``model`` records and under ``model.imported`` in the evidence.
    """

    estimator: Any
    family: str
    params: Mapping[str, Any]
    provenance: Mapping[str, Any]


@dataclass
class RunResult:
    """What ``assay run`` reports: the JSON contract of ``assay run --json``."""

    run_id: str
    status: str  # passed | blocked | errored
    evidence: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict | None = None
    model: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            "run_id": self.run_id,
            "status": self.status,
            "model": self.model,
            "metric": ev.get("metric"),
            "metrics": ev.get("metrics", {}),
            "baseline": ev.get("baseline", {}),
            "gap": ev.get("gap", {}),
            "verdict": self.verdict.to_json() if self.verdict else None,
            "error": self.error or None,
        }


def deep_merge(into: dict[str, Any], data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = to_jsonable(value)


def add_results(evidence: dict[str, Any], results: Sequence[Sequence[Check | Evidence] | None],
                products: list[Any] | None = None, product_types: tuple[type, ...] = ()) -> list[Check]:
    """Merge hook results (lists of checks / evidence pieces) into the evidence document.

    Items of ``product_types`` (typed stage products such as :class:`SampleWeights`) are
    appended to ``products`` for the runner to hand on; anything else is a plugin error.
    """
    checks: list[Check] = []
    for batch in results:
        for item in batch or ():
            if isinstance(item, Check):
                evidence.setdefault("checks", {}).setdefault(item.group, {})[item.name] = item.to_evidence()
                checks.append(item)
            elif isinstance(item, Evidence):
                deep_merge(evidence.setdefault(item.section, {}), item.data)
            elif product_types and isinstance(item, product_types) and products is not None:
                products.append(item)
            else:
                expected = ", ".join(["Check", "Evidence", *(t.__name__ for t in product_types)])
                raise InternalError(f"a plugin returned {type(item).__name__}; expected one of {expected}")
    return checks


def check_columns(spec: RunSpec, spec_path: Path, columns: Sequence[str]) -> None:
    """Every column the spec names must exist in the data (exit 2 otherwise)."""
    d = spec.data
    named: list[tuple[str, str]] = [("data.target", d.target)]
    named += [(f"data.{key}", getattr(d, key)) for key in ("id_column", "group_column", "time_column", "text_column")]
    named += [(f"data.{key}", col) for key in ("sensitive", "features", "drop") for col in getattr(d, key)]
    named += [("data.roles", col) for col in d.roles]
    for field_name, col in named:
        if col and col not in columns:
            near = difflib.get_close_matches(col, list(columns), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise BadInput(f"{spec_path}: {field_name}: column {col!r} is not in {redact_url(d.source)}{hint} "
                           f"(columns: {', '.join(columns)})")


def scored_train_rows(splits: Splits) -> np.ndarray:
    """The training rows the evaluation scores: all of them up to ``TRAIN_SCORED``, else a seeded
    random sample (ranking keeps every row: queries must stay whole)."""
    import numpy as np

    train = np.asarray(splits.train)
    if len(train) <= TRAIN_SCORED or splits.dataset.task == "ranking":
        return train
    rng = np.random.default_rng([splits.seed, 11])
    return np.sort(rng.choice(train, TRAIN_SCORED, replace=False))


def _few_threads(rows: int) -> Any:
    """One native thread for scoring up to ``SINGLE_THREAD_ROWS`` rows on a machine busier than its cores.

    Tree ensembles synchronise their OpenMP threads once per tree; on a busy machine that costs
    more than it saves (measured on the Adult example: 0.23-0.36 s single-threaded against
    0.65-1.1 s). Idle, the threads win at every size: a 100-tree boosting model on 2 cores scored
    5,000 rows in 0.011 s against 0.022 s on one thread, 60,000 in 0.10 s against 0.20 s. The
    busy test is the one-minute load average against the core count, as for OpenMP's wait policy.
    """
    from assay.kernel.environment import machine_busy

    if rows > SINGLE_THREAD_ROWS or machine_busy() is False:  # unknown load counts as busy
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def predict_rows(estimator: Any, dataset: Dataset, rows: np.ndarray) -> Predictions:
    """``estimator``'s predictions on the dataset rows at positions ``rows``, in one pass.

    For classifiers with probabilities the prediction is the most probable class (what
    ``predict`` returns for scikit-learn's classifiers), so the model runs once, not twice.
    """
    import numpy as np

    X = dataset.frame.iloc[rows][dataset.features]
    y = dataset.frame[dataset.target].to_numpy()[rows]
    classes = np.asarray(getattr(estimator, "classes_", []))
    with _few_threads(len(rows)):
        if len(classes) and hasattr(estimator, "predict_proba"):
            proba = np.asarray(estimator.predict_proba(X))
            return Predictions(rows, y, classes[np.argmax(proba, axis=1)], proba, classes)
        pred = np.asarray(estimator.predict(X))
        decision = np.asarray(estimator.decision_function(X)) \
            if len(classes) and hasattr(estimator, "decision_function") else None
        return Predictions(rows, y, pred, None, classes, decision)


def _cut(found: Predictions, at: int) -> tuple[Predictions, Predictions]:
    """Split predictions over ``rows[:at]`` and ``rows[at:]`` into two."""

    def part(sl: slice) -> Predictions:
        return Predictions(found.rows[sl], found.y[sl], found.pred[sl],
                           None if found.proba is None else found.proba[sl], found.classes,
                           None if found.decision is None else found.decision[sl])

    return part(slice(None, at)), part(slice(at, None))


def scored_rows(splits: Splits) -> np.ndarray:
    """The rows the run scores, in scoring order: the holdout, then :func:`scored_train_rows`."""
    import numpy as np

    return np.concatenate([np.asarray(splits.test), scored_train_rows(splits)])


def predict_scored_rows(estimator: Any, splits: Splits) -> Predictions:
    """``estimator``'s predictions on :func:`scored_rows`, in one pass."""
    return predict_rows(estimator, splits.dataset, scored_rows(splits))


def holdout_predictions_hash(found: Predictions, splits: Splits) -> str:
    """The model's ``predictions_hash`` from its predictions on :func:`scored_rows`.

    The same digest as :func:`assay.storage.modelio.predictions_hash` on the holdout: the
    probabilities when the model gives them, else what it predicts.
    """
    from assay.storage.modelio import hash_predictions

    test, _ = _cut(found, len(splits.test))
    return hash_predictions(test.proba, "proba") if test.proba is not None else hash_predictions(test.pred, "pred")


def score_splits(model: FittedModel, baseline: Baseline, splits: Splits,
                 model_scored: Predictions | None = None) -> Scores:
    """The model's and the baseline's predictions on the holdout and the scored training rows.

    One prediction call per estimator over both row sets (the holdout first); ``model_scored``
    is the model's from :func:`predict_scored_rows` when the caller already made them.
    """
    import numpy as np

    rows = scored_rows(splits)
    if model_scored is None:
        model_scored = predict_rows(model.estimator, splits.dataset, rows)
    elif not np.array_equal(model_scored.rows, rows):
        raise InternalError("score_splits: the model's predictions are not on the rows this run scores")
    model_test, model_train = _cut(model_scored, len(splits.test))
    base_test, base_train = _cut(predict_rows(baseline.estimator, splits.dataset, rows), len(splits.test))
    return Scores(model_test, model_train, baseline, base_test, base_train)


class StageMeter:
    """Wall time, CPU time (own + children) and peak memory per stage, for ``cost``."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @staticmethod
    def _cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), self._cpu()
        try:
            yield
        finally:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.stages[stage] = {"wall_s": round(time.perf_counter() - wall, 4),
                                  "cpu_s": round(self._cpu() - cpu, 4), "peak_mb": round(peak_mb, 1)}

    def summary(self) -> dict[str, Any]:
        return {
            "wall_s": round(sum(s["wall_s"] for s in self.stages.values()), 4),
            "cpu_s": round(sum(s["cpu_s"] for s in self.stages.values()), 4),
            "peak_mb": max((s["peak_mb"] for s in self.stages.values()), default=0.0),
            "stages": self.stages,
        }


class Runner:
    """Runs one spec through the hooks of a plugin manager."""

    def __init__(self, pm: PluginManager, settings: Settings, spec: RunSpec, spec_path: Path,
                 imported: ImportedModel | None = None, replay_of: str = "") -> None:
        self.pm = pm
        self.settings = settings
        self.spec = spec
        self.spec_path = spec_path
        self.base_dir = spec_path.parent
        self.meter = StageMeter()
        #: a model fitted elsewhere: the train stage records it instead of calling ``fit_model``
        self.imported = imported
        #: the run this one replays (``facts.replay_of`` in the evidence), if any
        self.replay_of = replay_of
        #: the stage running now, named when a run fails
        self.current_stage = "start"

    # ------------------------------------------------------------------ registries (see collect_* below)
    def collect_trainers(self) -> dict[str, Trainer]:
        return collect_trainers(self.pm)

    def collect_tuners(self) -> dict[str, Tuner]:
        return collect_tuners(self.pm)

    def collect_policies(self) -> dict[str, str]:
        return collect_policies(self.pm)

    def choose_trainers(self, run: Run, task: str) -> list[Trainer]:
        available = {n: t for n, t in run.trainers.items() if task in t.tasks}
        wanted = self.spec.train.candidates or list(available)
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise BadInput(f"{self.spec_path}: train.candidates: no {task} trainer named {unknown[0]!r} "
                           f"(available for {task}: {', '.join(sorted(available)) or 'none'})")
        if not wanted:
            raise BadInput(f"{self.spec_path}: data.task: no trainer plugin supports task {task!r}")
        return [available[n] for n in wanted]

    def choose_tuner(self, run: Run) -> Tuner:
        name = self.spec.train.tuning
        if name not in run.tuners:
            near = difflib.get_close_matches(name, list(run.tuners), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise BadInput(f"{self.spec_path}: train.tuning: unknown tuner {name!r}{hint} "
                           f"(available: {', '.join(sorted(run.tuners))})")
        return run.tuners[name]

    # ------------------------------------------------------------------ helpers
    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call one hook: the fail-closed wrapper around every hook call of a run.

        An :class:`AssayError` a plugin raises (bad input, a finding) keeps its meaning; any
        other exception becomes an :class:`InternalError` naming the hook and the plugin, so the
        run is recorded as errored with a reason and the gate fails closed.
        """
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except AssayError:
            raise
        except Exception as exc:
            culprit = _raising_plugin(self.pm, exc)
            who = f"plugin {culprit!r}" if culprit else "a plugin"
            raise InternalError(f"{who} failed in hook {hook} (stage {self.current_stage!r}): "
                                f"{type(exc).__name__}: {exc}") from exc

    def record(self, run: Run, kind: EventKind, payload: Mapping[str, Any]) -> None:
        # Every record passes here, whichever plugin built its payload: no URL password gets signed.
        self.call("record", run=run, event=Event(kind, redact_secrets(to_jsonable(payload))))

    @contextmanager
    def stage(self, run: Run, name: str) -> Iterator[Callable[..., None]]:
        """Run a stage between ``stage_started`` and ``stage_finished``, metered.

        Yields ``report(**values)``: the stage names what it produced, and ``stage_finished``
        receives it as a frozen :class:`StageSummary`.
        """
        self.current_stage = name
        self.call("stage_started", run=run, stage=name)
        produced: dict[str, Any] = {}
        with self.meter.measure(name):
            yield produced.update
        self.call("stage_finished", run=run, stage=name, summary=StageSummary(name, MappingProxyType(dict(produced))))

    def _relay_progress(self, run: Run, stage: str, done: int, total: int, label: str) -> None:
        self.call("stage_progress", run=run, stage=stage, done=done, total=total, label=label)

    def load_dataset(self, source: str, field: str = "data.source") -> Dataset:
        dataset = self.call("load_data", spec=self.spec, source=source, base_dir=str(self.base_dir))
        if dataset is None:
            raise BadInput(f"{self.spec_path}: {field}: no loader understands {redact_url(source)!r} "
                           "(use a .csv or .parquet path, or a SQLAlchemy URL with data.query)")
        return dataset

    def load_policy(self) -> Any:
        from assay.policies import load_policy

        return load_policy(self.spec.gate.policy, self.base_dir, self.collect_policies())

    # ------------------------------------------------------------------ the run
    def prepare(self) -> tuple[Run, Dataset, Any]:
        """Everything that can fail on user input, before anything is written."""
        try:
            return self._prepare()
        except BadInput as exc:
            if not exc.message.startswith(str(self.spec_path)):  # always name the spec file
                raise BadInput(f"{self.spec_path}: {exc.message}") from None
            raise

    def _prepare(self) -> tuple[Run, Dataset, Any]:
        from assay.kernel.spec import check_plugin_sections

        check_plugin_sections(self.spec, self.spec_path, self.pm)
        run = Run(run_id=new_run_id(), spec=self.spec, spec_path=str(self.spec_path), settings=self.settings,
                  trainers=self.collect_trainers(), tuners=self.collect_tuners(), on_progress=self._relay_progress)
        policy = self.load_policy()
        self.choose_tuner(run)
        with self.meter.measure("load"):
            dataset = self.load_dataset(self.spec.data.source)
        check_columns(self.spec, self.spec_path, [str(c) for c in dataset.frame.columns])
        self.choose_trainers(run, dataset.task)
        return run, dataset, policy

    def execute(self, prepared: tuple[Run, Dataset, Any] | None = None) -> RunResult:
        """Run every stage; ``prepared`` is :meth:`prepare`'s result when the caller already has it (replay)."""
        from assay.kernel.environment import capture
        from assay.storage.store import RunRow, RunStore

        run, dataset, policy = prepared or self.prepare()
        store = RunStore(self.settings)
        environment = capture(self.base_dir)
        # The spec as recorded and hashed: URL passwords redacted (replay reads them back from the spec file).
        recorded_spec = RunSpec.model_validate(redact_secrets(self.spec.model_dump(mode="json")))
        store.create_run(RunRow(run_id=run.run_id, project=self.spec.project.name, spec_path=str(self.spec_path),
                                spec_json=recorded_spec.model_dump_json(), spec_hash=recorded_spec.hash))
        self.current_stage = "start"
        evidence: dict[str, Any] = {
            "run_id": run.run_id,
            "project": self.spec.project.name,
            "spec_hash": recorded_spec.hash,
            "policy_hash": policy.hash,
            "task": dataset.task,
            "metric": self.spec.metric,
            "environment": environment,
            # One seed drives the holdout split, the CV folds, the search and the estimators.
            "seeds": {name: self.spec.split.seed for name in ("split", "cv", "search", "model")},
        }
        with signals_as_failures():
            return self._run(run, dataset, policy, evidence, store, recorded_spec, environment)

    def _run(self, run: Run, dataset: Dataset, policy: Any, evidence: dict[str, Any], store: Any,
             recorded_spec: RunSpec, environment: dict[str, Any]) -> RunResult:
        try:
            self.call("run_started", run=run)
            # The policy's parsed document rides along, so the ledger alone says what the run was held to.
            self.record(run, "run_started", {"project": self.spec.project.name, "spec": recorded_spec.model_dump(mode="json"),
                                             "spec_hash": recorded_spec.hash, "spec_path": str(self.spec_path),
                                             "environment": environment,
                                             "policy": {"name": policy.name, "hash": policy.hash,
                                                        "approvals": policy.approvals,
                                                        "document": to_jsonable(policy.document)},
                                             **({"imported": dict(self.imported.provenance)} if self.imported else {})})
            verdict, model_info = self._stages(run, dataset, policy, evidence, store)
            _hold_signals()  # the stages are done: a late SIGTERM must not leave the run half-finished
        except BaseException as exc:
            return self._fail(run, exc, evidence, store)
        status = "passed" if verdict.decision == "pass" else "blocked"
        store.update_run(run.run_id, status=status, evidence_json=_dumps(evidence),
                         verdict_json=_dumps(verdict.to_json()), finished_at=_now())
        self.record(run, "run_finished", {"status": status, "decision": verdict.decision})
        self.call("run_finished", run=run, verdict=verdict, evidence=evidence)
        return RunResult(run.run_id, status, evidence, verdict, model_info, exit_code=0 if status == "passed" else 1)

    def _stages(self, run: Run, dataset: Dataset, policy: Any, evidence: dict[str, Any], store: Any) -> tuple[Verdict, dict[str, Any]]:
        from assay.kernel.dataset import summarize
        from assay.storage.modelio import save_model
        from assay.storage.store import ArtifactStore

        with self.stage(run, "data") as report:
            data_ev = {"source": dataset.source, "fingerprint": dataset.fingerprint,
                       "target": dataset.target, "sensitive": list(self.spec.data.sensitive),
                       **summarize(dataset.frame, dataset.roles, dataset.target)}
            evidence["data"] = data_ev
            self.record(run, "data", data_ev)
            add_results(evidence, self.call("validate_data", run=run, dataset=dataset))
            # the second table of data.target_domain, loaded once and handed to the hooks that compare with it
            target_domain = (self.load_dataset(self.spec.data.target_domain, "data.target_domain")
                             if self.spec.data.target_domain else None)
            report(rows=dataset.rows, columns=len(dataset.frame.columns), fingerprint=dataset.fingerprint)

        with self.stage(run, "split") as report:
            splits: Splits | None = self.call("split_data", run=run, dataset=dataset)
            if splits is None:
                raise InternalError(f"no plugin could split the data with strategy {self.spec.split.strategy!r}")
            from assay.kernel.dataset import fingerprint_frame

            split_ev = {"strategy": splits.strategy, "seed": splits.seed, "cv_folds": len(splits.folds),
                        "train": {"rows": len(splits.train), "fingerprint": fingerprint_frame(splits.part("train"))},
                        "test": {"rows": len(splits.test), "fingerprint": fingerprint_frame(splits.part("test"))}}
            evidence["split"] = split_ev
            self.record(run, "split", split_ev)
            weights: list[SampleWeights] = []
            add_results(evidence, self.call("check_split", run=run, splits=splits, target_domain=target_domain),
                        weights, (SampleWeights,))
            if len(weights) > 1:
                raise InternalError(f"check_split: {len(weights)} plugins returned sample weights "
                                    f"({', '.join(w.source for w in weights)}); at most one may weight the fit")
            sample_weights = weights[0] if weights else None
            report(train=len(splits.train), test=len(splits.test), folds=len(splits.folds))

        with self.stage(run, "train") as report:
            trainers = self.choose_trainers(run, dataset.task)
            tuner = self.choose_tuner(run)
            model: FittedModel | None = (
                FittedModel(self.imported.family, self.imported.estimator, dict(self.imported.params), {}, [],
                            {"imported": True}) if self.imported
                else self.call("fit_model", run=run, splits=splits, trainers=trainers, tuner=tuner,
                               sample_weights=sample_weights))
            if model is None:
                raise InternalError("no plugin implements fit_model")
            artifacts = ArtifactStore(self.settings.home)
            artifact = save_model(artifacts, model.estimator)
            version = store.add_model_version(self.spec.project.name, run.run_id, artifact, model.family)
            # The model predicts the holdout and the scored training rows once: the predictions
            # hash comes from these, and the evaluate stage scores with them.
            model_scored = predict_scored_rows(model.estimator, splits)
            model_ev = {"name": self.spec.project.name, "version": version.version, "ref": version.ref,
                        "family": model.family, "params": dict(model.params), "artifact": artifact,
                        "predictions_hash": holdout_predictions_hash(model_scored, splits),
                        "search": dict(model.search), "candidates": list(model.candidates)}
            if self.imported:
                model_ev["imported"] = dict(self.imported.provenance)
            evidence["model"] = model_ev
            deep_merge(evidence.setdefault("metrics", {}), {"cv": model.cv})
            self.record(run, "model", {k: model_ev[k] for k in ("name", "version", "family", "params", "artifact",
                                                                "predictions_hash", "imported") if k in model_ev})
            report(family=model.family, cv=model.cv.get(self.spec.metric, {}))

        with self.stage(run, "evaluate") as report:
            scores = self.score(run, model, splits, model_scored)
            checks = add_results(evidence, self.call("evaluate", run=run, model=model, splits=splits, scores=scores,
                                                     target_domain=target_domain))
            self.record(run, "metrics", {k: evidence.get(k, {}) for k in ("metrics", "baseline", "gap")})
            for check in _all_checks(evidence):
                self.record(run, "check", check)
            report(test=evidence.get("metrics", {}).get("test", {}).get(self.spec.metric), checks=len(checks))

        evidence["cost"] = self.meter.summary()
        evidence["plugins"] = {i.name: i.version for i in self.pm.infos if i.status == "loaded"}
        # What the runner knows of the run's conduct, from the typed products (the evidence's ``facts``).
        facts: dict[str, Any] = {**model.conduct(), "model_ref": version.ref}
        if sample_weights is not None:
            facts["sample_weight"] = sample_weights.summary()
        if target_domain is not None:
            facts["target_domain_fingerprint"] = target_domain.fingerprint
        if self.replay_of:
            facts["replay_of"] = self.replay_of
        evidence["facts"] = to_jsonable(facts)
        # Redacted in place: the evidence recorded, digested by the verdict and stored is one document.
        evidence.update(redact_secrets(to_jsonable(evidence)))
        from assay.kernel.evidence import validate_evidence

        validate_evidence(evidence)  # a section a plugin wrote malformed errors the run here: the gate never judges it
        self.record(run, "evidence", evidence)
        binding = verdict_binding(run.run_id, evidence)  # before the gate: what the verdict judges

        with self.stage(run, "gate") as report:
            verdict = self.gate(run, evidence, policy)
            self.record(run, "verdict", {**verdict.to_json(), **binding})
            report(decision=verdict.decision)
        model_info = {"name": version.name, "version": version.version, "ref": version.ref,
                      "family": model.family, "artifact": artifact}
        return verdict, model_info

    def score(self, run: Run, model: FittedModel, splits: Splits, model_scored: Predictions | None = None) -> Scores:
        """Fit (or load) the baseline once and score it and the model on the holdout and training rows.

        :param model_scored: the model's predictions from :func:`predict_scored_rows`, when made already.
        """
        baseline: Baseline | None = self.call("fit_baseline", run=run, splits=splits)
        if baseline is None:  # no plugin fits it: a registered model version, which the core loads
            baseline = self.registered_baseline(run)
        if baseline.run_id == run.run_id:
            raise InternalError(f"fit_baseline returned this run's own model ({baseline.name}) as its baseline")
        return score_splits(model, baseline, splits, model_scored)

    def registered_baseline(self, run: Run) -> Baseline:
        """``evaluate.baseline`` as a registered version (``NAME@VERSION``, ``NAME@latest``, ``NAME@<stage>``).

        Resolved from the signed ledger and loaded from the artifact store (its hash checked);
        ``NAME@latest`` is the latest version trained before this run, never its own.
        """
        from assay.storage.modelio import load_model
        from assay.storage.store import ArtifactStore, RunStore

        version = RunStore(run.settings).resolve_model(self.spec.evaluate.baseline, exclude_run=run.run_id)
        return Baseline(version.ref, load_model(ArtifactStore(run.settings.home), version.artifact), version.run_id)

    def gate(self, run: Run, evidence: dict[str, Any], policy: Any, waivers: Sequence[Mapping[str, Any]] = (),
             today: date | None = None, stage: str = "train") -> Verdict:
        """The verdict of every ``gate`` implementation on ``evidence``; blocks when no rule applied."""
        try:
            results = self.call("gate", run=run, evidence=evidence, policy=policy, stage=stage,
                                waivers=[dict(w) for w in waivers], today=today)
        except InternalError as exc:
            raise InternalError(f"{exc.message}; no verdict was recorded (fail closed)") from exc
        outcomes = [o for batch in results for o in (batch or ())]
        if all(o.outcome == "n/a" for o in outcomes):  # nothing was checked: fail closed, never pass unjudged
            outcomes += [RuleOutcome(
                id=NO_APPLICABLE_RULE, outcome="error", path="", measured=None, threshold=None,
                description=f"at least one rule of the policy applies to stage {stage}",
                reason=f"policy {policy.name!r} has no rule that applies to stage {stage!r}, so nothing was "
                       f"checked; add a rule with stage = \"{stage}\"{' (the default)' if stage == 'train' else ''} "
                       "to the policy")]
        return Verdict.from_outcomes(outcomes, policy.name, policy.hash)

    def _fail(self, run: Run, exc: BaseException, evidence: dict[str, Any], store: Any) -> RunResult:
        _hold_signals()
        stage = self.current_stage
        if isinstance(exc, AssayError):
            message, code = exc.message, exc.exit_code
        elif isinstance(exc, Killed):
            message, code = f"{exc} during stage {stage!r}", 3
        elif isinstance(exc, KeyboardInterrupt):
            message, code = "interrupted", 3
        else:
            message, code = f"{type(exc).__name__} in stage {stage!r}: {exc}", 3
        message = redact_url(message)
        detail = redact_url("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:])
        try:
            # What evidence there was, signed: a later `assay gate` judges it and fails closed on what is missing.
            with contextlib.suppress(Exception):
                self.record(run, "evidence", {**evidence, "status": "errored"})
            self.record(run, "run_failed", {"stage": stage, "error": message, "exit_code": code, "traceback": detail})
        finally:
            store.update_run(run.run_id, status="errored", error=message, finished_at=_now(),
                             evidence_json=_dumps({**evidence, "status": "errored"}))
            with contextlib.suppress(Exception):  # a reporter must not hide the original error
                self.call("run_failed", run=run, error=exc, stage=stage)
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        return RunResult(run.run_id, "errored", evidence, None, {}, error=message, exit_code=code)


def _raising_plugin(pm: PluginManager, exc: BaseException) -> str:
    """The name of the registered plugin whose code raised ``exc`` (its outermost frame), or ""."""
    import inspect

    modules: dict[str, str] = {}
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        module = plugin.__name__ if inspect.ismodule(plugin) else type(plugin).__module__
        if name:
            modules.setdefault(str(module), name)
    tb = exc.__traceback__
    while tb is not None:
        found = modules.get(str(tb.tb_frame.f_globals.get("__name__", "")))
        if found:
            return found
        tb = tb.tb_next
    return ""


def _all_checks(evidence: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group, checks in evidence.get("checks", {}).items():
        for name, result in checks.items():
            yield {"group": group, "name": name, **result}


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(redact_secrets(to_jsonable(obj)), sort_keys=True)


def _now() -> Any:
    from assay.storage.store import utcnow

    return utcnow()


def verdict_binding(run_id: str, evidence: Mapping[str, Any]) -> dict[str, Any]:
    """What a verdict record binds itself to besides its policy: the run, the artifact, the evidence digest."""
    from assay.storage.signed import digest_of

    model = evidence.get("model") or {}
    return {"run_id": run_id, "artifact": model.get("artifact"), "model": model.get("ref"),
            "evidence_digest": digest_of(to_jsonable(evidence))}


def gate_stored_run(pm: PluginManager, settings: Settings, run_id: str, evidence: Mapping[str, Any],
                    started: Mapping[str, Any], policy_ref: str | None = None,
                    waivers: Sequence[Mapping[str, Any]] = (), today: date | None = None) -> tuple[Verdict, Any]:
    """Re-evaluate a policy on a finished run's signed evidence and record the verdict.

    :param evidence: the run's evidence as its signed ``evidence`` record holds it.
    :param started: its signed ``run_started`` payload (the spec and the spec file's path).
    :returns: the verdict and the policy it was made under.
    """
    from assay.kernel.spec import RunSpec
    from assay.policies import load_policy

    spec = RunSpec.model_validate(started["spec"])
    spec_path = Path(str(started.get("spec_path", "")))
    runner = Runner(pm, settings, spec, spec_path)
    runner.current_stage = "gate"
    run = Run(run_id=run_id, spec=spec, spec_path=str(spec_path), settings=settings)
    policy = load_policy(policy_ref or spec.gate.policy, spec_path.parent, runner.collect_policies())
    evidence = dict(evidence)
    from assay.kernel.evidence import validate_evidence

    validate_evidence(evidence)  # malformed evidence is never judged, so never passes (fail closed)
    binding = verdict_binding(run_id, evidence)
    verdict = runner.gate(run, evidence, policy, waivers=waivers, today=today)
    runner.record(run, "verdict", {**verdict.to_json(), **binding})
    return verdict, policy


# --------------------------------------------------------------------------- what plugins register
# One place collects what the ``register_*`` hooks contribute and validates it on the way in,
# for the runner and for every command (gate, policy, verify, approve, monitor, plugin commands).


def _collect(pm: PluginManager, hook_name: str, kind: type[RegistryItem], method: str) -> dict[str, RegistryItem]:
    """Call a ``register_*`` hook, validating each item as it is registered (later names replace earlier)."""
    found: dict[str, RegistryItem] = {}

    def register(item: RegistryItem) -> None:
        if not isinstance(item, kind) or not getattr(item, "name", "") or not callable(getattr(item, method)):
            raise InternalError(f"{hook_name}: expected a {kind.__name__} with a name and {method}(), got {item!r}")
        found[item.name] = item

    getattr(pm.hook, hook_name)(register=register)
    return found


def collect_trainers(pm: PluginManager) -> dict[str, Trainer]:
    """Trainer name → :class:`Trainer`, from every plugin's ``register_trainers``."""
    return _collect(pm, "register_trainers", Trainer, "build")


def collect_tuners(pm: PluginManager) -> dict[str, Tuner]:
    """Tuner name → :class:`Tuner`, from every plugin's ``register_tuners``."""
    return _collect(pm, "register_tuners", Tuner, "make_search")


def collect_policies(pm: PluginManager) -> dict[str, str]:
    """Pack name → policy TOML text, from every plugin's ``register_policies``."""
    packs: dict[str, str] = {}

    def register(name: str, text: str) -> None:
        if not isinstance(name, str) or not isinstance(text, str) or not name:
            raise InternalError(f"register_policies: expected (name, toml_text) strings, got {name!r}")
        packs[name] = text

    pm.hook.register_policies(register=register)
    return packs


def add_plugin_commands(pm: PluginManager, cli: Any) -> None:
    """Let plugins add sub-commands to the click group ``cli`` (``register_commands``)."""
    pm.hook.register_commands(cli=cli)


# --------------------------------------------------------------------------- monitoring runs

MONITOR_STAGES = ("load", "monitor", "gate")


def load_monitor_context(settings: Settings, run_id: str, training: Mapping[str, Any], current: Any, *,
                         labelled: bool, source: str, policy: Any) -> MonitorContext:
    """What a monitoring run's stages share, loaded from the training run's stored artifacts.

    The reference sample, the model (checked against its recorded digest) and, when the run
    stored them, the holdout sample and the model's drift-tested output on it. A new monitor id.
    """
    from assay.kernel.artifacts import frame_from_parquet
    from assay.kernel.types import MonitorContext
    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore

    store = ArtifactStore(settings.home)
    monitoring = training["monitoring"]
    reference = frame_from_parquet(store.get_bytes(monitoring["reference"]["artifact"]))
    holdout_info = monitoring.get("holdout") or {}
    holdout = frame_from_parquet(store.get_bytes(holdout_info["artifact"])) if holdout_info else None
    stored = holdout_info.get("predictions") or {}
    predictions = (frame_from_parquet(store.get_bytes(stored["artifact"])).iloc[:, 0].to_numpy()
                   if stored.get("artifact") else None)
    return MonitorContext(monitor_id=new_run_id(), run_id=run_id, training=training, reference=reference,
                          current=current, labelled=labelled, source=source, policy=policy,
                          model=load_model(store, training["model"]["artifact"]), holdout=holdout,
                          holdout_predictions=predictions, holdout_kind=str(stored.get("kind") or ""))


def monitor_stored_run(pm: PluginManager, settings: Settings, spec: RunSpec, spec_path: Path, run_id: str,
                       training: Mapping[str, Any], current: Any, evidence: Mapping[str, Any], policy: Any, *,
                       labelled: bool, source: str, waivers: Sequence[Mapping[str, Any]] = (),
                       today: date | None = None) -> tuple[dict[str, Any], Verdict]:
    """A monitoring run's stages: a production batch judged against training run ``run_id``.

    1. ``load`` — the reference sample, the model and the holdout predictions from the artifact
       store, into one frozen :class:`~assay.kernel.types.MonitorContext` (a missing or altered
       artifact fails here, before anything is recorded);
    2. ``monitor`` — every plugin's checks and evidence on the batch, merged into ``evidence``;
    3. ``gate`` with stage ``monitor`` — the policy's monitor rules on that evidence, with
       ``waivers``; a policy with no rule for the stage blocks (``no-applicable-rule``, fail closed);
    4. ``record`` — a ``monitor`` record linked to the training run: the evidence and the verdict.

    Each stage runs between ``stage_started`` and ``stage_finished``, and plugins report their
    steps through ``run.progress``, as in a training run. A stage that raises, or no ``monitor``
    implementation at all, is recorded as ``monitor_failed`` and raised (exit 3 unless it is an
    :class:`AssayError` of its own).

    :param spec: the training run's spec (the monitoring plugins read ``[monitor]`` and ``[evaluate]``).
    :param training: the training run's evidence, as its signed record holds it.
    :param current: the batch, validated against the training schema.
    :param evidence: the monitor evidence the caller built from its inputs (the batch's schema, its data).
    :returns: the complete monitor evidence (with its ``monitor_id``) and its verdict.
    """
    runner = Runner(pm, settings, spec, spec_path)
    run = Run(run_id=run_id, spec=spec, spec_path=str(spec_path), settings=settings,
              on_progress=runner._relay_progress)
    with runner.stage(run, "load") as report:
        context = load_monitor_context(settings, run_id, training, current, labelled=labelled, source=source,
                                       policy=policy)
        report(reference=len(context.reference), rows=len(context.current))
    document = {**evidence, "monitor_id": context.monitor_id}
    try:
        with runner.stage(run, "monitor") as report:
            results = runner.call("monitor", run=run, reference=context.reference, current=context.current,
                                  context=context)
            if not any(results):
                raise InternalError("no plugin implements the monitor hook (is the monitoring plugin blocked?)")
            add_results(document, results)
            document = to_jsonable(document)
            from assay.kernel.evidence import validate_evidence

            validate_evidence(document)  # a section a plugin wrote malformed is never judged (monitor_failed)
            drift = document.get("drift") or {}
            report(drifted=f"{drift.get('drifted', 0)}/{drift.get('tested', 0)}")
        with runner.stage(run, "gate") as report:
            verdict = runner.gate(run, document, policy, waivers=waivers, today=today, stage="monitor")
            report(decision=verdict.decision)
    except BaseException as exc:
        message = exc.message if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
        runner.record(run, "monitor_failed", {"monitor_id": context.monitor_id, "error": message,
                                              "source": document.get("data", {}).get("current")})
        if isinstance(exc, AssayError) or not isinstance(exc, Exception):
            raise
        raise InternalError(f"monitoring run {run_id} failed: {message}") from exc
    model = document.get("model") or {}
    runner.record(run, "monitor", {"monitor_id": context.monitor_id,
                                   "status": "stable" if verdict.decision == "pass" else "beyond_policy",
                                   "model": model.get("ref"), "artifact": model.get("artifact"),
                                   "evidence": document, "verdict": verdict.to_json()})
    return document, verdict
