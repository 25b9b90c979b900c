"""What the exports to other ecosystems share: the attestation key's lifecycle, the checkpoint that
covers a verdict, and the check that a checkpoint quoted in an attestation belongs to the ledger.

An attestation key (ECDSA P-256) exists because the tools users already trust verify only elliptic
curve keys (``model_signing verify key``); the ledger itself stays Ed25519. The key is trusted the
way every key is — an admin's signed ``key_added`` (``algorithm`` ecdsa-p256, role attestor) — and
revoked the same way; each signature it makes is logged as an ``attestation`` record holding the
SHA-256 of the exact bytes signed, so a signature that never went through assay has no record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from assay.audit.trust import ATTESTOR, ECDSA_P256
from assay.errors import BadInput, Finding

if TYPE_CHECKING:
    from assay.audit.keys import AttestationKey
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def init_attestation_key(settings: Settings, identity: str = "") -> tuple[AttestationKey, int, bool]:
    """This home's attestation key, created if it has none (or only a revoked one), and trusted.

    Returns the key, the seq of the key_added that introduced it, and whether it was created now.
    When this home's signing key is not an admin the key is still created, and BadInput says how an
    admin adds it (the same as for a new signing key).
    """
    from assay.audit.keys import default_identity
    from assay.audit.ledger import Ledger

    ledger = Ledger.open(settings)
    try:
        store = ledger.keys
        key = store.attestor() if store.attestor_id() is not None else None
        created = False
        if key is not None:
            added, revoked = _key_records(ledger, key.key_id)
            if added is not None and revoked is None:
                return key, added, False
            if revoked is not None:
                key = None  # a revoked key stays revoked: make a new one
        if key is None:
            key = store.generate_attestor()
            created = True
        pub = store.public_path(key.key_id)
        try:
            record = ledger.add_key(key.public_raw, identity=identity or default_identity(), roles=(ATTESTOR,),
                                    algorithm=ECDSA_P256)
        except Finding as exc:
            raise BadInput(
                f"attestation key {key.key_id} is in {pub}, but it signs nothing until an admin trusts it "
                f"({exc.message}); an admin adds it with: assay keys add {pub} --identity NAME --role attestor"
            ) from None
        return key, record.seq, created
    finally:
        ledger.close()


def _key_records(ledger: Any, key_id: str) -> tuple[int | None, int | None]:
    added = next((r.seq for r in ledger.records(kind="key_added") if r.payload.get("key_id") == key_id), None)
    revoked = next((r.seq for r in ledger.records(kind="key_revoked") if r.payload.get("key_id") == key_id), None)
    return added, revoked


def usable_attestor(signed: SignedLedger, key_id: str) -> dict[str, Any]:
    """The verified ledger's entry for attestation key ``key_id``; Finding unless it is trusted and unrevoked."""
    info = (getattr(signed.report, "attestors", None) or {}).get(key_id)
    if info is None:
        raise Finding(f"attestation key {key_id} is not trusted in this ledger (no admin's key_added introduces it); "
                      "create and trust one with: assay keys init --type ecdsa-p256")
    if info.get("revoked_at") is not None:
        raise Finding(f"attestation key {key_id} was revoked at ledger seq {info['revoked_at']}: it attests nothing "
                      "any more; create a new one with: assay keys init --type ecdsa-p256")
    if info.get("valid_until") is not None:
        raise Finding(f"attestation key {key_id} is retired (valid until seq {info['valid_until']} in the trust file)")
    return dict(info)


def signing_attestor(settings: Settings, signed: SignedLedger) -> tuple[AttestationKey, dict[str, Any]]:
    """The home's attestation key and its ledger entry, refusing one the ledger does not trust."""
    from assay.audit.keys import KeyStore

    key = KeyStore(settings.home).attestor()
    return key, usable_attestor(signed, key.key_id)


def record_signature(settings: Settings, run_id: str | None, key: AttestationKey, signed_bytes: bytes,
                     details: Mapping[str, Any]) -> Any:
    """Log one signature by ``key`` over ``signed_bytes`` (an ``attestation`` record); returns the record."""
    from assay.audit.ledger import Ledger

    ledger = Ledger.open(settings)
    try:
        return ledger.record_attestation(run_id, {
            **details, "key_id": key.key_id, "algorithm": key.algorithm, "signed_sha256": sha256_hex(signed_bytes),
        })
    finally:
        ledger.close()


def covering_checkpoint(settings: Settings, seq: int) -> str:
    """A signed checkpoint note of this ledger whose tree covers record ``seq``: the home's newest when
    it does, else a new one (written only over a ledger that verifies)."""
    from assay.audit.ledger import Ledger

    ledger = Ledger.open(settings)
    try:
        path = ledger.latest_checkpoint_path()
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            parsed = _parse(text)
            if parsed is not None and parsed.size >= seq:
                return text
        return ledger.checkpoint()
    finally:
        ledger.close()


def _parse(text: str) -> Any:
    from assay.audit.note import NoteError, parse_checkpoint, parse_note

    try:
        return parse_checkpoint(parse_note(text)[0])
    except NoteError:
        return None


def checkpoint_summary(note: str) -> dict[str, Any]:
    """``{origin, size, root (hex), note}`` of a signed checkpoint note, for an attestation to quote."""
    cp = _parse(note)
    if cp is None:
        raise BadInput("the home's checkpoint is not a readable signed note; run: assay audit checkpoint")
    return {"origin": cp.origin, "size": cp.size, "root": cp.root.hex(), "note": note}


def check_quoted_checkpoint(signed: SignedLedger, quoted: Any, covers: int) -> str | None:
    """Why a checkpoint an attestation quotes does not vouch for this ledger up to ``covers``, or None.

    The note must be signed by a ledger key that had not been revoked at its size, name this
    ledger's origin, and its root must be the Merkle root of the verified records 1..size.
    """
    from assay.audit.merkle import Frontier, leaf_hash
    from assay.audit.note import NoteError, verify_note

    if not isinstance(quoted, Mapping) or not isinstance(quoted.get("note"), str):
        return "it quotes no checkpoint"
    cp = _parse(quoted["note"])
    if cp is None:
        return "its checkpoint is not a signed checkpoint note"
    origin = getattr(signed.report, "origin", None)
    if origin and cp.origin != origin:
        return f"its checkpoint is of ledger {cp.origin}, not this one ({origin})"
    keys = [(cp.origin, bytes.fromhex(s["public_key"])) for s in (signed.report.signers or {}).values()
            if s.get("revoked_at") is None or s["revoked_at"] > cp.size]
    try:
        verify_note(quoted["note"], keys)
    except NoteError as exc:
        return f"its checkpoint's signature does not verify with this ledger's keys ({exc})"
    if cp.size < covers:
        return f"its checkpoint covers records 1..{cp.size}, not the verdict at seq {covers}"
    if cp.size > len(signed.records):
        return f"its checkpoint is of {cp.size} records, but the ledger holds {len(signed.records)} (truncated?)"
    frontier = Frontier()
    for record in signed.records[: cp.size]:
        frontier.append(leaf_hash(bytes.fromhex(record.hash)))
    if frontier.root() != cp.root:
        return f"its checkpoint's root is not that of this ledger's first {cp.size} records (a different history)"
    for field_name, expected in (("size", cp.size), ("root", cp.root.hex()), ("origin", cp.origin)):
        if quoted.get(field_name) not in (None, expected):
            return f"its checkpoint {field_name} {quoted.get(field_name)!r} disagrees with the signed note"
    return None
