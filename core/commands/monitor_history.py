"""The index of monitor results behind ``assay monitor history``, and the trend toward a threshold.

The ledger's ``monitor`` records are the record of truth; ``monitor_results`` indexes them by
run (one row per monitored batch, with the numbers a history shows), so a history needs no
scan of the ledger. :func:`trend` fits the last few values and says how many batches remain
until a threshold is crossed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Field, Session, SQLModel, select

from assay.storage.store import utcnow

if TYPE_CHECKING:
    from assay.commands.monitoring import MonitorResult
    from assay.kernel.types import Verdict
    from assay.storage.settings import Settings
    from assay.storage.store import RunRow


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


def _rule_threshold(verdict: Verdict, path: str) -> float | None:
    for rule in verdict.rules:
        if rule.path == path and isinstance(rule.threshold, (int, float)) and not isinstance(rule.threshold, bool):
            return float(rule.threshold)
    return None


def save_row(settings: Settings, result: MonitorResult, row: RunRow) -> None:
    """Index one recorded monitor result of training run ``row`` (after its ``monitor`` record)."""
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


def monitor_history(settings: Settings, run_ref: str) -> tuple[RunRow, list[MonitorRow]]:
    """The run and its monitor results, oldest first."""
    from assay.commands.monitoring import resolve_run

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
