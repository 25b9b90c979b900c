"""Deploy-time decisions from a verified ledger: verify an artifact, count approvals, promote.

Every function here takes an ``assay.storage.signed.SignedLedger``: a ledger that verified in full
(each record re-hashed from its body, chained to the head, signed by a key valid at its
position under the verifier's trust root). What is left to decide is which records govern:

* a verdict counts for an artifact only under the **pinned policy** — the policy the run
  was trained under (its digest is in the run's signed evidence), unless the caller names
  another; verdicts under any other policy are ignored, so re-gating with a permissive
  policy cannot make a blocked model deployable;
* the **newest** verdict for the artifact under that policy governs: a later block wins
  over an earlier pass, and so does a later revocation of the key that signed it;
* a verdict is accepted only if it is **bound** to what it judged: its artifact is the
  run's model record's, and its evidence digest is the digest of the run's signed
  evidence record (which names the same artifact and policy);
* approvals count distinct **identities** holding the approver (or admin) role.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.errors import BadInput

VERDICT_KIND = "verdict"
APPROVAL_KIND = "approval"
PROMOTION_KIND = "promotion"
STAGES = ("none", "staging", "production", "archived")
APPROVER_ROLES = frozenset({"approver", "admin"})
VERDICT_ROLES = frozenset({"signer", "admin"})


def sha256_file(path: Path) -> str:
    """``sha256:HEX`` of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise BadInput(f"ARTIFACT {path}: file not found") from None
    except IsADirectoryError:
        raise BadInput(f"ARTIFACT {path}: is a directory; give the model file") from None
    except OSError as exc:
        raise BadInput(f"ARTIFACT {path}: cannot read: {exc.strerror}") from None
    return "sha256:" + digest.hexdigest()


def training_policy(signed: Any, run_id: str) -> dict[str, Any]:
    """The policy the run was trained under: name and digest from its signed evidence (and
    the parsed document from its run_started record, when the run recorded it)."""
    evidence, _ = signed.evidence(run_id)
    started = signed.started(run_id)
    recorded = started.get("policy") or {}
    digest = evidence.get("policy_hash") or recorded.get("hash")
    if recorded and recorded.get("hash") != digest:
        recorded = {}
    return {"name": recorded.get("name") or (started.get("spec") or {}).get("gate", {}).get("policy"),
            "hash": digest, "approvals": recorded.get("approvals"), "document": recorded.get("document")}


# --------------------------------------------------------------------------- verify


@dataclass
class VerifyResult:
    """The outcome of ``assay verify``: ``ok`` only if every condition held."""

    ok: bool
    artifact: str
    reason: str
    verdict_seq: int | None = None
    decision: str | None = None
    model: str | None = None
    run_id: str | None = None
    key_id: str | None = None
    rejected: list[str] = field(default_factory=list)
    policy: str | None = None
    policy_hash: str | None = None
    ledger_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "artifact": self.artifact, "reason": self.reason, "verdict_seq": self.verdict_seq,
                "decision": self.decision, "model": self.model, "run_id": self.run_id, "key_id": self.key_id,
                "rejected": self.rejected, "policy": self.policy, "policy_hash": self.policy_hash,
                "ledger_size": self.ledger_size}


def _binding_problem(signed: Any, verdict: Any, artifact: str) -> str | None:
    """Why ``verdict`` is not bound to ``artifact`` and its run's signed evidence, or None."""
    from assay.storage.signed import digest_of

    p = verdict.payload or {}
    run_id = p.get("run_id") or verdict.run_id
    if not p.get("evidence_digest"):
        return (f"verdict at seq {verdict.seq} does not commit to the evidence it judged (made by an older assay); "
                f"re-run `assay gate {run_id}`")
    model_records = [r for r in signed.run_records(run_id) if r.kind == "model"]
    if not model_records or (model_records[-1].payload or {}).get("artifact") != artifact:
        return f"verdict at seq {verdict.seq} names artifact {artifact}, but run {run_id}'s model record does not"
    try:
        evidence, record = signed.evidence(run_id)
    except BadInput as exc:
        return f"verdict at seq {verdict.seq}: {exc.message}"
    if digest_of(record.payload) != p["evidence_digest"]:
        return (f"verdict at seq {verdict.seq} judged evidence {p['evidence_digest']}, but run {run_id}'s signed "
                f"evidence (seq {record.seq}) has digest {digest_of(record.payload)}")
    if (evidence.get("model") or {}).get("artifact") != artifact:
        return f"verdict at seq {verdict.seq}: run {run_id}'s signed evidence is for another artifact"
    return None


def verify_artifact(signed: Any, artifact: str, require: str = "pass", policy_hash: str | None = None) -> VerifyResult:
    """Decide whether ``artifact`` (``sha256:HEX``) may be deployed.

    :param signed: the verified ledger.
    :param require: ``pass`` (the governing verdict must pass) or ``any`` (one must exist).
    :param policy_hash: pin this policy digest instead of the one each run was trained under.
    """
    size = len(signed.records)
    runs = [m.run_id for m in signed.models() if m.artifact == artifact]
    if not runs:
        return VerifyResult(False, artifact, f"no model in the ledger has artifact {artifact} (was it trained by "
                                             "assay, with these exact bytes?)", ledger_size=size)
    pinned = {run: policy_hash or training_policy(signed, run)["hash"] for run in runs}
    rejected: list[str] = []
    governing = None
    for record in reversed(signed.records):
        p = record.payload or {}
        if record.kind != VERDICT_KIND or p.get("artifact") != artifact:
            continue
        run_id = p.get("run_id") or record.run_id
        if run_id not in pinned:
            rejected.append(f"verdict at seq {record.seq} is for run {run_id}, which did not train this artifact")
            continue
        if p.get("policy_hash") != pinned[run_id]:
            rejected.append(f"verdict at seq {record.seq} is under policy {p.get('policy')} ({p.get('policy_hash')}), "
                            f"not the pinned {pinned[run_id]}: ignored")
            continue
        governing = record
        break
    if governing is None:
        wanted = ", ".join(sorted(set(pinned.values())))
        return VerifyResult(False, artifact, f"no verdict for artifact {artifact} under the pinned policy {wanted}",
                            rejected=rejected, policy_hash=wanted, ledger_size=size)
    p = governing.payload or {}
    result = VerifyResult(False, artifact, "", governing.seq, p.get("decision"), p.get("model"),
                          p.get("run_id") or governing.run_id, governing.key_id, rejected, p.get("policy"),
                          p.get("policy_hash"), size)
    problem = _binding_problem(signed, governing, artifact)
    revoked = signed.revoked_at(governing.key_id)
    roles = set(signed.signer(governing.key_id)["roles"])
    if problem is None and revoked is not None:
        problem = (f"the key {governing.key_id} that signed the verdict at seq {governing.seq} was revoked at seq "
                   f"{revoked}; re-gate the run with a trusted key")
    if problem is None and roles and not roles & VERDICT_ROLES:
        problem = (f"the verdict at seq {governing.seq} is signed by key {governing.key_id}, whose role(s) "
                   f"{', '.join(sorted(roles))} do not include signer")
    if problem:
        result.reason = problem
        return result
    if require == "pass" and result.decision != "pass":
        reasons = "; ".join(p.get("reasons", [])[:5]) or "no reason recorded"
        result.reason = (f"the governing verdict (seq {governing.seq}, policy {result.policy}) is "
                         f"{result.decision!r}, not pass: {reasons}")
        return result
    result.ok = True
    result.reason = (f"verdict {result.decision} at seq {governing.seq} for {result.model or artifact} under policy "
                     f"{result.policy} ({result.policy_hash}), signed by key {governing.key_id}; ledger of {size} "
                     "record(s) verified to its head")
    return result


# --------------------------------------------------------------------------- approvals


@dataclass(frozen=True)
class Approval:
    seq: int
    key_id: str
    identity: str
    approver: str
    comment: str = ""


def count_approvals(signed: Any, model: str, artifact: str) -> tuple[list[Approval], list[str]]:
    """Approvals of ``model``/``artifact``, one per identity holding the approver or admin role."""
    by_identity: dict[str, Approval] = {}
    rejected: list[str] = []
    for record in signed.records:
        payload = record.payload or {}
        if record.kind != APPROVAL_KIND or payload.get("model") != model:
            continue
        if payload.get("artifact") != artifact:
            rejected.append(f"approval at seq {record.seq} is for another artifact")
            continue
        signer = signed.signer(record.key_id)
        roles = set(signer["roles"])
        if roles and not roles & APPROVER_ROLES:
            rejected.append(f"approval at seq {record.seq} is signed by {signer['identity']} (key {record.key_id}), "
                            f"whose role(s) {', '.join(sorted(roles))} do not include approver")
            continue
        if signed.revoked_at(record.key_id) is not None:
            rejected.append(f"approval at seq {record.seq}: its key {record.key_id} was revoked")
            continue
        identity = str(signer["identity"])
        if identity in by_identity:
            rejected.append(f"approval at seq {record.seq} is a second one by {identity} (counted once)")
            continue
        by_identity[identity] = Approval(record.seq, record.key_id, identity, str(payload.get("approver", "")),
                                         str(payload.get("comment", "")))
    return list(by_identity.values()), rejected


def approval_payload(model: str, artifact: str, run_id: str, approver: str, comment: str,
                     verdict_seq: int | None, verdict_hash: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "artifact": artifact, "run_id": run_id, "approver": approver}
    if comment:
        payload["comment"] = comment
    if verdict_seq is not None:
        payload["verdict_seq"] = verdict_seq
        payload["verdict_hash"] = verdict_hash
    return payload


# --------------------------------------------------------------------------- promotion


@dataclass
class PromotionCheck:
    """Whether a model version may enter a stage, with the evidence for the ledger record."""

    allowed: bool
    reason: str
    payload: dict[str, Any]


def check_promotion(signed: Any, entry: Any, stage: str, policy: dict[str, Any]) -> PromotionCheck:
    """Production needs the governing verdict under the pinned policy to pass, and that policy's approvals.

    :param entry: the model version (``assay.storage.signed.ModelEntry``).
    :param policy: the pinned policy: ``{"name", "hash", "approvals"}`` (approvals None: unknown).
    """
    model, artifact = entry.ref, entry.artifact
    payload: dict[str, Any] = {"model": model, "artifact": artifact, "run_id": entry.run_id, "from": entry.stage,
                               "to": stage}
    if stage != "production":
        return PromotionCheck(True, f"{model}: {entry.stage} → {stage}", payload)
    result = verify_artifact(signed, artifact, require="pass", policy_hash=policy["hash"])
    payload.update(verdict_seq=result.verdict_seq, decision=result.decision, policy=policy.get("name"),
                   policy_hash=policy["hash"])
    if not result.ok:
        return PromotionCheck(False, f"{model} cannot go to production: {result.reason}", payload)
    required = policy.get("approvals")
    if required is None:
        return PromotionCheck(False, f"{model} cannot go to production: the ledger does not hold the document of "
                                     f"its policy {policy.get('name')} ({policy['hash']}) to say how many approvals "
                                     "it needs; pass --policy with that exact policy", payload)
    approvals, rejected = count_approvals(signed, model, artifact)
    payload.update(approvals_required=required,
                   approvals=[{"seq": a.seq, "key_id": a.key_id, "identity": a.identity, "approver": a.approver}
                              for a in approvals])
    if len(approvals) < required:
        extra = f" (not counted: {'; '.join(rejected)})" if rejected else ""
        return PromotionCheck(False, f"{model} cannot go to production: its policy {policy.get('name')} needs "
                                     f"{required} approval(s) from distinct approvers, it has {len(approvals)}{extra}; "
                                     f"each approver runs `assay approve {model}` with their own trusted key",
                              payload)
    return PromotionCheck(True, f"{model}: {entry.stage} → production (verdict pass at seq {result.verdict_seq}, "
                                f"{len(approvals)}/{required} approvals)", payload)
