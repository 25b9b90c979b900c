"""The data of every page: plain JSON-able dicts, which the API returns as they are and the
templates render.

Each function reads the published :class:`~assay.web.index.LedgerIndex` (verified records only;
before the first verification finished, the records as read, each shown as unverified, and no
decision taken from them) and, for what it shows in full, reads records by run id or sequence number and checks each
against the verified tree (``LedgerView.check``). Decisions reuse the deciding code of the CLI:
``assay.storage.signed.SignedLedger`` over the records concerned, ``policies.deploy.verify_artifact``,
``count_approvals`` and ``waivers.trusted_waivers``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from assay.audit.format import DOMAIN_TAG, Record, payload_summary
from assay.storage.signed import pick_version
from assay.web.index import CHANGED, UNVERIFIED, VERIFIED, LedgerIndex
from assay.web.view import LedgerView

PER_PAGE = 50
MAX_PER_PAGE = 500
RUN_STATUSES = ("passed", "blocked", "errored", "incomplete")
_RANK = {"block": 0, "error": 0, "fail": 0, "warn": 1, "waived": 2}


class PageError(Exception):
    """A request that cannot be answered: HTTP ``status`` and a message saying why (and what to do)."""

    def __init__(self, status: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data or {}


# --------------------------------------------------------------------------- shared pieces


def ledger_state(view: LedgerView) -> dict[str, Any]:
    """The banner, as every API answer carries it under ``ledger``."""
    status = view.status.to_json()
    return {k: status[k] for k in ("state", "ok", "level", "headline", "shows", "verified_size", "unverified_size",
                                   "ledger_size", "checked_at", "first_bad_seq", "reason", "changed_records")}


NOT_YET_VERIFIED = "not_yet_verified"


def require_index(view: LedgerView) -> LedgerIndex:
    """What the pages list: the verified index, else the records as read before the first verification."""
    index = view.shown
    if index is None:
        raise PageError(503, view.status.headline(), {"retry_after": 2})
    return index


def require_verified(view: LedgerView) -> LedgerIndex:
    """The verified index, for what decides: 503 (retry) while the first verification runs."""
    index = view.index
    if index is None:
        reason = NOT_YET_VERIFIED if view.status.level == "pending" else "ledger_does_not_verify"
        raise PageError(503, view.status.headline(), {"reason": reason, "retry_after": 2})
    return index


def cached(index: LedgerIndex, key: Any, build: Any) -> Any:
    """``build()`` once per published index: what it derives holds until the verified ledger changes."""
    value = index.cache.get(key)
    if value is None:
        value = index.cache[key] = build()
    return value


def page_args(page: int | None, per_page: int | None) -> tuple[int, int]:
    p = max(1, page or 1)
    n = min(MAX_PER_PAGE, max(1, per_page or PER_PAGE))
    return p, n


def paginate(items: list[Any], page: int, per_page: int) -> tuple[list[Any], dict[str, Any]]:
    total = len(items)
    pages = max(1, math.ceil(total / per_page))
    start = (page - 1) * per_page
    return items[start : start + per_page], {"total": total, "page": page, "per_page": per_page, "pages": pages}


def signer_of(view: LedgerView, key_id: str) -> dict[str, Any]:
    report = view.status.report
    signers = getattr(report, "signers", None) or {}
    info = signers.get(key_id) or {}
    return {"key_id": key_id, "identity": info.get("identity") or key_id, "roles": list(info.get("roles") or [])}


def _signed(view: LedgerView, records: Iterable[Record]) -> Any:
    from assay.storage.signed import SignedLedger

    return SignedLedger(sorted(records, key=lambda r: r.seq), view.status.report, view.settings)


def split_fix(text: str) -> tuple[str, str | None]:
    what, sep, fix = str(text).partition(". Fix: ")
    return what, (fix if sep else None)


def record_json(view: LedgerView, record: Record, state: str) -> dict[str, Any]:
    out = record.to_json()
    out["integrity"] = state
    out["signer"] = signer_of(view, record.key_id)
    return out


def _checked_run_records(view: LedgerView, index: LedgerIndex, run_id: str) -> list[tuple[Record, str]]:
    rows = view.reader.records("run_id = ? AND seq <= ?", (run_id, index.size))
    return view.check(rows)


def _resolve_run(index: LedgerIndex, ref: str) -> str:
    if ref in index.runs:
        return ref
    matches = [r for r in index.runs if r.startswith(ref)] if len(ref) >= 6 else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PageError(404, f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(matches)[:5])}")
    raise PageError(404, f"run {ref!r} is not in the verified ledger (the runs page lists those that are)")


# --------------------------------------------------------------------------- overview


def overview(view: LedgerView) -> dict[str, Any]:
    """What needs attention across the ledger, most pressing first."""
    index = require_index(view)
    today = _dt.datetime.now(_dt.UTC).date()
    return dict(cached(index, ("overview", today), lambda: _overview(view, index, today)))


def _overview(view: LedgerView, index: LedgerIndex, today: _dt.date) -> dict[str, Any]:
    runs = sorted(index.runs.values(), key=lambda r: r.first_seq, reverse=True)
    # A run is judged by its newest verdict (a re-gate with a waiver can pass a run that ended blocked).
    blocked = [r.to_json() for r in runs
               if (r.decision in ("block", "error")) or (r.decision is None and r.status in ("blocked", "errored"))]
    latest_monitor: dict[str, Record] = {}
    for rec in index.by_kind.get("monitor", []):
        latest_monitor[str(rec.payload.get("model"))] = rec
    beyond = [{"model": ref, "seq": rec.seq, "time": rec.time, "run_id": rec.run_id,
               "reasons": rec.payload["summary"].get("reasons", [])[:3]}
              for ref, rec in sorted(latest_monitor.items()) if rec.payload.get("status") != "stable"]
    waivers = []
    for rec in index.by_kind.get("waiver", []):
        try:
            expires = _dt.date.fromisoformat(str(rec.payload.get("expires")))
        except ValueError:
            continue
        days = (expires - today).days
        if days <= 30:
            waivers.append({"model": rec.payload.get("model"), "rule": rec.payload.get("rule"),
                            "expires": expires.isoformat(), "days_left": days, "expired": days < 0, "seq": rec.seq,
                            "approver": rec.payload.get("approver")})
    production = [stage_entry(view, index, e) for e in models_of(index) if e.stage == "production"]
    return {"blocked_runs": blocked[:10], "blocked_total": len(blocked), "monitors_beyond_policy": beyond,
            "waivers_expiring": sorted(waivers, key=lambda w: w["days_left"]),
            "production": production, "runs": len(index.runs), "records": index.size,
            "models": len({e.name for e in models_of(index)})}


# --------------------------------------------------------------------------- runs


def runs_page(view: LedgerView, model: str = "", status: str = "", policy: str = "", since: str = "",
              until: str = "", page: int | None = None, per_page: int | None = None) -> dict[str, Any]:
    index = require_index(view)
    p, n = page_args(page, per_page)
    key = ("runs-order",)
    ordered = index.cache.get(key)
    if ordered is None:
        ordered = index.cache[key] = sorted(index.runs.values(), key=lambda r: r.first_seq, reverse=True)
    found = ordered
    if model:
        found = [r for r in found if model in (r.project, r.model, (r.model or "").rpartition("@")[0])]
    if status:
        found = [r for r in found if r.status == status or r.decision == status]
    if policy:
        found = [r for r in found if policy in (r.policy, r.policy_hash)
                 or (len(policy) >= 12 and (r.policy_hash or "").removeprefix("sha256:").startswith(
                     policy.removeprefix("sha256:")))]
    if since:
        found = [r for r in found if r.started[: len(since)] >= since]
    if until:
        found = [r for r in found if r.started[: len(until)] <= until]
    shown, meta = paginate(found, p, n)
    choices = index.cache.get("run-choices")
    if choices is None:
        projects = sorted({r.project for r in ordered if r.project})
        policies = sorted({r.policy for r in ordered if r.policy})
        counts: dict[str, int] = {}
        for r in ordered:
            counts[r.status] = counts.get(r.status, 0) + 1
        choices = index.cache["run-choices"] = {"models": projects, "policies": policies,
                                                "statuses": list(RUN_STATUSES), "counts": counts}
    return {"runs": [r.to_json() for r in shown], **meta,
            "filters": {"model": model, "status": status, "policy": policy, "since": since, "until": until},
            "choices": choices}


def attention_items(run_id: str, verdict: dict[str, Any] | None, evidence: dict[str, Any] | None,
                    error: str | None, changed: list[int]) -> list[dict[str, Any]]:
    """What needs attention, most pressing first, once each: ``assay.commands.report.attention``
    (the evidence pack's and ``assay report``'s list), with records changed since verification
    as its integrity finding. ``kind`` says where each item comes from (ledger, run, rule, check)."""
    from assay.commands.report import Pack, attention

    integrity: dict[str, Any] = {"ok": True}
    if changed:
        seqs = ", ".join(str(s) for s in changed)
        integrity = {"ok": False, "summary": f"record{'s' if len(changed) > 1 else ''} {seqs} differ"
                     f"{'s' if len(changed) == 1 else ''} from the verified ledger (the database was altered)"}
    pack = Pack(run_id=run_id, project="", status="", error=error, evidence=evidence or {}, verdict=verdict,
                records=[], integrity=integrity)
    items = attention(pack)
    for item in items:
        what = str(item.get("what"))
        item["kind"] = ("ledger" if what == "ledger" and not integrity["ok"] else "run" if what == "run failed"
                        else "check" if what.startswith("check ") else "rule")
    return items


def run_page(view: LedgerView, ref: str) -> dict[str, Any]:
    index = require_index(view)
    run_id = _resolve_run(index, ref)
    checked = _checked_run_records(view, index, run_id)
    good = [r for r, state in checked if state != CHANGED]  # unverified only before the first verification
    changed = [r.seq for r, state in checked if state == CHANGED]
    from assay.errors import BadInput

    signed = _signed(view, good)
    try:
        row = signed.run_row(run_id)
    except BadInput as exc:
        raise PageError(404, exc.message) from None
    evidence = row.evidence
    verdict = row.verdict
    slim = [r for r in index.by_run.get(run_id, []) if r.kind == "verdict"]
    if slim and (verdict is None or slim[-1].seq in changed):
        # The stored verdict was altered after verification: show the verified one (its summary).
        verdict = {**{k: v for k, v in slim[-1].payload.items() if k != "counts"}, "rules": [],
                   "summary_only": True}
    summary = index.runs[run_id]
    verdicts = [{"seq": r.seq, "time": r.time, "decision": r.payload.get("decision"), "policy": r.payload.get("policy"),
                 "policy_hash": r.payload.get("policy_hash"), "reasons": r.payload.get("reasons") or [],
                 "signer": signer_of(view, r.key_id)} for r in good if r.kind == "verdict"]
    model = dict((evidence or {}).get("model") or {})
    ref_ = summary.model
    deploy = []
    for r in index.by_model_ref.get(ref_ or "", []):
        if r.kind in ("approval", "waiver", "promotion"):
            deploy.append({"kind": r.kind, "seq": r.seq, "time": r.time, "payload": r.payload,
                           "signer": signer_of(view, r.key_id)})
    return {
        "run_id": run_id, "project": row.project, "status": row.status, "error": row.error,
        "model": {k: model.get(k) for k in ("name", "version", "ref", "artifact", "family")} if model else None,
        "metric": (evidence or {}).get("metric"), "metrics": (evidence or {}).get("metrics", {}),
        "baseline": (evidence or {}).get("baseline", {}), "gap": (evidence or {}).get("gap", {}),
        "verdict": verdict, "verdicts": verdicts, "deployment": deploy,
        "attention": attention_items(run_id, verdict, evidence, row.error, changed),
        "policy": summary.policy, "policy_hash": summary.policy_hash,
        "data": {"fingerprint": summary.data_fingerprint, "source": summary.data_source, "rows": summary.data_rows},
        "evidence": evidence,
        "records": [record_json(view, r, state) for r, state in checked],
        "newer_records": max(0, summary.last_seq - index.size) if summary.last_seq > index.size else 0,
    }


def run_report_html(view: LedgerView, data: dict[str, Any]) -> str:
    """The evidence pack's sections after its attention list (``assay.commands.report.render_body``): the run
    page has its own header, attention list and decision, and lists the records with their integrity."""
    from types import SimpleNamespace

    from assay.commands.report import render_body
    from assay.storage.store import RunRow

    status = view.status
    row = RunRow(run_id=data["run_id"], project=data["project"], status=data["status"], error=data["error"])
    records = [SimpleNamespace(**{k: r.get(k) for k in ("seq", "run_id", "kind", "time", "payload", "hash", "key_id")})
               for r in data["records"]]
    started = next((r for r in records if r.kind == "run_started"), None)
    context = {"spec": (started.payload or {}).get("spec") if started is not None else {},
               "signers": {r["key_id"]: r["signer"] for r in data["records"]},
               "model_records": [SimpleNamespace(seq=d["seq"], kind=d["kind"], time=d["time"], payload=d["payload"],
                                                 key_id="") for d in data["deployment"]]}
    verdict = data["verdict"] if data["verdict"] and not data["verdict"].get("summary_only") else None
    return render_body(row, data["evidence"] or {}, verdict, records, {"ok": status.ok, "summary": status.headline()},
                       context)


# --------------------------------------------------------------------------- registry


def models_of(index: LedgerIndex) -> list[Any]:
    """Model versions from the verified model and promotion records (``SignedLedger.models``)."""
    found = index.cache.get("models")
    if found is None:
        from assay.storage.signed import SignedLedger

        signed = SignedLedger(index.records_of("model", "promotion"), None, None)  # type: ignore[arg-type]
        found = index.cache["models"] = signed.models()
    return list(found)


def models_by_name(index: LedgerIndex) -> dict[str, list[Any]]:
    def build() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for e in models_of(index):
            out.setdefault(e.name, []).append(e)
        return out

    return dict(cached(index, "models-by-name", build))


def resolve_version(index: LedgerIndex, name: str, which: str) -> Any:
    """``NAME@VERSION``, ``NAME@latest`` or ``NAME@<stage>`` as ``SignedLedger.resolve`` reads them."""
    versions = models_by_name(index).get(name, [])
    if not versions:
        raise PageError(404, f"model {name!r} has no versions in the verified ledger (the models page lists them)")
    match = pick_version(versions, which)
    if match is None:
        raise PageError(404, f"model reference '{name}@{which}': no such version (the model page lists them)")
    return match


def _version_json(e: Any) -> dict[str, Any]:
    return {"name": e.name, "version": e.version, "ref": e.ref, "stage": e.stage, "family": e.family,
            "run_id": e.run_id, "artifact": e.artifact, "created_at": e.time, "seq": e.seq}


def governing(view: LedgerView, index: LedgerIndex, artifact: str) -> dict[str, Any]:
    """``assay verify ARTIFACT --require-verdict pass`` over the verified ledger, as JSON."""
    return dict(governing_many(view, index, [artifact])[artifact])


def governing_many(view: LedgerView, index: LedgerIndex, artifacts: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`governing` for several artifacts, reading the records of their runs in one query."""
    from assay.commands.deploy import verify_artifact

    if not index.verified:
        return {a: {"ok": False, "artifact": a, "decision": None, "verdict_seq": None, "policy": None,
                    "policy_hash": None, "reason": "not yet verified: nothing is decided until the ledger's first "
                                                   "verification has finished"} for a in artifacts}
    out = {a: index.cache[("governing", a)] for a in artifacts if ("governing", a) in index.cache}
    todo = [a for a in dict.fromkeys(artifacts) if a not in out]
    if not todo:
        return out
    runs_of: dict[str, set[str]] = {}
    pending = set(todo)
    for e in models_of(index):
        if e.artifact in pending:
            runs_of.setdefault(e.artifact, set()).add(e.run_id)
    wanted = {a: [r.seq for run in runs_of.get(a, ()) for r in index.by_run.get(run, [])
                  if r.kind in ("run_started", "model", "evidence")] for a in todo}
    read = {r.seq: (r, state) for r, state in view.check(view.reader.by_seqs([s for v in wanted.values() for s in v]))}
    revoked = index.by_kind.get("key_revoked", [])
    for artifact in todo:
        checked = [read[s] for s in wanted[artifact] if s in read]
        if len(checked) != len(wanted[artifact]) or any(state != VERIFIED for _, state in checked):
            out[artifact] = {"ok": False, "artifact": artifact, "decision": None, "verdict_seq": None,
                             "policy": None, "policy_hash": None,
                             "reason": "the records of the run that trained it differ from the verified ledger; "
                                       "see the banner"}
            continue
        slim = index.verdicts_by_artifact.get(artifact, []) + revoked
        result = verify_artifact(_signed(view, [r for r, _ in checked] + slim), artifact)
        subset = len(checked) + len(slim)
        result.reason = result.reason.replace(f"ledger of {subset} record(s)", f"ledger of {index.size} record(s)")
        result.ledger_size = index.size
        out[artifact] = index.cache[("governing", artifact)] = result.to_json()
    return out


def _model_records(index: LedgerIndex, ref: str, kind: str) -> list[Record]:
    return [r for r in index.by_model_ref.get(ref, []) if r.kind == kind]


def version_detail(view: LedgerView, index: LedgerIndex, e: Any, today: _dt.date | None = None) -> dict[str, Any]:
    from assay.commands.deploy import count_approvals
    from assay.commands.waivers import trusted_waivers

    today = today or _dt.datetime.now(_dt.UTC).date()
    approvals_recs = _model_records(index, e.ref, "approval")
    approvals, not_counted = count_approvals(_signed(view, approvals_recs), e.ref, e.artifact)
    waivers, ignored = trusted_waivers(_signed(view, _model_records(index, e.ref, "waiver")), e.ref, e.artifact)
    verdicts = [{"seq": r.seq, "time": r.time, "decision": r.payload.get("decision"), "policy": r.payload.get("policy"),
                 "policy_hash": r.payload.get("policy_hash"), "run_id": r.payload.get("run_id") or r.run_id,
                 "reasons": r.payload.get("reasons") or [], "signer": signer_of(view, r.key_id)}
                for r in index.verdicts_by_artifact.get(e.artifact, [])]
    promotions = [{"seq": r.seq, "time": r.time, "from": r.payload.get("from"), "to": r.payload.get("to"),
                   "verdict_seq": r.payload.get("verdict_seq"), "policy": r.payload.get("policy"),
                   "approvals_required": r.payload.get("approvals_required"),
                   "signer": signer_of(view, r.key_id)} for r in _model_records(index, e.ref, "promotion")]
    return {
        **_version_json(e),
        "verdicts": verdicts,
        "governing": governing(view, index, e.artifact),
        "approvals": [{"seq": a.seq, "identity": a.identity, "approver": a.approver, "key_id": a.key_id,
                       "comment": a.comment} for a in approvals],
        "approvals_not_counted": not_counted,
        "waivers": [{**w.to_json(), "active": w.active_on(today), "days_left": (w.expires - today).days}
                    for w in waivers],
        "waivers_ignored": ignored,
        "promotions": promotions,
        "monitors": len(_model_records(index, e.ref, "monitor")),
    }


def models_page(view: LedgerView, page: int | None = None, per_page: int | None = None) -> dict[str, Any]:
    index = require_index(view)
    p, n = page_args(page, per_page or 100)
    versions = models_of(index)
    summaries = cached(index, "model-names", lambda: _model_names(view, index, versions))
    shown, meta = paginate(list(reversed(versions)), p, n)
    return {"models": [_version_json(e) for e in shown], **meta, "names": summaries}


def _model_names(view: LedgerView, index: LedgerIndex, versions: list[Any]) -> list[dict[str, Any]]:
    names: dict[str, dict[str, Any]] = {}
    for e in versions:
        entry = names.setdefault(e.name, {"name": e.name, "versions": 0, "latest": None, "stages": {}})
        entry["versions"] += 1
        entry["latest"] = e.ref
        if e.stage != "none":
            entry["stages"].setdefault(e.stage, []).append(e.ref)
    summaries = []
    by_ref = {e.ref: e for e in versions}
    for entry in sorted(names.values(), key=lambda d: d["name"]):
        latest = by_ref[entry["latest"]]
        verdicts = index.verdicts_by_artifact.get(latest.artifact, [])
        entry["latest_decision"] = verdicts[-1].payload.get("decision") if verdicts else None
        prod = entry["stages"].get("production", [])
        entry["production"] = prod[-1] if prod else None
        if entry["production"]:
            g = governing(view, index, by_ref[entry["production"]].artifact)
            entry["production_ok"], entry["production_reason"] = g["ok"], g["reason"]
        summaries.append(entry)
    return summaries


def model_page(view: LedgerView, name: str, page: int | None = None, per_page: int | None = None) -> dict[str, Any]:
    index = require_index(view)
    p, n = page_args(page, per_page or 20)
    versions = models_by_name(index).get(name, [])
    if not versions:
        raise PageError(404, f"model {name!r} has no versions in the verified ledger (the models page lists them)")
    shown, meta = paginate(list(reversed(versions)), p, n)
    governing_many(view, index, [e.artifact for e in shown])
    stages: dict[str, list[str]] = {}
    for e in versions:
        stages.setdefault(e.stage, []).append(e.ref)
    return {"name": name, "versions": [version_detail(view, index, e) for e in shown], **meta, "stages": stages,
            "production": stages["production"][-1] if stages.get("production") else None}


def _checkpoint_info(view: LedgerView, index: LedgerIndex | None) -> dict[str, Any] | None:
    """The home's newest checkpoint: size, root, and whether it is a prefix of the verified tree."""
    from assay.audit.note import NoteError, parse_checkpoint, parse_note

    path = view.checkpoint_path()
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        body, sigs = parse_note(text)
        cp = parse_checkpoint(body)
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        return {"path": str(path), "error": f"unreadable checkpoint: {exc}"}
    matches = None
    if index is not None and cp.size <= index.size:
        matches = index.tree.root(cp.size) == cp.root
    return {"path": str(path), "origin": cp.origin, "size": cp.size, "root": cp.root.hex(),
            "root_base64": base64.b64encode(cp.root).decode(), "signed_by": [s.name for s in sigs],
            "matches_verified_tree": matches, "note": text}


def _witnessed_info(view: LedgerView, index: LedgerIndex | None, witness_keys: list[str]) -> dict[str, Any] | None:
    from assay.audit.note import NoteError, parse_checkpoint, parse_note

    path = view.witnessed_path()
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        body, sigs = parse_note(text)
        cp = parse_checkpoint(body)
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        return {"path": str(path), "error": f"unreadable witnessed checkpoint: {exc}"}
    cosigs = []
    for s in sigs:
        if s.name == cp.origin:
            continue
        stamp = int.from_bytes(s.signature[:8], "big") if len(s.signature) == 72 else None
        when = _dt.datetime.fromtimestamp(stamp, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None
        cosigs.append({"name": s.name, "key_hash": s.key_hash.hex(), "time": when})
    check = None
    if witness_keys:
        from assay.audit.witness import check_witnesses

        check = check_witnesses(text, witness_keys, len(dict.fromkeys(witness_keys)), None).to_json()
    matches = index.tree.root(cp.size) == cp.root if index is not None and cp.size <= index.size else None
    return {"path": str(path), "origin": cp.origin, "size": cp.size, "root": cp.root.hex(), "cosignatures": cosigs,
            "check": check, "matches_verified_tree": matches, "note": text}


def stage_entry(view: LedgerView, index: LedgerIndex, e: Any) -> dict[str, Any]:
    g = governing(view, index, e.artifact)
    return {"model": e.name, "ref": e.ref, "version": e.version, "stage": e.stage, "artifact": e.artifact,
            "run_id": e.run_id, "ok": g["ok"], "decision": g["decision"], "reason": g["reason"]}


def stage_answer(view: LedgerView, name: str, stage: str, witness_keys: list[str]) -> dict[str, Any]:
    """What a deployment system asks: the version in ``stage``, its governing verdict and the checkpoint."""
    from assay.audit.merkle import ProofError, verify_inclusion

    if view.status.level == "bad":
        raise PageError(503, view.status.headline(), {"reason": "ledger_does_not_verify", "retry_after": 2})
    index = require_verified(view)
    entry = resolve_version(index, name, stage)
    g = governing(view, index, entry.artifact)
    cp = _checkpoint_info(view, index)
    seq = g.get("verdict_seq")
    covering = None
    if cp and "size" in cp:
        covers = seq is not None and seq <= cp["size"] and bool(cp["matches_verified_tree"])
        proof = None
        if covers and seq is not None:
            hashes = index.tree.proof(seq, cp["size"])
            leaf = index.tree.leaf(seq) or b""
            try:
                verify_inclusion(seq - 1, cp["size"], leaf, hashes, bytes.fromhex(cp["root"]))
            except ProofError:
                covers = False
            proof = [h.hex() for h in hashes]
        covering = {k: cp[k] for k in ("path", "origin", "size", "root", "note")}
        covering.update(covers_verdict=covers, verdict_inclusion_proof=proof)
    witnessed = _witnessed_info(view, index, witness_keys)
    if witnessed is not None and "size" in witnessed:
        witnessed["covers_verdict"] = seq is not None and seq <= witnessed["size"] \
            and bool(witnessed["matches_verified_tree"])
    return {"ok": bool(g["ok"]), "model": name, "stage": stage, "ref": entry.ref, "version": entry.version,
            "run_id": entry.run_id, "artifact": entry.artifact, "decision": g["decision"],
            "policy": g["policy"], "policy_hash": g["policy_hash"], "verdict_seq": seq, "reason": g["reason"],
            "verdict": g, "checkpoint": covering, "witnessed": witnessed,
            "ledger_root": index.root.hex(), "ledger_size": index.size}


# --------------------------------------------------------------------------- lineage


_COLUMNS = {"data": 0, "code": 0, "spec": 0, "run": 1, "split": 2, "model": 2, "verdict": 3, "waiver": 3,
            "approval": 3, "replay": 3, "monitor": 4, "promotion": 4, "stage": 5}


class _Checked:
    """A ``Ledger``-like reader for ``build_lineage``: verified records of one run."""

    def __init__(self, records: list[Record]) -> None:
        self._records = records

    def records(self, run_id: str | None = None, kind: str | None = None) -> list[Record]:
        return [r for r in self._records if (run_id is None or r.run_id == run_id) and (kind is None or r.kind == kind)]


def _node_href(node: dict[str, Any]) -> str | None:
    kind, nid = node.get("kind"), str(node.get("id"))
    if kind == "data" and node.get("fingerprint"):
        return f"/lineage?data={node['fingerprint']}"
    if kind == "run":
        return f"/runs/{nid.split(':', 1)[1]}"
    if kind in ("model", "stage"):
        ref = nid.split(":", 1)[1]
        return "/models/" + urllib.parse.quote(ref.rpartition("@")[0] or ref, safe="")
    if node.get("seq"):
        return f"/ledger/{node['seq']}"
    return None


def layout(graph: dict[str, Any]) -> dict[str, Any]:
    """Positions for an SVG of the lineage graph: columns from data (left) to deployment (right)."""
    w, h, gap_x, gap_y = 200, 44, 60, 18
    baseline_models = {e["from"] for e in graph["edges"] if e["relation"] == "baseline"}
    columns: dict[int, list[dict[str, Any]]] = {}
    for node in graph["nodes"]:
        col = 0 if node["id"] in baseline_models else _COLUMNS.get(str(node.get("kind")), 3)
        columns.setdefault(col, []).append(node)
    placed: dict[str, dict[str, Any]] = {}
    order = {"model": 0, "data": 0, "run": 0, "verdict": 0}
    for col, nodes in sorted(columns.items()):
        for row, node in enumerate(sorted(nodes, key=lambda n: order.get(str(n.get("kind")), 1))):
            label = str(node.get("label", ""))
            placed[node["id"]] = {"id": node["id"], "kind": node.get("kind"), "x": 10 + col * (w + gap_x),
                                  "y": 30 + row * (h + gap_y), "w": w, "h": h, "title": label,
                                  "label": label if len(label) <= 30 else label[:29] + "…", "href": _node_href(node)}
    edges = []
    for e in graph["edges"]:
        a, b = placed.get(e["from"]), placed.get(e["to"])
        if a is None or b is None:
            continue
        edges.append({"x1": a["x"] + a["w"], "y1": a["y"] + a["h"] // 2, "x2": b["x"], "y2": b["y"] + b["h"] // 2,
                      "label": e["relation"]})
    width = 20 + (max(columns) + 1 if columns else 1) * (w + gap_x)
    height = 40 + max((len(v) for v in columns.values()), default=1) * (h + gap_y)
    return {"nodes": list(placed.values()), "edges": edges, "width": width, "height": height}


def lineage_page(view: LedgerView, run: str = "", data: str = "", policy: str = "", page: int | None = None,
                 per_page: int | None = None) -> dict[str, Any]:
    index = require_index(view)
    p, n = page_args(page, per_page or 100)
    if run:
        from assay.commands.lineage import build_lineage

        run_id = _resolve_run(index, run)
        good = [r for r, state in _checked_run_records(view, index, run_id) if state != CHANGED]
        graph = build_lineage(_Checked(good), run_id).to_json()
        model_ref = index.runs[run_id].model
        entry = next((e for e in models_of(index) if e.ref == model_ref), None)
        if entry is not None and entry.stage != "none":
            node_id = f"stage:{entry.ref}"
            graph["nodes"].append({"id": node_id, "kind": "stage", "label": f"{entry.ref} in {entry.stage}",
                                   "stage": entry.stage})
            graph["edges"].append({"from": f"model:{entry.ref}", "to": node_id, "relation": "stage"})
        for node in graph["nodes"]:
            node["href"] = _node_href(node)
            if node.get("kind") == "verdict" and node.get("policy_hash"):
                node["policy_href"] = f"/lineage?policy={node['policy_hash']}"
        return {"mode": "run", "run_id": run_id, "graph": graph}
    if data:
        key = data if data.startswith("sha256:") else f"sha256:{data}"
        fps = [fp for fp in index.data_runs if fp == key or (len(data) >= 12 and fp.startswith(key))]
        found = [index.runs[r] for fp in fps for r in index.data_runs[fp]]
        if not found:
            raise PageError(404, f"no run in the verified ledger trained on data {data!r}")
        shown, meta = paginate(sorted(found, key=lambda r: r.first_seq, reverse=True), p, n)
        return {"mode": "data", "fingerprint": fps[0] if len(fps) == 1 else data,
                "runs": [r.to_json() for r in shown], **meta}
    if policy:
        key = policy if policy.startswith("sha256:") else f"sha256:{policy}"
        digests = [d for d in index.policy_verdicts if d == key or (len(policy) >= 12 and d.startswith(key))]
        records = sorted((r for d in digests for r in index.policy_verdicts[d]), key=lambda r: r.seq, reverse=True)
        if not records:
            raise PageError(404, f"no verdict in the verified ledger was made under policy {policy!r}")
        shown, meta = paginate(records, p, n)
        counts: dict[str, int] = {}
        for r in records:
            counts[str(r.payload.get("decision"))] = counts.get(str(r.payload.get("decision")), 0) + 1
        verdicts = [{"seq": r.seq, "time": r.time, "run_id": r.payload.get("run_id") or r.run_id,
                     "model": r.payload.get("model"), "decision": r.payload.get("decision"),
                     "policy": r.payload.get("policy"), "policy_hash": r.payload.get("policy_hash"),
                     "artifact": r.payload.get("artifact")} for r in shown]
        return {"mode": "policy", "policy_hash": digests[0] if len(digests) == 1 else policy, "verdicts": verdicts,
                "decisions": counts, **meta}
    datasets = [{"fingerprint": fp, "runs": len(runs),
                 "source": index.runs[runs[0]].data_source if runs else None} for fp, runs in index.data_runs.items()]
    policies = [{"policy_hash": d, "verdicts": len(v), "policy": v[-1].payload.get("policy") if v else None}
                for d, v in index.policy_verdicts.items()]
    return {"mode": "overview", "datasets": sorted(datasets, key=lambda d: -d["runs"]),
            "policies": sorted(policies, key=lambda d: -d["verdicts"])}


# --------------------------------------------------------------------------- ledger


def ledger_page(view: LedgerView, before: int | None = None, kind: str = "", run: str = "",
                per_page: int | None = None) -> dict[str, Any]:
    index = view.index
    _, n = page_args(None, per_page)
    where: list[str] = []
    args: list[Any] = []
    if before is not None:
        where.append("seq < ?")
        args.append(before)
    if kind:
        where.append("kind = ?")
        args.append(kind)
    if run:
        where.append("run_id = ?")
        args.append(run)
    rows = view.reader.records(" AND ".join(where), args, order="seq DESC", limit=n + 1)
    more = len(rows) > n
    checked = view.check(rows[:n])
    records = []
    for r, state in checked:
        item = record_json(view, r, state)
        item["summary"] = payload_summary(r.payload, long_text=70, total=320)
        records.append(item)
    shown = view.shown
    kinds = sorted(shown.kinds) if shown is not None else []
    return {"records": records, "count": len(records), "kind": kind, "run": run,
            "next_before": checked[-1][0].seq if more and checked else None,
            "newest": before is None, "kinds": kinds, "checkpoint": _checkpoint_info(view, index),
            "verified_size": index.size if index is not None else 0}


@dataclass
class ProofTarget:
    size: int
    root: bytes
    against: str  # "checkpoint" | "verified tree head"


def record_page(view: LedgerView, seq: int) -> dict[str, Any]:
    rows = view.reader.records("seq = ?", (seq,))
    if not rows:
        raise PageError(404, f"record {seq} is not in the ledger (it has {view.status.ledger_size} records)")
    (record, state), = view.check(rows)
    out = {"record": record_json(view, record, state), "body": record.body.decode("utf-8", "replace"),
           "proof": proof_of(view, record, rows[0][1], state)}
    return out


def proof_of(view: LedgerView, record: Record, stored_hash: bytes, state: str) -> dict[str, Any]:
    """The inclusion proof of ``record`` against the newest checkpoint covering it (else the verified
    tree head), with everything a browser needs to recompute it from the record's bytes."""
    from assay.audit.merkle import ProofError, leaf_hash, verify_inclusion

    index = view.index
    base = {"seq": record.seq, "leaf_index": record.seq - 1, "record_hash": stored_hash.hex(),
            "prev_hash": record.prev_hash, "body": record.body.decode("utf-8", "replace"),
            "domain_tag_hex": DOMAIN_TAG.hex(), "hash": "SHA-256(domain tag ‖ prev_hash ‖ body)",
            "leaf": "SHA-256(0x00 ‖ record hash)", "node": "SHA-256(0x01 ‖ left ‖ right)", "integrity": state}
    if index is None or state == UNVERIFIED:
        return {**base, "available": False,
                "reason": "the record is beyond the verified ledger; its proof is given once it is verified"}
    if state == CHANGED:
        return {**base, "available": False,
                "reason": "the record as stored now is not the verified one: no proof can lead from it to the root"}
    cp = _checkpoint_info(view, index)
    if cp and "size" in cp and record.seq <= cp["size"] and cp["matches_verified_tree"]:
        target = ProofTarget(cp["size"], bytes.fromhex(cp["root"]), "checkpoint")
    else:
        target = ProofTarget(index.size, index.root, "verified tree head")
    hashes = index.tree.proof(record.seq, target.size)
    try:
        verify_inclusion(record.seq - 1, target.size, leaf_hash(stored_hash), hashes, target.root)
        server = "ok"
    except ProofError as exc:
        server = f"fails: {exc}"
    return {**base, "available": True, "against": target.against, "tree_size": target.size,
            "root": target.root.hex(), "proof": [h.hex() for h in hashes], "server_check": server,
            "checkpoint": {k: cp[k] for k in ("path", "origin", "size", "root", "root_base64", "note")}
            if target.against == "checkpoint" and cp else None}


# --------------------------------------------------------------------------- monitoring


def monitoring_page(view: LedgerView, model: str = "", page: int | None = None,
                    per_page: int | None = None) -> dict[str, Any]:
    index = require_index(view)
    p, n = page_args(page, per_page or 20)
    found = [m for m in cached(index, "monitoring", lambda: _monitoring(index))
             if not model or model in (m["model"], str(m["model"]).rpartition("@")[0])]
    # Most recently monitored first: what a reviewer looks at is the latest batch.
    found = sorted(found, key=lambda m: m["results"][-1]["seq"], reverse=True)
    shown, meta = paginate(found, p, n)
    return {"models": shown, **meta, "model": model}


@dataclass
class _MonitorResult:
    """The fields of ``assay.commands.monitor_history.MonitorRow`` that ``history_json`` reads, without an ORM object."""

    monitor_id: str
    run_id: str
    model_ref: str
    created_at: _dt.datetime
    status: str
    decision: str
    source: str
    rows: int
    fingerprint: str
    labelled: bool
    share_drifted: Any
    share_threshold: Any
    drifted: int
    tested: int
    prediction_drifted: Any
    prediction_score: Any
    metric: str
    metric_current: Any
    metric_test: Any
    metric_threshold: Any
    html: str | None = None

    def to_json(self) -> dict[str, Any]:
        from assay.commands.monitor_history import MonitorRow

        return MonitorRow.to_json(self)  # type: ignore[arg-type]  # the same shape as `monitor history --json`


def _monitoring(index: LedgerIndex) -> list[dict[str, Any]]:
    from assay.commands.monitor import history_json

    out = []
    for ref, recs in sorted(index.by_model_ref.items()):
        monitors = [r for r in recs if r.kind == "monitor"]
        if not monitors:
            continue
        rows = []
        for r in monitors:
            s = r.payload.get("summary") or {}
            rows.append(_MonitorResult(
                monitor_id=str(r.payload.get("monitor_id")), run_id=str(r.run_id), model_ref=ref,
                created_at=_dt.datetime.fromisoformat(r.time.replace("Z", "+00:00")),
                status=str(r.payload.get("status")), decision=str(s.get("decision")), source=str(s.get("source")),
                rows=int(s.get("rows") or 0), fingerprint=str(s.get("fingerprint") or ""),
                labelled=bool(s.get("labelled")), share_drifted=s.get("share_drifted"),
                share_threshold=s.get("share_threshold"), drifted=int(s.get("drifted") or 0),
                tested=int(s.get("tested") or 0), prediction_drifted=s.get("prediction_drifted"),
                prediction_score=s.get("prediction_score"), metric=str(s.get("metric") or ""),
                metric_current=s.get("metric_current"), metric_test=s.get("metric_test"),
                metric_threshold=s.get("metric_threshold")))
        run = index.runs.get(str(monitors[-1].run_id))
        history = history_json(_RunLike(str(monitors[-1].run_id), run.project if run else ""), rows)
        for item, r in zip(history["results"], monitors, strict=True):
            item["seq"] = r.seq
            item["reasons"] = (r.payload.get("summary") or {}).get("reasons", [])
        failed = [{"seq": r.seq, "time": r.time, "error": r.payload.get("error")} for r in recs
                  if r.kind == "monitor_failed"]
        out.append({**history, "failed": failed})
    return out


@dataclass
class _RunLike:
    run_id: str
    project: str


def monitoring_charts(entry: dict[str, Any]) -> list[str]:
    """Inline SVG charts of one model's monitor history (``assay monitor history --html``'s)."""
    from assay.commands.monitor import svg_chart

    rows = entry["results"]
    t_share, t_metric = entry["trend"]["share_drifted"], entry["trend"]["metric_current"]
    charts = [svg_chart("share of drifted features per batch", [r["share_drifted"] for r in rows],
                        [("threshold", t_share["threshold"], "#d62728")])]
    if any(r["metric_current"] is not None for r in rows):
        test = next((r["metric_test"] for r in rows if r["metric_test"] is not None), None)
        charts.append(svg_chart(f"{entry.get('metric') or 'metric'} on labelled batches",
                                [r["metric_current"] for r in rows],
                                [("holdout", test, "#2ca02c"), ("threshold", t_metric["threshold"], "#d62728")],
                                color="#9467bd"))
    return charts


# --------------------------------------------------------------------------- keys and witnesses


def keys_page(view: LedgerView, witness_keys: list[str]) -> dict[str, Any]:
    index = view.index
    report = view.status.report
    signers = getattr(report, "signers", None) or {}
    events: dict[str, list[dict[str, Any]]] = {}
    for r in index.records_of("key_added", "key_rotated", "key_revoked") if index is not None else []:
        kid = str(r.payload.get("key_id"))
        events.setdefault(kid, []).append({"seq": r.seq, "kind": r.kind, "time": r.time,
                                           "by": signer_of(view, r.key_id)["identity"],
                                           "reason": r.payload.get("reason")})
        if r.kind == "key_rotated":
            events.setdefault(str(r.payload.get("old_key_id")), []).append(
                {"seq": r.seq, "kind": "rotated out", "time": r.time, "by": signer_of(view, r.key_id)["identity"]})
    keys = [{"key_id": kid, **{k: info.get(k) for k in ("identity", "roles", "valid_from", "valid_until",
                                                         "revoked_at", "public_key")},
             "events": events.get(kid, [])}
            for kid, info in sorted(signers.items(), key=lambda kv: (kv[1].get("valid_from") or 0, kv[0]))]
    return {"keys": keys, "trust": getattr(report, "trust", None), "checkpoint": _checkpoint_info(view, index),
            "witnessed": _witnessed_info(view, index, witness_keys), "witness_keys": list(witness_keys)}


def describe_db(view: LedgerView) -> str:
    from assay.web.source import describe_db as describe

    return describe(view.settings.db_url)
