"""The evidence document's schema: the core sections every run writes, checked before the gate.

A run's evidence (``evidence.json``, the signed ``evidence`` record) is one JSON object.
The sections the runner and the bundled plugins write — ``data``, ``split``, ``model``,
``metrics``, ``baseline``, ``gap``, ``checks``, ``fairness``, ``monitoring`` and
``environment`` — have the shapes below. Every section and field is optional: a run that
failed early has only some, and what a rule needs but does not find is the policy's to judge
(the rule errors, the gate blocks). Every model allows keys it does not name, so a plugin may
add fields to a section and sections of its own (``curves``, ``selection``, ...: name yours
after your plugin).

What the schema refuses is a value of the wrong kind where gates and reports look for one:
a metric that is text, a check status outside :data:`~assay.kernel.types.Status`, a digest that is
not ``sha256:HEX``, a fairness entry that is not a mapping. The runner validates the whole
document after the last ``evaluate`` result is merged and before the gate judges it; a
malformed section makes the run errored (the gate fails closed) with a message naming the
section and the field (:class:`MalformedEvidence`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from assay.errors import InternalError
from assay.kernel.types import Status


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric_value(value: Any) -> Any:
    if value is None or _is_number(value):
        return value
    if isinstance(value, list) and len(value) == 2 and all(v is None or _is_number(v) for v in value):
        return value
    raise ValueError("expected a number, null, or an interval [low, high] of numbers")


def _check_value(value: Any) -> Any:
    if value is None or isinstance(value, str) or _is_number(value):
        return value
    raise ValueError("expected a number, a string or null")


Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
#: A measured number: JSON numbers only (a value that could not be computed is null, never NaN).
Number = float | None
#: A metric as the evidence keeps it: a number, or an interval ``[low, high]`` (``roc_auc_ci``), or null.
MetricValue = Annotated[Any, PlainValidator(_metric_value)]
#: A check's measured value: a number, a string (a category, a column) or null.
CheckValue = Annotated[Any, PlainValidator(_check_value)]


class Section(BaseModel):
    """A section of the evidence: named keys typed, any other key allowed (plugins add fields)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)


class DataSection(Section):
    """``data``: the loaded table (``data.fingerprint`` is what lineage and replay match on)."""

    source: str | None = None
    fingerprint: Digest | None = None
    rows: int | None = Field(default=None, ge=0)
    target: str | None = None
    columns: dict[str, str] = {}
    sensitive: list[str] = []


class PartSection(Section):
    """``split.train`` / ``split.test``: one side of the holdout split."""

    rows: int | None = Field(default=None, ge=0)
    fingerprint: Digest | None = None


class SplitSection(Section):
    """``split``: how the rows were divided."""

    strategy: str | None = None
    seed: int | None = None
    cv_folds: int | None = Field(default=None, ge=0)
    train: PartSection | None = None
    test: PartSection | None = None


class ModelSection(Section):
    """``model``: the selected, refitted model and its registered version."""

    name: str | None = None
    version: int | None = None
    ref: str | None = None
    family: str | None = None
    params: dict[str, Any] | None = None
    artifact: Digest | None = None
    predictions_hash: str | None = None
    search: dict[str, Any] = {}
    candidates: list[dict[str, Any]] = []


class CvScore(Section):
    """``metrics.cv.METRIC``: the search's cross-validated score of the chosen setting."""

    mean: Number = None
    std: Number = None


class MetricsSection(Section):
    """``metrics``: per part (``train``, ``test``; monitoring adds ``current``), metric → value."""

    train: dict[str, MetricValue] = {}
    test: dict[str, MetricValue] = {}
    current: dict[str, MetricValue] = {}
    cv: dict[str, CvScore] = {}


class BaselineSection(Section):
    """``baseline``: the reference model the run is compared with, scored on the same holdout."""

    name: str | None = None
    test: dict[str, MetricValue] = {}
    improvement: dict[str, MetricValue] = {}


class CheckEntry(Section):
    """``checks.GROUP.NAME``: one check's outcome."""

    status: Status | None = None
    value: CheckValue = None
    detail: dict[str, Any] = {}
    message: str = ""


class FairnessEntry(Section):
    """``fairness.FEATURES``: disparities across the groups of one sensitive column (or an intersection)."""

    by_group: dict[str, dict[str, Any]] = {}
    features: list[str] = []
    demographic_parity_ratio: Number = None
    demographic_parity_difference: Number = None
    selection_rate_ratio: Number = None
    equalized_odds_difference: Number = None


class ReferenceSample(Section):
    """``monitoring.reference``: the training sample a production batch is compared with."""

    artifact: Digest | None = None
    rows: int | None = Field(default=None, ge=0)
    features: list[str] | None = None
    target: str | None = None
    roles: dict[str, str] | None = None
    dtypes: dict[str, str] = {}
    categories: dict[str, list[str] | None] = {}
    sensitive: list[str] = []


class HoldoutSample(Section):
    """``monitoring.holdout``: the holdout sample (and the model's outputs on it) for prediction drift."""

    artifact: Digest | None = None
    rows: int | None = Field(default=None, ge=0)


class MonitoringSection(Section):
    """``monitoring``: what ``assay monitor`` needs later, stored at training time."""

    reference: ReferenceSample | None = None
    holdout: HoldoutSample | None = None


class EnvironmentSection(Section):
    """``environment``: where the run ran."""

    python: str | None = None
    packages: dict[str, str] = {}
    git: dict[str, Any] = {}


class EvidenceDocument(Section):
    """One run's evidence: the core sections typed, plugin sections (any other key) kept as they are."""

    run_id: str | None = None
    project: str = ""
    spec_hash: str = ""
    policy_hash: str = ""
    task: str | None = None
    metric: str | None = None
    data: DataSection | None = None
    split: SplitSection | None = None
    model: ModelSection | None = None
    metrics: MetricsSection | None = None
    baseline: BaselineSection | None = None
    gap: dict[str, MetricValue] | None = None
    checks: dict[str, dict[str, CheckEntry]] = {}
    fairness: dict[str, FairnessEntry] = {}
    monitoring: MonitoringSection | None = None
    environment: EnvironmentSection | None = None


CORE_SECTIONS = ("data", "split", "model", "metrics", "baseline", "gap", "checks", "fairness", "monitoring",
                 "environment")


class MalformedEvidence(InternalError):
    """A section of the evidence does not have the schema's shape (a plugin wrote it wrong): exit 3, fail closed."""


#: Plain words for pydantic's error types (the others keep pydantic's message).
EXPECTED = {
    "missing": "required, but missing",
    "dict_type": "expected a JSON object", "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "list_type": "expected a list", "string_type": "expected a string",
    "int_type": "expected a whole number", "int_from_float": "expected a whole number",
    "float_type": "expected a number", "finite_number": "expected a finite number",
    "string_pattern_mismatch": "expected a digest: 'sha256:' and 64 lowercase hex digits",
}


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) <= 120:
        return text
    size = f" of {len(value)} items" if isinstance(value, (list, dict)) else ""
    return f"a {type(value).__name__}{size}"


def describe(error: ValidationError) -> list[str]:
    """One line per problem: ``section 'S', field 'F.G': what is wrong (got V)``."""
    lines = []
    for problem in error.errors(include_url=False):
        loc = [str(part) for part in problem["loc"]]
        if len(loc) > 1 or (loc and loc[0] in CORE_SECTIONS):
            where = f"section {loc[0]!r}" + (f", field {'.'.join(loc[1:])!r}" if len(loc) > 1 else "")
        else:
            where = f"field {'.'.join(loc) or '(the document)'!r}"
        kind = problem["type"]
        got = f" (got {_shown(problem['input'])})" if kind != "missing" else ""
        what = EXPECTED.get(kind) or problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {what[:1].lower()}{what[1:]}{got}")
    return lines


def validate_evidence(evidence: Mapping[str, Any]) -> EvidenceDocument:
    """The evidence checked against the schema; :class:`MalformedEvidence` names each bad section and field.

    :param evidence: the JSON-able evidence document (after ``to_jsonable``).
    """
    try:
        return EvidenceDocument.model_validate(dict(evidence))
    except ValidationError as exc:
        problems = describe(exc)
        raise MalformedEvidence(
            f"the evidence is malformed, so the gate cannot judge it: {'; '.join(problems)}. A plugin's results "
            f"wrote {'this' if len(problems) == 1 else 'these'}: fix the plugin (plugins may add their own sections "
            f"and keys, but not change the type of a core one)") from None
