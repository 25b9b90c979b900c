"""Deploy-time decisions read from the ledger: verify an artifact, count approvals, promote.

These functions take ledger records (objects shaped like ``assay.audit.format.Record``)
and trusted keys, so they can be tested on synthetic ledgers and reused by other tools.

Why a verdict can be trusted: its record's signature covers its hash, and its hash
commits to every earlier record through ``prev_hash``. So checking (1) that records
1..seq are contiguous, (2) that each one's body hashes to its stored hash and links to
its predecessor, and (3) that the verdict's signature verifies under a trusted key
proves the verdict and everything recorded before it are intact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from assay.errors import BadInput

VERDICT_KIND = "verdict"
APPROVAL_KIND = "approval"
PROMOTION_KIND = "promotion"
STAGES = ("none", "staging", "production", "archived")


class LedgerRecord(Protocol):
    """The parts of a ledger record these checks read."""

    seq: int
    run_id: str | None
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str
    signature: str
    body: bytes


@dataclass(frozen=True)
class TrustedKey:
    """A public key allowed to sign records in ``[valid_from, valid_until]``, before ``revoked_at``."""

    key_id: str
    public_raw: bytes
    valid_from: int | None = None
    valid_until: int | None = None
    revoked_at: int | None = None
    name: str = ""

    def valid_at(self, seq: int) -> bool:
        if self.valid_from is not None and seq < self.valid_from:
            return False
        if self.valid_until is not None and seq > self.valid_until:
            return False
        return not (self.revoked_at is not None and seq >= self.revoked_at)


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


def trusted_from_public_key(public_raw: bytes) -> TrustedKey:
    """Trust exactly one key (``--key``), at any position."""
    return TrustedKey(key_id_of(public_raw), public_raw, name="--key")


def home_trusted_keys(home: Path) -> list[TrustedKey]:
    """The trust list of an assay home (``keys/trust.json``); empty if there is none."""
    from assay.audit.keys import KeyStore

    return [TrustedKey(k.key_id, k.public_raw, k.valid_from, k.valid_until, k.revoked_at, k.name)
            for k in KeyStore(home).trusted(missing_ok=True)]


def trust_file_keys(path: Path) -> list[TrustedKey]:
    """The keys of a trust file given on the command line (``--trust``)."""
    from assay.audit.trust import TrustError, load_trust

    try:
        keys = load_trust(path)
    except (TrustError, OSError) as exc:
        raise BadInput(f"--trust {path}: {exc}") from None
    return [TrustedKey(k.key_id, k.public_raw, k.valid_from, k.valid_until, k.revoked_at, k.name) for k in keys]


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


# --------------------------------------------------------------------------- record checks


def signature_ok(record: LedgerRecord, public_raw: bytes) -> bool:
    """Whether ``record.signature`` is an Ed25519 signature of ``record.hash`` by this key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(bytes.fromhex(record.signature),
                                                              bytes.fromhex(record.hash))
    except (InvalidSignature, ValueError):
        return False
    return True


def trusted_signer(record: LedgerRecord, trusted: Sequence[TrustedKey]) -> tuple[TrustedKey | None, str]:
    """The trusted key that signed ``record`` at its position, or None and why not."""
    candidates = [k for k in trusted if k.key_id == record.key_id]
    if not candidates:
        return None, f"signed by key {record.key_id[:16]}…, which is not trusted"
    for key in candidates:
        if not key.valid_at(record.seq):
            continue
        if signature_ok(record, key.public_raw):
            return key, ""
        return None, f"its signature does not verify under key {record.key_id[:16]}… (record altered or forged)"
    return None, f"key {record.key_id[:16]}… was not valid at seq {record.seq} (rotated out or revoked)"


def chain_problem(records: Sequence[LedgerRecord], upto: int) -> str | None:
    """Why records 1..``upto`` are not an intact hash chain, or None if they are."""
    from assay.audit.format import GENESIS_PREV, record_hash

    prev = GENESIS_PREV
    expected = 1
    for record in records:
        if record.seq > upto:
            break
        if record.seq != expected:
            return f"ledger record {expected} is missing (found seq {record.seq} next)"
        if record.prev_hash != prev.hex():
            return f"ledger record {record.seq} does not link to record {record.seq - 1} (prev_hash mismatch)"
        if record_hash(prev, record.body).hex() != record.hash:
            return f"ledger record {record.seq} was altered: its content does not match its hash"
        prev = bytes.fromhex(record.hash)
        expected += 1
    if expected <= upto:
        return f"ledger ends at seq {expected - 1}, before record {upto}"
    return None


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

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "artifact": self.artifact, "reason": self.reason, "verdict_seq": self.verdict_seq,
                "decision": self.decision, "model": self.model, "run_id": self.run_id, "key_id": self.key_id,
                "rejected": self.rejected}


def latest_trusted_verdict(records: Sequence[LedgerRecord], artifact: str,
                           trusted: Sequence[TrustedKey]) -> tuple[LedgerRecord | None, list[str]]:
    """The newest verdict record for ``artifact`` signed by a trusted key, and why others were rejected."""
    rejected: list[str] = []
    verdicts = [r for r in records if r.kind == VERDICT_KIND and (r.payload or {}).get("artifact") == artifact]
    for record in reversed(verdicts):
        key, why = trusted_signer(record, trusted)
        if key is not None:
            return record, rejected
        rejected.append(f"verdict at seq {record.seq}: {why}")
    return None, rejected


def verify_artifact(records: Sequence[LedgerRecord], artifact: str, trusted: Sequence[TrustedKey],
                    require: str = "pass") -> VerifyResult:
    """Decide whether ``artifact`` (``sha256:HEX``) may be deployed.

    :param records: the whole ledger in seq order.
    :param trusted: keys allowed to sign the verdict.
    :param require: ``pass`` (the newest trusted verdict must pass) or ``any``.
    """
    if not any(r.kind == VERDICT_KIND and (r.payload or {}).get("artifact") == artifact for r in records):
        return VerifyResult(False, artifact, f"no verdict in the ledger for artifact {artifact} (was it trained "
                                             "and gated by assay, with these exact bytes?)")
    if not trusted:
        return VerifyResult(False, artifact, "no trusted keys: pass --key PUBKEY, or run where the assay home "
                                             "has a trust list (keys/trust.json)")
    verdict, rejected = latest_trusted_verdict(records, artifact, trusted)
    if verdict is None:
        return VerifyResult(False, artifact, "no verdict for this artifact is signed by a trusted key: "
                            + "; ".join(rejected), rejected=rejected)
    payload = verdict.payload or {}
    result = VerifyResult(False, artifact, "", verdict.seq, payload.get("decision"), payload.get("model"),
                          payload.get("run_id") or verdict.run_id, verdict.key_id, rejected)
    problem = chain_problem(records, verdict.seq)
    if problem:
        result.reason = f"ledger integrity fails up to the verdict (seq {verdict.seq}): {problem}"
        return result
    if require == "pass" and result.decision != "pass":
        reasons = "; ".join(payload.get("reasons", [])[:5]) or "no reason recorded"
        result.reason = f"the newest trusted verdict (seq {verdict.seq}) is {result.decision!r}, not pass: {reasons}"
        return result
    result.ok = True
    result.reason = (f"verdict {result.decision} at seq {verdict.seq} for {result.model or artifact}, signed by "
                     f"trusted key {verdict.key_id[:16]}…; ledger intact up to it")
    return result


# --------------------------------------------------------------------------- approvals


@dataclass(frozen=True)
class Approval:
    seq: int
    key_id: str
    approver: str
    comment: str = ""


def count_approvals(records: Iterable[LedgerRecord], model: str, artifact: str,
                    trusted: Sequence[TrustedKey]) -> tuple[list[Approval], list[str]]:
    """Approvals of ``model``/``artifact`` by distinct trusted keys (first per key), and rejections."""
    by_key: dict[str, Approval] = {}
    rejected: list[str] = []
    for record in records:
        payload = record.payload or {}
        if record.kind != APPROVAL_KIND or payload.get("model") != model:
            continue
        if payload.get("artifact") != artifact:
            rejected.append(f"approval at seq {record.seq} is for another artifact")
            continue
        key, why = trusted_signer(record, trusted)
        if key is None:
            rejected.append(f"approval at seq {record.seq}: {why}")
            continue
        by_key.setdefault(record.key_id, Approval(record.seq, record.key_id, str(payload.get("approver", "")),
                                                  str(payload.get("comment", ""))))
    return list(by_key.values()), rejected


def approval_payload(model: str, artifact: str, run_id: str, approver: str, comment: str,
                     verdict: LedgerRecord | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "artifact": artifact, "run_id": run_id, "approver": approver}
    if comment:
        payload["comment"] = comment
    if verdict is not None:
        payload["verdict_seq"] = verdict.seq
        payload["verdict_hash"] = verdict.hash
    return payload


# --------------------------------------------------------------------------- promotion


@dataclass
class PromotionCheck:
    """Whether a model version may enter a stage, with the evidence for the ledger record."""

    allowed: bool
    reason: str
    payload: dict[str, Any]


def check_promotion(records: Sequence[LedgerRecord], model: str, artifact: str, run_id: str, current_stage: str,
                    stage: str, trusted: Sequence[TrustedKey], approvals_required: int | None,
                    policy_hash: str | None = None) -> PromotionCheck:
    """Production needs the newest trusted verdict to pass and N approvals by distinct trusted keys.

    :param approvals_required: N from the verdict's policy (None: the policy could not be found).
    :param policy_hash: the hash of the policy that gave ``approvals_required``.
    """
    payload: dict[str, Any] = {"model": model, "artifact": artifact, "run_id": run_id, "from": current_stage,
                               "to": stage}
    if stage != "production":
        return PromotionCheck(True, f"{model}: {current_stage} → {stage}", payload)
    result = verify_artifact(records, artifact, trusted, require="pass")
    payload.update(verdict_seq=result.verdict_seq, decision=result.decision)
    if not result.ok:
        return PromotionCheck(False, f"{model} cannot go to production: {result.reason}", payload)
    if approvals_required is None:
        return PromotionCheck(False, f"{model} cannot go to production: the policy of its verdict (seq "
                                     f"{result.verdict_seq}) cannot be found to know how many approvals it needs; "
                                     "pass --policy with that policy", payload)
    approvals, rejected = count_approvals(records, model, artifact, trusted)
    payload.update(policy_hash=policy_hash, approvals_required=approvals_required,
                   approvals=[{"seq": a.seq, "key_id": a.key_id, "approver": a.approver} for a in approvals])
    if len(approvals) < approvals_required:
        extra = f" (not counted: {'; '.join(rejected)})" if rejected else ""
        return PromotionCheck(False, f"{model} cannot go to production: its policy needs {approvals_required} "
                                     f"approval(s) from distinct trusted keys, it has {len(approvals)}{extra}; "
                                     f"each approver runs `assay approve {model}` with their own signing key",
                              payload)
    return PromotionCheck(True, f"{model}: {current_stage} → production (verdict pass at seq {result.verdict_seq}, "
                                f"{len(approvals)}/{approvals_required} approvals)", payload)
