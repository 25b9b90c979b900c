"""Plain, typed values that pass between stages and plugins.

Everything here is a frozen dataclass: stages hand values forward, they never mutate
what another stage produced. Heavy libraries (pandas, numpy, scikit-learn) are only
referenced for typing, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay.kernel.spec import RunSpec
    from assay.storage.settings import Settings

Status = Literal["pass", "warn", "fail", "error", "skip"]
Task = Literal["binary", "multiclass", "regression", "ranking", "text"]
Role = Literal["numeric", "categorical", "text", "datetime", "id", "group", "sensitive", "target", "drop"]
#: A policy rule's outcome (``n/a``: the rule does not apply to the run).
Outcome = Literal["pass", "warn", "block", "waived", "error", "n/a"]
#: What a ledger record is about: the kind of an :class:`Event` (the runner's records) and of the
#: records the governance commands and key management append.
EventKind = Literal[
    "run_started", "data", "split", "model", "metrics", "check", "evidence", "verdict", "run_finished", "run_failed",
    "replay", "monitor", "monitor_failed", "waiver", "approval", "promotion", "attestation",
    "key_added", "key_rotated", "key_revoked",
]


def json_number(value: Any) -> Any:
    """Return ``value`` as a JSON-safe scalar: numpy scalars unwrapped, NaN/inf as ``None``."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_jsonable(obj: Any) -> Any:
    """Recursively convert ``obj`` into JSON-safe data (dicts, lists, str, finite numbers, None)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return json_number(obj)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """A loaded table with its column roles and content fingerprint.

    ``roles`` maps every column to one role. ``fingerprint`` is ``sha256:HEX`` over the
    content (independent of file format and column order).
    """

    frame: pd.DataFrame
    target: str
    task: Task
    roles: Mapping[str, Role]
    fingerprint: str
    source: str
    name: str = "data"

    @property
    def features(self) -> list[str]:
        """Columns the model may use, in frame order."""
        usable = {"numeric", "categorical", "text", "datetime"}
        return [c for c in self.frame.columns if self.roles.get(c) in usable]

    def columns_with(self, *roles: Role) -> list[str]:
        return [c for c in self.frame.columns if self.roles.get(c) in roles]

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class Splits:
    """Row positions of the holdout split and the CV folds inside the training part.

    ``folds`` index into the training part (positions within ``train``), as scikit-learn's
    ``cv=`` expects when fitting on ``X_train``. ``groups`` are the training part's group
    labels when the strategy is group-based (for CV splitters that need them).
    """

    dataset: Dataset
    strategy: str
    train: np.ndarray
    test: np.ndarray
    folds: Sequence[tuple[np.ndarray, np.ndarray]]
    seed: int
    groups: np.ndarray | None = None

    def part(self, name: Literal["train", "test"]) -> pd.DataFrame:
        return self.dataset.frame.iloc[self.train if name == "train" else self.test]

    def X(self, name: Literal["train", "test"]) -> pd.DataFrame:
        return self.part(name)[self.dataset.features]

    def y(self, name: Literal["train", "test"]) -> pd.Series:
        return self.part(name)[self.dataset.target]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``checks.<group>.<name>`` in the evidence.

    ``value`` is the measured number (``None`` if it could not be computed; then say why in
    ``detail``); ``detail`` names the rows or columns involved.
    """

    group: str
    name: str
    status: Status
    value: float | int | str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "value": json_number(self.value), "detail": to_jsonable(self.detail)}
        if self.message:
            out["message"] = self.message
        return out


@dataclass(frozen=True)
class Evidence:
    """A piece of the evidence document, deep-merged under ``section``.

    ``Evidence("fairness", {"sex": {...}})`` becomes ``evidence["fairness"]["sex"]``.
    """

    section: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    """Something that happened during a run, for the audit ledger (``record`` hook)."""

    kind: EventKind
    payload: Mapping[str, Any]


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Trainer:
    """A model family a plugin contributes through ``register_trainers``.

    ``build(task, run)`` returns an *unfitted* scikit-learn estimator (the final step; the
    core prepends preprocessing chosen by ``preprocessing``). ``grid`` / ``distributions``
    are parameter spaces for that estimator (keys without a step prefix);
    ``distributions`` may be a zero-argument callable so scipy loads only when searching.
    """

    name: str
    tasks: frozenset[str]
    build: Callable[..., Any]
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    distributions: Mapping[str, Any] | Callable[[], Mapping[str, Any]] = field(default_factory=dict)
    preprocessing: Literal["scaled", "ordinal", "none"] = "scaled"
    description: str = ""
    #: dotted names of the types and functions outside scikit-learn's and numpy's own that a
    #: fitted estimator of this family contains; skops loads a saved model only if every type
    #: in it is trusted by default or declared by a registered trainer (``assay.storage.modelio``)
    trusted_types: tuple[str, ...] = ()

    def search_space(self) -> Mapping[str, Any]:
        """Distributions for random/halving search (the grid when there are none)."""
        space = self.distributions() if callable(self.distributions) else self.distributions
        return space or self.grid


@dataclass(frozen=True)
class SearchRequest:
    """Everything a tuner's ``make_search`` gets to build one family's search.

    ``estimator`` is the unfitted ``Pipeline(prep, model)`` (model parameters are
    ``model__NAME``); ``cv`` the run's folds over the training part only; ``scoring`` a
    scikit-learn scorer name or scorer for the run's metric (greater is better); ``budget``
    the candidate settings to try; ``seed`` the run's seed; ``n_jobs`` the parallel fits.
    """

    estimator: Any
    trainer: Trainer
    cv: Any
    scoring: Any
    budget: int
    seed: int
    n_jobs: int = 1

    @property
    def space(self) -> dict[str, Any]:
        """The family's search space with the pipeline's ``model__`` prefix on every key."""
        return {f"model__{k}": v for k, v in self.trainer.search_space().items()}


@dataclass(frozen=True)
class Tuner:
    """A search strategy a plugin contributes through ``register_tuners``.

    ``make_search(request: SearchRequest)`` returns an unfitted scikit-learn-style search
    object with ``fit(X, y, **fit_params)``, ``best_estimator_``, ``best_params_``,
    ``best_index_``, ``best_score_`` and ``cv_results_``.
    """

    name: str
    make_search: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True, eq=False)
class SampleWeights:
    """Per-row weights for fitting, returned by a ``check_split`` plugin; the runner hands them to ``fit_model``.

    ``values`` has one weight per dataset row (by position, like :attr:`Splits.train`); ``source``
    says who computed them (recorded under ``facts.sample_weight.from``).
    """

    values: np.ndarray
    source: str

    def summary(self) -> dict[str, Any]:
        """What the evidence keeps of the weights: their origin, count and digest, not the numbers."""
        import numpy as np

        data = np.ascontiguousarray(self.values, dtype="<f8")
        return {"from": self.source, "rows": len(data), "sha256": "sha256:" + hashlib.sha256(data.data).hexdigest()}


@dataclass(frozen=True)
class FittedModel:
    """The selected, refitted model, what the search learned about it, and how it was fitted.

    The conduct fields are the fitting plugin's own account, read by the leakage checks:
    ``preprocessing_inside_cv`` (imputation, encoding, scaling fit inside each CV fold) and
    ``holdout_used_in_tuning`` (the search saw the holdout); ``None`` means not reported,
    and those checks then fail closed. ``class_weight`` is the weighting the fit used.
    """

    family: str
    estimator: Any
    params: Mapping[str, Any]
    cv: Mapping[str, Mapping[str, float | None]]
    candidates: Sequence[Mapping[str, Any]]
    search: Mapping[str, Any] = field(default_factory=dict)
    preprocessing_inside_cv: bool | None = None
    holdout_used_in_tuning: bool | None = None
    tuner: str = ""
    class_weight: str | None = None
    executor: str = ""

    def conduct(self) -> dict[str, Any]:
        """The conduct facts that were reported, as the evidence's ``facts`` section records them."""
        facts = {"preprocessing_inside_cv": self.preprocessing_inside_cv,
                 "holdout_used_in_tuning": self.holdout_used_in_tuning, "tuner": self.tuner,
                 "class_weight": self.class_weight, "executor": self.executor}
        return {k: v for k, v in facts.items() if v is not None and v != ""}


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Baseline:
    """The reference model the run is compared with (``evaluate.baseline``), fitted or loaded once per run.

    ``estimator`` predicts from the dataset's feature columns; ``run_id`` is the run that trained
    it when it is a registered version (never the run being evaluated).
    """

    name: str
    estimator: Any
    run_id: str = ""


@dataclass(frozen=True, eq=False)
class Predictions:
    """One estimator's predictions on a set of dataset rows.

    ``pred`` is the predicted label (classifiers: the most probable class), value or ranking
    score; ``proba`` the class probabilities in ``classes`` order when the estimator gives them;
    ``decision`` the decision scores of a classifier without probabilities; ``y`` the truth.
    """

    rows: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None
    classes: np.ndarray
    decision: np.ndarray | None = None

    def scored(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``(pred, proba, classes)``, the triple the metric functions take."""
        return self.pred, self.proba, self.classes


@dataclass(frozen=True, eq=False)
class Scores:
    """What the fitted model and the baseline predict, computed once per run after fitting.

    ``test`` is the holdout; ``train`` the scored training rows (all of them up to a limit,
    else a seeded sample; ranking keeps every row so queries stay whole). The baseline is
    scored on the very same rows. ``evaluate`` plugins read these instead of predicting again.
    """

    test: Predictions
    train: Predictions
    baseline: Baseline
    baseline_test: Predictions
    baseline_train: Predictions


# --------------------------------------------------------------------------- monitoring


@dataclass(frozen=True, eq=False)
class MonitorContext:
    """What the stages of a monitoring run share: the ``monitor`` hook's ``context`` argument.

    The runner builds it from the training run's signed records and the artifact store, so a
    monitoring plugin reads nothing from storage itself. ``training`` is the training run's
    evidence as its signed record holds it (the model's artifact, ``monitoring.reference``,
    ``metrics.test``, ``metric``, ``task``); ``reference`` the sample stored at training time;
    ``current`` the batch, restricted to the stored columns and converted to the training
    dtypes (it has the target column only when ``labelled``); ``source`` the batch file's
    absolute path; ``policy`` the policy whose monitor rules judge the batch (drift tests take
    their thresholds from it). ``model`` is the trained estimator, loaded and checked against
    its recorded digest; ``holdout`` the holdout sample stored at training time and
    ``holdout_predictions`` the model's stored drift-tested output on it, of kind
    ``holdout_kind`` (``numeric`` or ``categorical``), each ``None`` when the run stored none.
    """

    monitor_id: str
    run_id: str
    training: Mapping[str, Any]
    reference: pd.DataFrame
    current: pd.DataFrame
    labelled: bool
    source: str
    policy: Any = None
    model: Any = None
    holdout: pd.DataFrame | None = None
    holdout_predictions: np.ndarray | None = None
    holdout_kind: str = ""


# --------------------------------------------------------------------------- gating


@dataclass(frozen=True)
class RuleOutcome:
    """One policy rule evaluated on the evidence.

    ``outcome`` is ``pass``, ``warn``, ``block`` (rule failed with block severity),
    ``waived`` or ``error`` (evidence missing or unusable: blocks, fail closed).
    """

    id: str
    outcome: Outcome
    path: str
    measured: Any
    threshold: Any
    op: str = ""
    severity: Literal["block", "warn"] = "block"
    description: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "path": self.path,
            "measured": to_jsonable(self.measured),
            "threshold": to_jsonable(self.threshold),
            "op": self.op,
            "severity": self.severity,
            "description": self.description,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    """The gate's decision: ``pass`` unless a rule blocks or errors (fail closed)."""

    decision: Literal["pass", "block"]
    rules: Sequence[RuleOutcome]
    policy: str
    policy_hash: str
    reasons: Sequence[str] = ()

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[RuleOutcome], policy: str, policy_hash: str) -> Verdict:
        failing = [o for o in outcomes if o.outcome in ("block", "error")]
        reasons = [f"{o.id}: {o.reason or o.outcome}" for o in failing]
        return cls("block" if failing else "pass", tuple(outcomes), policy, policy_hash, tuple(reasons))

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "policy": self.policy,
            "policy_hash": self.policy_hash,
            "reasons": list(self.reasons),
            "rules": [r.to_json() for r in self.rules],
        }


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class StageSummary(Mapping[str, Any]):
    """What a finished stage produced, for progress displays (``stage_finished``).

    A read-only mapping of JSON-able values by name (``rows``, ``family``, ``decision``, ...).
    """

    stage: str
    produced: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.produced[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.produced)

    def __len__(self) -> int:
        return len(self.produced)


@dataclass(frozen=True)
class Run:
    """The context every hook receives: identity, validated spec and where state lives.

    Frozen, and it carries nothing between stages: what one stage produces for the next is a
    typed value the runner passes as a hook argument (:class:`Scores`, :class:`SampleWeights`,
    the :class:`FittedModel` and its conduct facts).
    """

    run_id: str
    spec: RunSpec
    spec_path: str
    settings: Settings
    trainers: Mapping[str, Trainer] = field(default_factory=dict)
    tuners: Mapping[str, Tuner] = field(default_factory=dict)
    #: set by the runner to relay :meth:`progress` to the ``stage_progress`` hook
    on_progress: Callable[[Run, str, int, int, str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def seed(self) -> int:
        return self.spec.split.seed

    def progress(self, stage: str, done: int, total: int, label: str = "") -> None:
        """Report how far a long stage has come: ``done`` of ``total`` units, working on ``label``.

        Plugins call this (they never call hooks); outside a run it does nothing.
        """
        if self.on_progress is not None:
            self.on_progress(self, stage, done, total, label)
