"""Export a run as an in-toto Statement v1 in a DSSE envelope, signed with the home's key.

The subject is the model artifact (name and SHA-256 from the run's ``model`` record); the predicate
(type ``https://assay.dev/attestation/gate/v1``) carries the run's evidence summary, the policy
hash, the verdict, and where each came from in the ledger (seq and record hash), so a verifier can
tie the attestation back to the signed log. Any DSSE/in-toto tool can check the envelope.

Passwords in URLs are redacted from everything the statement quotes, also when a ledger written
before assay redacted them holds one; the evidence digest is still that of the signed record.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from assay.audit.canonical import canonical
from assay.audit.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from assay.audit.errors import BadInput
from assay.audit.source import redact

if TYPE_CHECKING:
    from assay.audit.format import Record
    from assay.audit.ledger import Ledger

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://assay.dev/attestation/gate/v1"
_SUMMARY_KEYS = ("spec_hash", "policy_hash", "data", "split", "model", "metrics", "baseline", "gap", "fairness",
                 "checks", "drift", "environment")


def _last(records: list[Record], kind: str) -> Record | None:
    found = [r for r in records if r.kind == kind]
    return found[-1] if found else None


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _ref(record: Record | None) -> dict[str, Any] | None:
    return None if record is None else {"seq": record.seq, "hash": record.hash, "key_id": record.key_id}


def statement(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """The in-toto Statement for ``run_id`` (BadInput if the run or its model record is missing)."""
    records = ledger.records(run_id=run_id)
    if not records:
        raise BadInput(f"run {run_id!r} has no ledger records (list runs with `assay audit log`)")
    model = _last(records, "model")
    if model is None:
        raise BadInput(f"run {run_id!r} has no model record: there is no artifact to attest")
    artifact = model.payload.get("artifact")
    if not isinstance(artifact, str) or not artifact.startswith("sha256:") or len(artifact) != 71:
        raise BadInput(f"run {run_id!r}: model record's artifact {artifact!r} is not 'sha256:<64 hex>'")
    digest = artifact.split(":", 1)[1].lower()
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise BadInput(f"run {run_id!r}: model artifact digest is not hex") from None
    name = str(model.payload.get("name") or "model")
    if model.payload.get("version") is not None:
        name = f"{name}@{model.payload['version']}"
    evidence = _last(records, "evidence")
    verdict = _last(records, "verdict")
    ev = evidence.payload if evidence is not None else {}
    vd = verdict.payload if verdict is not None else None
    summary = {k: ev[k] for k in _SUMMARY_KEYS if k in ev}
    policy_hash = ev.get("policy_hash") or (vd or {}).get("policy_hash")
    predicate = {
        "run_id": run_id,
        "ledger": {"origin": ledger.origin, "size": ledger.size()},
        "evidence": summary,
        "evidence_sha256": hashlib.sha256(canonical(ev)).hexdigest() if evidence is not None else None,
        "policy_hash": policy_hash,
        "verdict": vd,
        "records": {"model": _ref(model), "evidence": _ref(evidence), "verdict": _ref(verdict)},
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": _scrub(predicate),
    }


def intoto_envelope(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """A DSSE envelope (payloadType application/vnd.in-toto+json) signed by the active key."""
    key = ledger.signer()
    payload = canonical(statement(ledger, run_id))
    return sign_envelope(payload, INTOTO_PAYLOAD_TYPE, key.private, key.key_id)
