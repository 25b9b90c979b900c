"""What the pages list, built from verified records only: runs, registry, verdicts, waivers, monitoring.

The index holds a slim copy of the records the pages summarise (``PROJECTED`` kinds: run
starts and ends, data, models, evidence, verdicts, promotions, approvals, waivers, monitor
results and key records), each checked on the way in: its body hashes to its stored hash, and
that hash is the leaf at its position in the verified tree (``MemoryTree``). Everything else is
read per request, by run id or by sequence number, and checked the same way.

An index is never changed once published: :meth:`LedgerIndex.extend` returns a new one for a
longer verified ledger, sharing the append-only tree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from assay.audit.format import Record, record_hash
from assay.audit.merkle import leaf_hash
from assay.web.source import Reader
from assay.web.tree import MemoryTree

PROJECTED = frozenset({
    "run_started", "data", "model", "evidence", "verdict", "run_finished", "run_failed", "promotion", "approval",
    "waiver", "monitor", "monitor_failed", "key_added", "key_rotated", "key_revoked",
})
VERIFIED, CHANGED, UNVERIFIED = "verified", "changed", "unverified"


class IndexMismatch(Exception):
    """The records read do not form the tree the verification computed (the database changed meanwhile)."""


@dataclass
class RunSummary:
    """One run as its verified records tell it (what the runs page lists)."""

    run_id: str
    first_seq: int
    last_seq: int
    records: int = 0
    project: str = ""
    started: str = ""
    last_time: str = ""
    status: str = "incomplete"  # passed | blocked | errored | incomplete (no run_finished / run_failed yet)
    policy: str | None = None
    policy_hash: str | None = None
    model: str | None = None
    artifact: str | None = None
    family: str | None = None
    decision: str | None = None  # the newest verdict's
    verdict_seq: int | None = None
    verdicts: int = 0
    attention: int = 0  # items of the run page's attention list for the newest verdict (see attention_count)
    data_fingerprint: str | None = None
    data_source: str | None = None
    data_rows: Any = None
    metric: str | None = None
    metric_value: Any = None
    error: str | None = None
    monitors: int = 0
    checks: dict[str, Any] = field(default_factory=dict)  # the evidence's checks that fail, error or warn

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "project": self.project, "status": self.status, "started": self.started,
            "last_time": self.last_time, "first_seq": self.first_seq, "last_seq": self.last_seq,
            "records": self.records, "complete": self.status != "incomplete", "policy": self.policy,
            "policy_hash": self.policy_hash, "model": self.model, "artifact": self.artifact, "family": self.family,
            "decision": self.decision, "verdict_seq": self.verdict_seq, "verdicts": self.verdicts,
            "attention": self.attention, "data": {"fingerprint": self.data_fingerprint, "source": self.data_source,
                                                  "rows": self.data_rows},
            "metric": self.metric, "metric_value": self.metric_value, "error": self.error,
            "monitors": self.monitors,
        }


def check_record(tree: MemoryTree, size: int, record: Record, stored_hash: bytes) -> str:
    """Whether ``record`` (as read now) is the verified record at its position.

    ``verified``: its body hashes to its stored hash and that hash is the verified leaf;
    ``changed``: it is not; ``unverified``: it lies beyond the verified ledger.
    """
    if record.seq > size:
        return UNVERIFIED
    try:
        prev = bytes.fromhex(record.prev_hash)
    except ValueError:
        return CHANGED
    if len(prev) != 32 or record_hash(prev, record.body) != stored_hash:
        return CHANGED
    return VERIFIED if tree.leaf(record.seq) == leaf_hash(stored_hash) else CHANGED


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _rule_threshold(rules: Iterable[Any], path: str) -> Any:
    for r in rules:
        if isinstance(r, dict) and r.get("path") == path and isinstance(r.get("threshold"), (int, float)):
            return r["threshold"]
    return None


def attention_count(verdict: dict[str, Any], checks: dict[str, Any]) -> int:
    """The length of the run page's attention list (``assay.commands.report.attention``: each finding
    once), from the verdict and the checks that did not pass."""
    from assay.commands.report import Pack, attention

    pack = Pack(run_id="", project="", status="", error=None, evidence={"checks": checks}, verdict=verdict,
                records=[], integrity={"ok": True})
    return len(attention(pack))


def _unpassed_checks(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group, named in _dict(value).items():
        for name, c in _dict(named).items():
            if isinstance(c, dict) and c.get("status") in ("fail", "error", "warn"):
                detail = _dict(c.get("detail"))
                out.setdefault(group, {})[name] = {
                    "status": c.get("status"), "value": c.get("value"), "message": c.get("message"),
                    "detail": {k: detail[k] for k in ("fix", "error", "reason") if k in detail}}
    return out


def slim_payload(kind: str, p: dict[str, Any]) -> dict[str, Any]:
    """The part of a payload the index keeps (the full record is read again when a page shows it)."""
    if kind == "run_started":
        spec = _dict(p.get("spec"))
        policy = _dict(p.get("policy"))
        return {"project": p.get("project"), "spec_hash": p.get("spec_hash"), "spec_path": p.get("spec_path"),
                "policy": {k: policy.get(k) for k in ("name", "hash", "approvals")} if policy else {},
                "spec": {"gate": spec.get("gate") or {}, "project": spec.get("project") or {}}}
    if kind == "data":
        return {k: p.get(k) for k in ("fingerprint", "source", "rows")}
    if kind == "model":
        return {k: p.get(k) for k in ("name", "version", "family", "artifact")}
    if kind == "evidence":
        metric = p.get("metric")
        model = _dict(p.get("model"))
        return {"policy_hash": p.get("policy_hash"), "metric": metric, "project": p.get("project"),
                "metric_value": _get(p, "metrics", "test", str(metric)) if metric else None,
                "model": {k: model.get(k) for k in ("ref", "artifact", "family", "name", "version")},
                "data": {k: _get(p, "data", k) for k in ("fingerprint", "source", "rows")},
                "checks": _unpassed_checks(p.get("checks"))}
    if kind == "verdict":
        rules = _list(p.get("rules"))
        counts: dict[str, int] = {}
        for r in rules:
            if isinstance(r, dict):
                counts[str(r.get("outcome"))] = counts.get(str(r.get("outcome")), 0) + 1
        out = {k: p.get(k) for k in ("artifact", "decision", "evidence_digest", "model", "policy", "policy_hash",
                                     "run_id", "reasons")}
        out["counts"] = counts
        return out
    if kind == "run_finished":
        return {k: p.get(k) for k in ("status", "decision")}
    if kind in ("run_failed", "monitor_failed"):
        return {"stage": p.get("stage"), "monitor_id": p.get("monitor_id"), "error": str(p.get("error", ""))[:2000]}
    if kind == "monitor":
        ev = _dict(p.get("evidence"))
        verdict = _dict(p.get("verdict"))
        rules = _list(verdict.get("rules"))
        metric = ev.get("metric") or ""
        drift = _dict(ev.get("drift"))
        prediction = _dict(drift.get("prediction"))
        current = _dict(_get(ev, "data", "current"))
        return {"monitor_id": p.get("monitor_id"), "status": p.get("status"), "model": p.get("model"),
                "artifact": p.get("artifact"),
                "summary": {"decision": verdict.get("decision"), "reasons": verdict.get("reasons") or [],
                            "share_drifted": drift.get("share_drifted"), "drifted": drift.get("drifted", 0),
                            "tested": drift.get("tested", 0),
                            "share_threshold": _rule_threshold(rules, "drift.share_drifted"),
                            "prediction_drifted": prediction.get("drifted"), "prediction_score": prediction.get("score"),
                            "metric": metric, "metric_current": _get(ev, "metrics", "current", metric),
                            "metric_test": _get(ev, "metrics", "test", metric),
                            "metric_threshold": _rule_threshold(rules, f"metrics.current.{metric}"),
                            "rows": current.get("rows", 0),
                            "source": current.get("source", ""),
                            "fingerprint": current.get("fingerprint", ""),
                            "labelled": bool(current.get("labelled"))}}
    return dict(p)  # promotions, approvals, waivers and key records are small


@dataclass
class LedgerIndex:
    """The verified ledger's summary; published whole, never changed afterwards."""

    tree: MemoryTree
    size: int = 0
    root: bytes = b""
    runs: dict[str, RunSummary] = field(default_factory=dict)
    by_kind: dict[str, list[Record]] = field(default_factory=dict)
    by_run: dict[str, list[Record]] = field(default_factory=dict)
    data_runs: dict[str, list[str]] = field(default_factory=dict)
    policy_verdicts: dict[str, list[Record]] = field(default_factory=dict)
    verdicts_by_artifact: dict[str, list[Record]] = field(default_factory=dict)
    by_model_ref: dict[str, list[Record]] = field(default_factory=dict)  # approvals, waivers, promotions, monitors
    kinds: dict[str, int] = field(default_factory=dict)  # records of each kind
    cache: dict[Any, Any] = field(default_factory=dict)  # derived views, valid for this index only
    verified: bool = True  # False: the records as read before any verification (``unverified``)

    @classmethod
    def build(cls, reader: Reader, size: int, root: bytes) -> LedgerIndex:
        return cls(MemoryTree()).extend(reader, size, root)

    @classmethod
    def unverified(cls, reader: Reader, size: int) -> LedgerIndex:
        """The first ``size`` records as read now, before any verification: what the pages show
        (marked unverified) while the first one runs. Records whose body does not hash to their
        stored hash are left out; nothing here is checked against a signature or a checkpoint."""
        return cls(MemoryTree(), verified=False).extend(reader, size, None)

    def _copy(self) -> LedgerIndex:
        return LedgerIndex(
            self.tree, self.size, self.root, dict(self.runs),
            {k: list(v) for k, v in self.by_kind.items()}, {k: list(v) for k, v in self.by_run.items()},
            {k: list(v) for k, v in self.data_runs.items()}, {k: list(v) for k, v in self.policy_verdicts.items()},
            {k: list(v) for k, v in self.verdicts_by_artifact.items()},
            {k: list(v) for k, v in self.by_model_ref.items()}, dict(self.kinds), {}, self.verified)

    def extend(self, reader: Reader, size: int, root: bytes | None) -> LedgerIndex:
        """A new index over the first ``size`` records, whose tree head must be ``root``.

        Raises IndexMismatch when what is read does not hash to ``root`` or a record read does
        not belong to that tree (the database changed after it was verified). With ``root``
        None (an unverified index) the tree head is whatever the records read hash to.
        """
        if size < self.size or self.tree.size != self.size:
            raise IndexMismatch("the verified ledger is shorter than the index")
        new = self._copy()
        wanted: list[int] = []
        for seq, h, run_id, kind in reader.iter_columns(self.size + 1, size):
            if seq != self.tree.size + 1:
                raise IndexMismatch(f"record {self.tree.size + 1} is missing")
            self.tree.append(h)
            new.kinds[str(kind)] = new.kinds.get(str(kind), 0) + 1
            if run_id is not None:
                summary = new.runs.get(run_id)
                if summary is None:
                    summary = new.runs[run_id] = RunSummary(run_id, seq, seq)
                elif summary is self.runs.get(run_id):
                    summary = new.runs[run_id] = replace(summary)
                summary.last_seq = seq
                summary.records += 1
            if kind in PROJECTED:
                wanted.append(seq)
        if self.tree.size != size or (root is not None and self.tree.root(size) != root):
            raise IndexMismatch("the records read do not hash to the verified tree head")
        new.size, new.root = size, root if root is not None else self.tree.root(size)
        for i in range(0, len(wanted), 2000):
            for record, h in reader.by_seqs(wanted[i : i + 2000]):
                if check_record(self.tree, size, record, h) != VERIFIED:
                    if root is None:
                        continue  # an unverified index shows no record that contradicts its own hash
                    raise IndexMismatch(f"record {record.seq} changed after it was verified")
                new._add(record)
        return new

    def _touch(self, run_id: str) -> RunSummary | None:
        summary = self.runs.get(run_id)
        return summary

    def _add(self, full: Record) -> None:
        kind, p = full.kind, full.payload if isinstance(full.payload, dict) else {}
        slim = Record(full.seq, full.run_id, kind, full.time, full.actor, slim_payload(kind, p), full.prev_hash,
                      full.hash, full.key_id, full.signature, b"")
        self.by_kind.setdefault(kind, []).append(slim)
        if full.run_id:
            self.by_run.setdefault(full.run_id, []).append(slim)
        s = self._touch(full.run_id) if full.run_id else None
        sp = slim.payload
        if s is not None:
            if kind == "run_started":
                s.project = str(sp.get("project") or "")
                s.started = full.time
                s.policy = (sp.get("policy") or {}).get("name") or _get(sp, "spec", "gate", "policy")
                s.policy_hash = s.policy_hash or (sp.get("policy") or {}).get("hash")
            elif kind == "data":
                s.data_fingerprint, s.data_source, s.data_rows = sp.get("fingerprint"), sp.get("source"), sp.get("rows")
                if s.data_fingerprint:
                    runs = self.data_runs.setdefault(str(s.data_fingerprint), [])
                    if full.run_id not in runs:
                        runs.append(str(full.run_id))
            elif kind == "model":
                s.model = f"{sp.get('name')}@{sp.get('version')}"
                s.artifact, s.family = sp.get("artifact"), sp.get("family")
            elif kind == "evidence":
                s.policy_hash = sp.get("policy_hash") or s.policy_hash
                s.metric, s.metric_value = sp.get("metric"), sp.get("metric_value")
                s.checks = sp.get("checks") or {}
                if not s.project:
                    s.project = str(sp.get("project") or "")
            elif kind == "verdict":
                s.decision, s.verdict_seq = sp.get("decision"), full.seq
                s.verdicts += 1
                s.attention = attention_count(p, s.checks)
            elif kind == "run_finished":
                s.status = str(sp.get("status") or "passed")
            elif kind == "run_failed":
                s.status, s.error = "errored", sp.get("error")
            elif kind == "monitor":
                s.monitors += 1
            s.last_time = full.time
        if kind == "verdict":
            self.policy_verdicts.setdefault(str(sp.get("policy_hash")), []).append(slim)
            self.verdicts_by_artifact.setdefault(str(sp.get("artifact")), []).append(slim)
        elif kind in ("approval", "waiver", "promotion", "monitor", "monitor_failed"):
            ref = sp.get("model")
            if kind == "monitor_failed" and full.run_id in self.runs:
                ref = self.runs[full.run_id].model
            if isinstance(ref, str) and ref:
                self.by_model_ref.setdefault(ref, []).append(slim)

    # ------------------------------------------------------------------ lookups
    def records_of(self, *kinds: str) -> list[Record]:
        """Slim records of these kinds, in ledger order."""
        out = [r for k in kinds for r in self.by_kind.get(k, [])]
        return sorted(out, key=lambda r: r.seq) if len(kinds) > 1 else out

    def run_model_ref(self, run_id: str) -> str | None:
        s = self.runs.get(run_id)
        return s.model if s is not None else None
