"""Key validity by ledger position: which key may sign which record, and who holds it.

``KeyState`` replays the key records (key_added, key_rotated, key_revoked) in ledger order from
the trust anchors; ``key_events_line`` is the checkpoint extension that commits to those records.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from assay.audit.format import KEY_ADDED, KEY_KINDS, KEY_REVOKED, KEY_ROTATED, key_id_of
from assay.audit.trust import (
    ADMIN,
    ATTESTOR,
    ECDSA_P256,
    SIGNER,
    TrustedKey,
    TrustError,
    parse_roles,
    resolve_roles,
)

KEY_EVENTS_EXT = "assay-key-events"


def named_key(payload: Any, key_id: Any) -> bytes | None:
    """The raw public key a key record's payload gives for ``key_id``, or None if it does not match it."""
    pub_hex = payload.get("public_key") if isinstance(payload, dict) else None
    try:
        pub = bytes.fromhex(pub_hex) if isinstance(pub_hex, str) else b""
    except ValueError:
        return None
    return pub if isinstance(key_id, str) and len(pub) == 32 and key_id_of(pub) == key_id else None


def attestor_key(payload: Any, key_id: Any) -> bytes | None:
    """The uncompressed P-256 point a key_added record gives for attestation key ``key_id``, or None."""
    pub_hex = payload.get("public_key") if isinstance(payload, dict) else None
    try:
        pub = bytes.fromhex(pub_hex) if isinstance(pub_hex, str) else b""
    except ValueError:
        return None
    if len(pub) != 65 or pub[0] != 4 or not isinstance(key_id, str) or key_id_of(pub) != key_id:
        return None
    return pub


def _identity_in(payload: dict[str, Any]) -> str:
    """The identity a key record's payload names (``name`` is its older spelling), or ""."""
    for field_name in ("identity", "name"):
        value = payload.get(field_name)
        if isinstance(value, str) and value:
            return value
    return ""


class KeyState:
    """Which key may sign which position, and who holds it, replayed in ledger order from the trust anchors.

    The anchors are the trust file's keys or, with no trust file, the genesis key (the self-signed
    key_added at seq 1, trusted on first use). Only an anchor introduces itself: a self-signed
    key_added by any other key is a finding. Every other key becomes valid one position after a
    key_added signed by a key holding the admin role, or after a key_rotated signed by the key it
    replaces (the successor inherits that key's identity and roles). key_revoked also needs the
    admin role. A key's identity and roles come from its trust entry when that gives them, else
    from the record that introduced it; a key whose roles nobody states is admin if it is the
    genesis key and signer otherwise (``assay.audit.trust.resolve_roles``). A key cannot grant
    itself roles: the roles a self-signed key_added claims are ignored.

    Attestation keys (``algorithm`` ecdsa-p256, role attestor) are kept apart: an admin's key_added
    introduces one (valid from the next position, until its key_revoked), it never signs a ledger
    record, and trust-file entries for them only narrow that window (``attestors``).
    """

    def __init__(self, trusted: list[TrustedKey] | None) -> None:
        self.tofu = trusted is None
        ledger_keys = [k for k in trusted or [] if not k.is_attestor]
        self.attest_trust = {k.key_id: k for k in trusted or [] if k.is_attestor}
        self.trust = {k.key_id: k for k in ledger_keys}
        self.pub: dict[str, bytes] = {k.key_id: k.public_raw for k in ledger_keys}
        self.attestor_pub: dict[str, bytes] = {}
        self.attestor_since: dict[str, int] = {}
        self.since: dict[str, int] = {}
        self.until: dict[str, int] = {}
        self.revoked: dict[str, int] = {}
        self.identity: dict[str, str] = {k.key_id: k.who for k in trusted or [] if k.who}
        self.roles: dict[str, tuple[str, ...]] = {k.key_id: k.roles for k in ledger_keys if k.roles is not None}
        self.genesis: str | None = None
        self.events: list[tuple[int, bytes]] = []  # (seq, record hash) of key records, for the checkpoint line

    def describe(self, source: str | None) -> str:
        if self.tofu:
            return "ledger genesis key (no trust file: trust on first use)"
        return f"trust file {source} ({len(self.trust)} key(s))" if source else f"{len(self.trust)} trusted key(s)"

    def roles_of(self, key_id: str) -> tuple[str, ...]:
        return resolve_roles(self.roles.get(key_id), key_id == self.genesis)

    def check(self, seq: int, key_id: str, kind: Any, body: bytes) -> str | None:
        """The reason record ``seq`` may not be signed by ``key_id``, or None; applies key records."""
        payload: dict[str, Any] = {}
        if kind in KEY_KINDS:
            try:
                doc = json.loads(body)
                payload = doc.get("payload") or {}
                if not isinstance(payload, dict):
                    payload = {}
            except (ValueError, AttributeError):
                payload = {}
        short = key_id
        t = self.trust.get(key_id)
        if key_id in self.attestor_pub:
            return f"key {short} is an attestation key (ecdsa-p256): it signs attestations, never ledger records"
        if key_id not in self.since:
            self_intro = kind == KEY_ADDED and payload.get("key_id") == key_id
            if self_intro and (t is not None or (self.tofu and seq == 1)):
                pub = named_key(payload, key_id)
                if pub is None:
                    return "key_added record's public key does not match its key_id"
                self.pub[key_id] = pub
                self.since[key_id] = seq if t is None or t.valid_from is None else t.valid_from
                if seq == 1:
                    self.genesis = key_id
                self.identity.setdefault(key_id, _identity_in(payload) or key_id)
            elif self_intro:
                return (f"self-signed key_added by {key_id}, a key that is not in the trust file "
                        "(only the genesis key at seq 1 introduces itself; an admin adds the others)")
            elif t is None:
                return f"unknown key {short} (not in the trust file and never added by a trusted key)"
            elif t.valid_from is None:
                return f"key {short} signs before its own key_added record"
            else:
                self.since[key_id] = t.valid_from
        if seq < self.since[key_id] or (t is not None and t.valid_from is not None and seq < t.valid_from):
            return f"key {short} is not yet valid at this position (valid from seq {self.since[key_id]})"
        until = self.until.get(key_id)
        if t is not None and t.valid_until is not None:
            until = t.valid_until if until is None else min(until, t.valid_until)
        if until is not None and seq > until:
            return f"key {short} was rotated out at seq {until}"
        revoked = self.revoked.get(key_id)
        if t is not None and t.revoked_at is not None:
            revoked = t.revoked_at if revoked is None else min(revoked, t.revoked_at)
        if revoked is not None and seq >= revoked:
            return f"key {short} was revoked at seq {revoked}"
        if kind in KEY_KINDS:
            return self._apply(seq, key_id, kind, payload)
        return None

    def _apply(self, seq: int, signer: str, kind: str, payload: dict[str, Any]) -> str | None:
        target = payload.get("key_id")
        if not isinstance(target, str):
            return f"{kind} record has no key_id"
        if (kind == KEY_ADDED and target != signer) or kind == KEY_REVOKED:
            roles = self.roles_of(signer)
            if ADMIN not in roles:
                return (f"{kind} record signed by {signer}, a key without the admin role "
                        f"(its roles: {', '.join(roles)})")
        if kind == KEY_ADDED and payload.get("algorithm") == ECDSA_P256:
            return self._add_attestor(seq, target, payload)
        if kind in (KEY_ADDED, KEY_ROTATED):
            if kind == KEY_ROTATED and payload.get("old_key_id") != signer:
                return "key_rotated record is not signed by the key it rotates out"
            if target != signer:
                pub = named_key(payload, target)
                if pub is None:
                    return f"{kind} record's public key does not match its key_id"
                if kind == KEY_ROTATED:
                    granted = self.roles_of(signer)
                    identity = self.identity.get(signer) or signer
                else:
                    try:
                        raw_roles = payload.get("roles")
                        granted = (SIGNER,) if raw_roles is None else parse_roles(raw_roles, "key_added record")
                    except TrustError as exc:
                        return str(exc)
                    identity = _identity_in(payload) or target
                self.pub[target] = pub
                if target not in self.since:
                    self.since[target] = seq + 1
                    self.roles.setdefault(target, granted)
                    self.identity.setdefault(target, identity)
            if kind == KEY_ROTATED:
                self.until[signer] = seq
        elif kind == KEY_REVOKED:
            self.revoked.setdefault(target, seq)
        return None

    def _add_attestor(self, seq: int, target: str, payload: dict[str, Any]) -> str | None:
        pub = attestor_key(payload, target)
        if pub is None:
            return "key_added record's ecdsa-p256 public key is not an uncompressed P-256 point matching its key_id"
        if payload.get("roles") not in (None, [ATTESTOR]):
            return f"key_added record gives ecdsa-p256 key {target} roles {payload.get('roles')!r}; its only role is attestor"
        if target in self.since:
            return f"key_added record introduces {target} as an attestation key, but it is a ledger signing key"
        self.attestor_pub.setdefault(target, pub)
        self.attestor_since.setdefault(target, seq + 1)
        self.identity.setdefault(target, _identity_in(payload) or target)
        return None

    def attestors(self) -> dict[str, dict[str, Any]]:
        """Attestation keys an admin introduced: who holds each, its window (``valid_from`` .. before
        ``revoked_at``), and its public key (the uncompressed P-256 point, hex)."""
        out: dict[str, dict[str, Any]] = {}
        for kid, pub in self.attestor_pub.items():
            t = self.attest_trust.get(kid)
            revoked = self.revoked.get(kid)
            if t is not None and t.revoked_at is not None:
                revoked = t.revoked_at if revoked is None else min(revoked, t.revoked_at)
            until = t.valid_until if t is not None else None
            out[kid] = {
                "identity": self.identity.get(kid) or kid,
                "roles": [ATTESTOR],
                "algorithm": ECDSA_P256,
                "valid_from": self.attestor_since.get(kid),
                "valid_until": until,
                "revoked_at": revoked,
                "public_key": pub.hex(),
            }
        return out

    def signers(self) -> dict[str, dict[str, Any]]:
        """Every key trusted or validly introduced, by key id: who holds it, its roles and its window."""
        out: dict[str, dict[str, Any]] = {}
        for kid, pub in self.pub.items():
            t = self.trust.get(kid)
            since = self.since.get(kid)
            if t is not None and t.valid_from is not None:
                since = t.valid_from if since is None else max(since, t.valid_from)
            until = self.until.get(kid)
            if t is not None and t.valid_until is not None:
                until = t.valid_until if until is None else min(until, t.valid_until)
            revoked = self.revoked.get(kid)
            if t is not None and t.revoked_at is not None:
                revoked = t.revoked_at if revoked is None else min(revoked, t.revoked_at)
            out[kid] = {
                "identity": self.identity.get(kid) or kid,
                "roles": list(self.roles_of(kid)),
                "valid_from": since,
                "valid_until": until,
                "revoked_at": revoked,
                "public_key": pub.hex(),
            }
        return out

    def note_keys(self, at: int) -> list[bytes]:
        """Public keys that may sign a checkpoint of size ``at``."""
        out = []
        for kid, pub in self.pub.items():
            t = self.trust.get(kid)
            revoked = self.revoked.get(kid)
            if t is not None and t.revoked_at is not None:
                revoked = t.revoked_at if revoked is None else min(revoked, t.revoked_at)
            if revoked is not None and revoked <= at:
                continue
            out.append(pub)
        return out


def key_events_line(events: Sequence[tuple[int, bytes]]) -> str:
    """The checkpoint extension committing to every key record up to the checkpoint."""
    h = hashlib.sha256()
    for seq, rh in events:
        h.update(seq.to_bytes(8, "big") + rh)
    return f"{KEY_EVENTS_EXT} {len(events)} {base64.b64encode(h.digest()).decode()}"
