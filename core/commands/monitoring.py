"""A monitoring run: a production batch against a training run, judged by the policy.

``assay monitor RUN_ID --current DATA`` (:mod:`assay.commands.monitor`) is a run of stages
like ``assay run``, and like it calls no hook itself: the runner does
(:func:`assay.kernel.runner.monitor_stored_run`).

1. prepare (here) — resolve the run from its signed records and check its evidence, read the
   batch and validate its schema against the stored reference's, load the policy. Anything
   wrong is a :class:`~assay.errors.BadInput` (exit 2) and nothing is written: a missing
   feature or a column of the wrong type names the column; new categories are findings in
   the evidence, not errors.
2. ``load`` (runner) — the reference sample, the model and the holdout predictions from the
   artifact store, into one frozen :class:`~assay.kernel.types.MonitorContext`.
3. ``monitor`` hook (runner) — drift, prediction drift, and for labelled batches
   performance and fairness; the results are merged into a *monitor evidence* document that
   also carries the training run's ``metric``, ``model``, ``metrics.test`` and ``baseline``,
   so rules such as ``metrics.current.roc_auc >= metrics.test.roc_auc - 0.05`` can be evaluated.
4. ``gate`` hook with stage ``monitor`` (runner) — the policy's ``stage = "monitor"`` rules
   → a :class:`~assay.kernel.types.Verdict`; a policy with none blocks (fail closed).
5. ``record`` hook (runner) — a ``monitor`` record linked to the run (the ledger is the
   record of truth); then a row in ``monitor_results`` here (an index for ``assay monitor history``).

Exit codes: 0 stable, 1 beyond policy, 2 bad input, 3 plugin or internal error.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlmodel import Field, Session, SQLModel, select

from assay.errors import BadInput
from assay.kernel.types import Check, Verdict, to_jsonable
from assay.storage.store import utcnow

if TYPE_CHECKING:
    import pandas as pd

    from assay.kernel.manager import PluginManager
    from assay.storage.settings import Settings
    from assay.storage.store import RunRow

BATCH_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
#: A monitored batch is ``stable`` when the monitor-stage gate passes, else ``beyond_policy`` (exit 1).
MonitorStatus = Literal["stable", "beyond_policy"]
SHOWN_VALUES = 20  # new categories listed per column


class MonitorRow(SQLModel, table=True):
    """One monitor result: an index over the ledger's ``monitor`` records, for history."""

    __tablename__ = "monitor_results"

    monitor_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    project: str = Field(index=True)
    model_ref: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    status: str = "stable"  # a MonitorStatus
    decision: str = "pass"
    source: str = ""
    rows: int = 0
    fingerprint: str = ""
    labelled: bool = False
    share_drifted: float | None = None
    share_threshold: float | None = None
    drifted: int = 0
    tested: int = 0
    prediction_drifted: bool | None = None
    prediction_score: float | None = None
    metric: str = ""
    metric_current: float | None = None
    metric_test: float | None = None
    metric_threshold: float | None = None
    html: str | None = None
    evidence_json: str = "{}"
    verdict_json: str = "{}"

    def to_json(self) -> dict[str, Any]:
        return {
            "monitor_id": self.monitor_id, "run_id": self.run_id, "model": self.model_ref,
            "time": self.created_at.isoformat(), "status": self.status, "decision": self.decision,
            "source": self.source, "rows": self.rows, "fingerprint": self.fingerprint, "labelled": self.labelled,
            "share_drifted": self.share_drifted, "share_threshold": self.share_threshold,
            "drifted": self.drifted, "tested": self.tested,
            "prediction_drifted": self.prediction_drifted, "prediction_score": self.prediction_score,
            "metric": self.metric, "metric_current": self.metric_current, "metric_test": self.metric_test,
            "metric_threshold": self.metric_threshold, "html": self.html,
        }


def _engine(settings: Settings) -> Any:
    from assay.storage.store import engine_for

    engine = engine_for(settings.db_url)
    SQLModel.metadata.create_all(engine, tables=[MonitorRow.__table__])  # type: ignore[attr-defined]
    return engine


@dataclass
class MonitorResult:
    """What ``assay monitor`` reports (``--format json`` prints :meth:`to_json`)."""

    monitor_id: str
    run_id: str
    evidence: dict[str, Any]
    verdict: Verdict
    policy: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> MonitorStatus:
        return "stable" if self.verdict.decision == "pass" else "beyond_policy"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict.decision == "pass" else 1

    @property
    def html(self) -> str | None:
        return self.evidence.get("report", {}).get("html")

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({**self.evidence, "status": self.status, "exit_code": self.exit_code,
                            "verdict": self.verdict.to_json(), "warnings": self.warnings})


# --------------------------------------------------------------------------- resolving the run


def resolve_run(settings: Settings, ref: str) -> RunRow:
    """A run by id (or unique prefix), or the run that trained ``NAME@VERSION``, from its signed records."""
    from assay.storage.store import RunStore

    return RunStore(settings).signed_run(ref)


def training_evidence(row: RunRow) -> dict[str, Any]:
    """The training run's evidence, checked against the schema, with a model and a stored reference sample."""
    from assay.kernel.evidence import validate_evidence

    evidence = row.evidence or {}
    document = validate_evidence(evidence)
    if document.model is None:
        raise BadInput(f"run {row.run_id} has no trained model (status {row.status}); only a run that trained "
                       "and evaluated a model can be monitored")
    if document.monitoring is None or document.monitoring.reference is None:
        raise BadInput(f"run {row.run_id} stored no reference sample for monitoring (was the monitoring plugin "
                       "disabled when it ran?); re-run `assay run` with the plugin enabled")
    return evidence


# --------------------------------------------------------------------------- the batch


def read_batch(path: str) -> pd.DataFrame:
    """Read the batch file (CSV or Parquet)."""
    from assay.kit import read_table

    if not path.lower().endswith(BATCH_SUFFIXES):
        raise BadInput(f"--current {path}: expected a .csv or .parquet file")
    frame = read_table(path, "", field="--current")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _examples(values: Sequence[Any], n: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:n])


def _parse_number(value: Any) -> Any:
    """A number from a cell (Python's correctly rounded parser), or None."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, (int, float)):
        return None if value != value else value
    text = str(value).strip()
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def conform_column(series: pd.Series, expected: str, column: str, where: str) -> tuple[pd.Series, str]:
    """Bring a batch column to its training dtype; BadInput when the values do not fit.

    Returns the converted column and a note when a conversion happened ('' otherwise).
    Text categories accept numbers (the model reads categories as text anyway).
    """
    import numpy as np
    import pandas as pd

    try:
        want = pd.api.types.pandas_dtype(expected)
    except TypeError:
        return series, ""
    s = series
    is_num = pd.api.types.is_numeric_dtype
    is_bool = pd.api.types.is_bool_dtype

    def wrong(kind: str, bad: pd.Series) -> BadInput:
        values = bad.dropna().unique()
        return BadInput(f"{where}: column {column!r} has the wrong type: training saw {kind} ({expected}), the batch "
                        f"has {s.dtype} with {int(bad.notna().sum())} value(s) that are not, e.g. {_examples(values)}; "
                        f"fix the column or its export")

    if is_bool(want):
        if is_bool(s.dtype):
            return s, ""
        text = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v).strip().lower())
        mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
        converted = text.map(lambda v: mapping.get(v) if v is not None else None)
        bad = s[text.notna() & converted.isna()]
        if len(bad):
            raise wrong("true/false values", bad)
        return converted.astype(object), f"converted from {s.dtype} to booleans"
    if is_num(want):
        if is_num(s.dtype) and not is_bool(s.dtype):
            return s, ""
        if is_bool(s.dtype):
            return s.astype(float), "converted from booleans to numbers"
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            raise wrong("numbers", s.astype(str))
        parsed = s.astype(object).map(_parse_number)
        bad = s[s.notna() & parsed.isna()]
        converted = pd.to_numeric(parsed)
        if len(bad):
            raise wrong("numbers", bad)
        return converted, f"converted from {s.dtype} to numbers"
    if pd.api.types.is_datetime64_any_dtype(want):
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            return s, ""
        try:
            converted = pd.to_datetime(s, errors="coerce")
        except (TypeError, ValueError):
            converted = pd.Series(pd.NaT, index=s.index)
        bad = s[s.notna() & converted.isna()]
        if len(bad):
            raise wrong("dates/times", bad)
        return converted, f"converted from {s.dtype} to dates/times"
    # text categories
    if s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype):
        return s, ""
    if pd.api.types.is_float_dtype(s.dtype):
        values = s.to_numpy()
        finite = values[~np.isnan(values)]
        if len(finite) and np.all(np.mod(finite, 1) == 0):
            s = s.astype("Int64")
    return s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v)), \
        f"converted from {series.dtype} to text categories"


def validate_batch(current: pd.DataFrame, info: Mapping[str, Any], *, labels: bool, source: str,
                   run_id: str) -> tuple[pd.DataFrame, dict[str, Any], list[Check]]:
    """Check the batch against the training schema: exit 2 for what the model cannot score.

    Returns the batch restricted to the stored columns (target only with ``labels``) and
    converted to the training dtypes, the ``schema`` evidence and its checks.
    """
    from assay.kernel.artifacts import category_text

    roles: Mapping[str, str] = info["roles"]
    features: list[str] = list(info["features"])
    target: str = info["target"]
    dtypes: Mapping[str, str] = info.get("dtypes", {})
    where = f"--current {source}"
    if not len(current):
        raise BadInput(f"{where}: the batch has no rows")
    missing = [c for c in features if c not in current.columns]
    if missing:
        near = difflib.get_close_matches(missing[0], [c for c in current.columns if c not in roles], n=1)
        hint = f" (the batch has {near[0]!r}: renamed?)" if near else ""
        listed = ", ".join(repr(c) for c in missing)
        raise BadInput(f"{where}: missing column{'s' * (len(missing) > 1)} {listed}{hint}; the model of run {run_id} "
                       f"needs every feature it was trained on: {', '.join(features)}")
    if labels and target not in current.columns:
        raise BadInput(f"{where}: --labels needs the target column {target!r}, which the batch does not have "
                       "(drop --labels to monitor an unlabelled batch)")
    sensitive = [c for c in roles if roles[c] == "sensitive"]
    present_sensitive = [c for c in sensitive if c in current.columns]
    keep = features + present_sensitive + ([target] if labels else [])
    frame = current[keep].copy()
    coerced: dict[str, str] = {}
    for col in keep:
        if col in dtypes:
            frame[col], note = conform_column(frame[col], dtypes[col], col, where)
            if note:
                coerced[col] = note
    if labels and frame[target].dtype == object:  # as the loader cleans labels at training time
        frame[target] = frame[target].map(lambda v: v.strip().rstrip(".") if isinstance(v, str) else v)
    new_categories: dict[str, Any] = {}
    categories: Mapping[str, Sequence[str] | None] = info.get("categories", {})
    for col in [*features, *present_sensitive, *([target] if labels else [])]:
        seen = categories.get(col)
        if seen is None:
            continue
        values = frame[col].dropna()
        known = set(seen)
        unseen = [v for v in values.unique() if category_text(v) not in known]
        if unseen:
            counts = values[values.isin(unseen)].value_counts()
            new_categories[col] = {"values": [category_text(v) for v in counts.index[:SHOWN_VALUES]],
                                   "distinct": len(counts), "rows": int(counts.sum()),
                                   "share": float(counts.sum() / len(frame))}
    schema: dict[str, Any] = {
        "columns": len(current.columns),
        "missing_columns": [c for c in sensitive if c not in current.columns],
        "extra_columns": sorted(c for c in current.columns if c not in roles),
        "coerced": coerced,
        "new_categories": new_categories,
    }
    checks = [
        Check("schema", "new_categories", "warn" if new_categories else "pass", len(new_categories),
              {c: v["values"] for c, v in new_categories.items()},
              ("new categories in " + ", ".join(f"{c} ({v['distinct']})" for c, v in new_categories.items()))
              if new_categories else "no category unseen in training"),
        Check("schema", "sensitive_columns", "warn" if schema["missing_columns"] else "pass",
              len(schema["missing_columns"]), {"missing": schema["missing_columns"]},
              ("fairness is not measured without " + ", ".join(schema["missing_columns"]))
              if schema["missing_columns"] else "every sensitive column is present"),
    ]
    return frame, schema, checks


# --------------------------------------------------------------------------- the run


def _rule_threshold(verdict: Verdict, path: str) -> float | None:
    for rule in verdict.rules:
        if rule.path == path and isinstance(rule.threshold, (int, float)) and not isinstance(rule.threshold, bool):
            return float(rule.threshold)
    return None


def run_monitor(pm: PluginManager, settings: Settings, run_ref: str, current_path: str, *, labels: bool = False,
                policy_ref: str | None = None, today: date | None = None) -> MonitorResult:
    """Monitor one batch against a training run; see the module docstring for the steps."""
    from assay.commands.waivers import trusted_waivers
    from assay.kernel.dataset import fingerprint_frame
    from assay.kernel.runner import add_results, collect_policies, monitor_stored_run
    from assay.kernel.spec import RunSpec
    from assay.policies import load_policy
    from assay.storage.signed import SignedLedger

    # 1. prepare: nothing is written until the inputs are known to be good
    row = resolve_run(settings, run_ref)
    training = training_evidence(row)
    spec = RunSpec.model_validate(row.spec)
    spec_path = Path(row.spec_path)
    policy = load_policy(policy_ref or spec.gate.policy, spec_path.parent, collect_policies(pm))
    info = training["monitoring"]["reference"]
    raw = read_batch(current_path)
    current, schema, schema_checks = validate_batch(raw, info, labels=labels, source=current_path, run_id=row.run_id)
    warnings = []
    if not policy.rules_for("monitor"):
        warnings.append(f"policy {policy.name} has no monitor-stage rules: the batch cannot pass it")

    source = str(Path(current_path).absolute())
    model = training["model"]
    evidence: dict[str, Any] = {
        "kind": "monitor",
        "run_id": row.run_id,
        "project": training.get("project", spec.project.name),
        "task": training.get("task"),
        "metric": training.get("metric"),
        "policy_hash": policy.hash,
        "model": {k: model.get(k) for k in ("name", "version", "ref", "family", "artifact")},
        "metrics": {"test": training.get("metrics", {}).get("test", {})},
        "baseline": training.get("baseline", {}),
        "data": {
            "reference": {"artifact": info["artifact"], "rows": info["rows"], "fingerprint": info.get("fingerprint"),
                          "part": info.get("part", "train")},
            "current": {"source": source, "rows": len(raw), "fingerprint": fingerprint_frame(raw), "labelled": labels},
        },
        "schema": schema,
    }
    add_results(evidence, [schema_checks])
    waivers: list[Any] = []
    if model.get("ref"):  # monitor-stage rules waived for this model version (`assay waive`)
        waivers, ignored = trusted_waivers(SignedLedger.open(settings), model["ref"], model.get("artifact"))
        warnings += ignored

    # 2. load, 3. the monitor hook, 4. the gate, 5. the record: the runner's stages
    document, verdict = monitor_stored_run(pm, settings, spec, spec_path, row.run_id, training, current, evidence,
                                           policy, labelled=labels, source=source,
                                           waivers=[w.to_json() for w in waivers], today=today)
    result = MonitorResult(document["monitor_id"], row.run_id, document, verdict, policy, warnings)
    _save_row(settings, result, row)
    return result


def _save_row(settings: Settings, result: MonitorResult, row: RunRow) -> None:
    ev, verdict = result.evidence, result.verdict
    drift = ev.get("drift", {})
    metric = ev.get("metric") or ""
    prediction = drift.get("prediction", {})
    record = MonitorRow(
        monitor_id=result.monitor_id, run_id=row.run_id, project=row.project, model_ref=ev["model"].get("ref") or "",
        status=result.status, decision=verdict.decision, source=ev["data"]["current"]["source"],
        rows=ev["data"]["current"]["rows"], fingerprint=ev["data"]["current"]["fingerprint"],
        labelled=ev["data"]["current"]["labelled"], share_drifted=drift.get("share_drifted"),
        share_threshold=_rule_threshold(verdict, "drift.share_drifted"), drifted=drift.get("drifted", 0),
        tested=drift.get("tested", 0), prediction_drifted=prediction.get("drifted"),
        prediction_score=prediction.get("score"), metric=metric,
        metric_current=ev.get("metrics", {}).get("current", {}).get(metric),
        metric_test=ev.get("metrics", {}).get("test", {}).get(metric),
        metric_threshold=_rule_threshold(verdict, f"metrics.current.{metric}"), html=result.html,
        evidence_json=json.dumps(ev, sort_keys=True), verdict_json=json.dumps(verdict.to_json(), sort_keys=True))
    with Session(_engine(settings)) as session:
        session.add(record)
        session.commit()


# --------------------------------------------------------------------------- history


def monitor_history(settings: Settings, run_ref: str) -> tuple[RunRow, list[MonitorRow]]:
    """The run and its monitor results, oldest first."""
    row = resolve_run(settings, run_ref)
    with Session(_engine(settings), expire_on_commit=False) as session:
        query = select(MonitorRow).where(MonitorRow.run_id == row.run_id).order_by(MonitorRow.created_at)  # type: ignore[arg-type]
        return row, list(session.exec(query).all())


def trend(values: Sequence[float | None], threshold: float | None, *, rising_is_bad: bool,
          window: int = 5) -> dict[str, Any]:
    """Least-squares slope per batch over the last ``window`` values, and batches to the threshold.

    ``batches_to_threshold`` is how many more batches at this slope until the value
    crosses ``threshold`` (None when it moves away from it, or is already past it).
    """
    points = [(i, v) for i, v in enumerate(values) if v is not None][-window:]
    out: dict[str, Any] = {"points": len(points), "slope": None, "direction": "flat", "batches_to_threshold": None,
                           "threshold": threshold, "last": points[-1][1] if points else None}
    if len(points) < 2:
        return out
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    out["slope"] = slope
    if abs(slope) > 1e-9:
        out["direction"] = "rising" if slope > 0 else "falling"
    worsening = slope > 0 if rising_is_bad else slope < 0
    last = ys[-1]
    if threshold is not None and worsening and abs(slope) > 1e-9:
        gap = (threshold - last) if rising_is_bad else (last - threshold)
        if gap > 0:
            out["batches_to_threshold"] = gap / abs(slope)
    out["worsening"] = bool(worsening and abs(slope) > 1e-9)
    return out
