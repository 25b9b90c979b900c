"""The ledger's wire format: record hashing, key ids, the Record type (standard library only).

Everything an auditor needs to recompute a record's hash lives here, so the
standalone verifier and the writer share one definition:

* ``body``  = RFC 8785 canonical JSON of ``{actor, key_id, kind, payload, prev_hash, run_id, seq, time}``
  (hashes hex-encoded, ``run_id`` may be null). The exact bytes are stored and never re-serialized.
* ``hash``  = SHA-256(``DOMAIN_TAG`` ‖ prev_hash (32 raw bytes) ‖ body); the first record's
  prev_hash is 32 zero bytes.
* ``signature`` = Ed25519 over the 32 raw bytes of ``hash``.
* ``key_id`` = hex SHA-256 of the raw 32-byte Ed25519 public key.
* Merkle leaves (RFC 6962) are ``SHA-256(0x00 ‖ hash)``: the tree is built over record hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

DOMAIN_TAG = b"assay.ledger.record.v1\x00"
GENESIS_PREV = bytes(32)
HASH_SIZE = 32

#: Record kinds that change which keys may sign (the verifier replays them in order).
KEY_ADDED = "key_added"
KEY_ROTATED = "key_rotated"
KEY_REVOKED = "key_revoked"
KEY_KINDS = frozenset({KEY_ADDED, KEY_ROTATED, KEY_REVOKED})

#: Kinds that close a run.
RUN_END_KINDS = frozenset({"run_finished", "run_failed"})


def record_hash(prev_hash: bytes, body: bytes) -> bytes:
    """SHA-256(DOMAIN_TAG ‖ prev_hash ‖ body)."""
    return hashlib.sha256(DOMAIN_TAG + prev_hash + body).digest()


def key_id_of(public_raw: bytes) -> str:
    """The key id: hex SHA-256 of the raw Ed25519 public key."""
    return hashlib.sha256(public_raw).hexdigest()


@dataclass(frozen=True)
class Record:
    """One ledger record as stored; ``body`` holds the exact signed canonical bytes."""

    seq: int
    run_id: str | None
    kind: str
    time: str
    actor: dict[str, Any]
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str
    signature: str
    body: bytes = field(repr=False)

    @classmethod
    def from_row(cls, seq: int, body: bytes, hash_: bytes, signature: bytes) -> Record:
        """Build a Record from stored bytes, reading every field from the signed body."""
        doc = json.loads(body)
        return cls(
            seq=seq,
            run_id=doc.get("run_id"),
            kind=doc.get("kind", ""),
            time=doc.get("time", ""),
            actor=doc.get("actor") or {},
            payload=doc.get("payload") or {},
            prev_hash=doc.get("prev_hash", ""),
            hash=bytes(hash_).hex(),
            key_id=doc.get("key_id", ""),
            signature=bytes(signature).hex(),
            body=bytes(body),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view (for ``audit log --json``)."""
        return {
            "seq": self.seq,
            "run_id": self.run_id,
            "kind": self.kind,
            "time": self.time,
            "actor": self.actor,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "key_id": self.key_id,
            "signature": self.signature,
        }


def payload_summary(payload: Any, long_text: int = 100, total: int | None = None) -> str:
    """A record payload on one line: top-level values with ids and digests whole, nested parts by size.

    Strings longer than ``long_text`` (prose such as a traceback; ids and sha256 digests are far
    shorter) are shortened; ``total`` caps the whole line. ``audit log --json`` and the web view's
    record page show everything.
    """
    if not isinstance(payload, dict):
        return ""
    parts = []
    for key in sorted(payload):
        value = payload[key]
        if isinstance(value, dict):
            shown = f"{{{len(value)} keys}}"
        elif isinstance(value, list):
            shown = f"[{len(value)} item{'' if len(value) == 1 else 's'}]"
        elif isinstance(value, str):
            shown = value if len(value) <= long_text else f"{value[:long_text]}… ({len(value)} chars)"
            shown = shown.replace("\n", " ")
        else:
            shown = json.dumps(value, default=str)
        parts.append(f"{key}={shown}")
    text = "  ".join(parts)
    return text if total is None or len(text) <= total else text[: total - 1] + "…"

