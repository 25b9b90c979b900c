"""Standalone ledger verifier: checks an assay ledger offline using only the standard library and
``cryptography`` (PostgreSQL through ``psycopg``, imported only for postgres URLs).

Run it as ``python -m assay.audit.verify DB_URL [--checkpoint F | --since-checkpoint F] [--home DIR]
[--trust F] [--json]``; exit 0 = intact, 1 = tampering found (the first bad sequence number and what
is wrong), 2 = bad input. ``python -m assay.audit.verify --bundle DIR [--trust F]`` checks an audit
bundle instead, with no database (``assay.audit.bundle``).

What is checked for every record, always: it sits at the position its signed body claims (no gap,
move or swap); its prev_hash links to the previous record; its bytes hash to its stored hash; the
indexed columns match the signed body; its Ed25519 signature verifies; and its key was valid at that
position — known from the trust file or introduced by a trusted key through a key_added /
key_rotated record, not yet rotated out, not revoked. Signature checks run in parallel over all
cores (processes, chunks of 2,048 records); hashing, key windows and the Merkle root are computed
alongside.

Checkpoints (signed C2SP checkpoint notes of size m) add a consistency check to that full pass: the
note's signature, the Merkle root of the first m records recomputed from their bodies, and the
``assay-key-events`` line committing to the key records up to m. A truncated tail or a restored
older copy is reported. ``--checkpoint F`` names one; ``--home DIR`` (and ``assay audit verify``
always) adds the newest one the home holds, so a cut tail needs no flag to be caught.

``--since-checkpoint F`` is the one shortcut: signatures of records 1..m are taken on the
checkpoint's word (and the output says so); everything else above is still recomputed from the
bodies. ``verify_extension`` (used when assay writes its own checkpoints) additionally takes the
stored Merkle tree of the first m records, proven equal to the checkpoint's root, instead of
re-hashing them; it is never what a user's ``verify`` runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import re
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from assay.audit.errors import BadInput
from assay.audit.format import (
    GENESIS_PREV,
    KEY_ADDED,
    KEY_KINDS,
    KEY_REVOKED,
    KEY_ROTATED,
    key_id_of,
    record_hash,
)
from assay.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from assay.audit.note import Checkpoint, NoteError, parse_checkpoint, parse_note, verify_note
from assay.audit.trust import (
    ADMIN,
    ATTESTOR,
    ECDSA_P256,
    SIGNER,
    TrustedKey,
    TrustError,
    load_trust,
    parse_roles,
    resolve_roles,
)

CHUNK = 2048
PARALLEL_MIN = 6000
KEY_EVENTS_EXT = "assay-key-events"
MAX_ERRORS = 50

Row = tuple[int, Any, Any, bytes, bytes, bytes, bytes, bytes]  # seq, run_id, kind, key_id, prev, hash, sig, body


def origin_of(ledger_id: str) -> str:
    return f"assay.ledger/{ledger_id}"


# What a URL's secrets look like: the password of ``scheme://user:password@host`` (it runs to the '@'
# before the host, so a raw '@' or '/' in it stays hidden) and a password given as a query parameter.
SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token", "api_key")
_USERINFO_SECRET = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*):[^\s'\"@]*(?:@[^\s'\"@/?#]*(?=@))*@"
)
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:" + "|".join(SECRET_QUERY_KEYS) + r")=)[^&#\s'\"]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with its password shown as ``***``; any URLs inside a longer text (an error message) too."""
    if "://" not in url and "=" not in url:
        return url
    return _QUERY_SECRET.sub(r"\g<head>***", _USERINFO_SECRET.sub(r"\g<head>:***@", url))


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///PATH`` URL (a bare path is accepted too)."""
    if "://" not in url:
        return url
    if not url.startswith("sqlite"):
        raise BadInput(f"not a SQLite URL: {redact(url)}")
    rest = url.split("://", 1)[1]
    if rest.startswith("/"):
        rest = rest[1:]
    return urllib.parse.unquote(rest.split("?", 1)[0])


# ---------------------------------------------------------------------------------------------
# Reading the database (stdlib sqlite3, or psycopg for PostgreSQL)
# ---------------------------------------------------------------------------------------------


class Source:
    """Read-only access to the ledger tables."""

    def __init__(self, url: str) -> None:
        self.url = url
        if "://" not in url or url.startswith("sqlite"):
            path = sqlite_path(url)
            if not Path(path).is_file():
                raise BadInput(f"ledger database {path} does not exist")
            try:
                self.conn: Any = sqlite3.connect(
                    f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, check_same_thread=False, timeout=60
                )
                self.conn.execute("PRAGMA busy_timeout = 60000")
            except sqlite3.Error as exc:
                raise BadInput(f"cannot open ledger database {path}: {exc}") from None
            self.ph = "?"
        elif url.startswith(("postgresql", "postgres")):
            import psycopg  # lazily: only auditors of PostgreSQL ledgers need it

            rest = url.split("://", 1)[1]
            try:
                self.conn = psycopg.connect("postgresql://" + rest, autocommit=True)
            except psycopg.Error as exc:
                raise BadInput(f"cannot connect to {redact(url)}: {str(exc).strip()}") from None
            self.ph = "%s"
        else:
            raise BadInput(f"unsupported database URL {redact(url)}: use sqlite:///PATH or postgresql+psycopg://…")
        try:
            self.query("SELECT seq FROM ledger_records WHERE seq = 0")
        except Exception:
            raise BadInput(f"{redact(url)} holds no assay ledger (table ledger_records is missing)") from None

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql.replace("?", self.ph), tuple(args))
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def max_seq(self) -> int:
        return int(self.query("SELECT MAX(seq) FROM ledger_records")[0][0] or 0)

    def meta(self, name: str) -> str | None:
        rows = self.query("SELECT value FROM ledger_meta WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    _COLS = "seq, run_id, kind, key_id, prev_hash, hash, signature, body"

    def iter_range(self, first: int, last: int) -> Iterator[Row]:
        """Rows with first ≤ seq ≤ last in seq order."""
        cur = self.conn.cursor()
        try:
            cur.execute(
                f"SELECT {self._COLS} FROM ledger_records WHERE seq >= {self.ph} AND seq <= {self.ph} ORDER BY seq",
                (first, last),
            )
            for r in cur.fetchall():
                yield (int(r[0]), r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7]))
        finally:
            cur.close()

    def row(self, seq: int) -> Row | None:
        rows = self.query(f"SELECT {self._COLS} FROM ledger_records WHERE seq = ?", (seq,))
        if not rows:
            return None
        r = rows[0]
        return (int(r[0]), r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7]))

    def key_rows(self, max_seq: int) -> list[Row]:
        kinds = sorted(KEY_KINDS)
        rows = self.query(
            f"SELECT {self._COLS} FROM ledger_records WHERE kind IN (?, ?, ?) AND seq <= ? ORDER BY seq",
            (*kinds, max_seq),
        )
        return [
            (int(r[0]), r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7])) for r in rows
        ]

    def stored_node(self, level: int, idx: int) -> bytes:
        """A stored perfect-subtree hash (level 0: the leaf of record idx+1). Untrusted until proven."""
        if level == 0:
            rows = self.query("SELECT hash FROM ledger_records WHERE seq = ?", (idx + 1,))
            if not rows:
                raise ProofError(f"record {idx + 1} is missing")
            return leaf_hash(bytes(rows[0][0]))
        rows = self.query("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?", (level, idx))
        if not rows:
            raise ProofError(f"stored Merkle node ({level}, {idx}) is missing")
        return bytes(rows[0][0])

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------------------------------------
# Key validity by ledger position
# ---------------------------------------------------------------------------------------------


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


def key_events_extension(url: str, size: int) -> str:
    src = Source(url)
    try:
        return key_events_line([(r[0], r[5]) for r in src.key_rows(size)])
    finally:
        src.close()


# ---------------------------------------------------------------------------------------------
# Per-record checks (run in worker processes)
# ---------------------------------------------------------------------------------------------

_PUBKEYS: dict[bytes, Ed25519PublicKey] = {}


def _public(raw: bytes) -> Ed25519PublicKey:
    key = _PUBKEYS.get(raw)
    if key is None:
        key = _PUBKEYS[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return key


_DECODE = json.JSONDecoder().decode


def check_row(row: Row, prev: bytes, pubkeys: dict[str, bytes]) -> str | None:
    """Why ``row`` is bad given the previous record's hash, or None."""
    seq, run_id, kind, key_id, prev_col, h, sig, body = row
    try:
        doc = _DECODE(body.decode())
    except ValueError:  # UnicodeDecodeError included
        return "record body is not valid JSON"
    if not isinstance(doc, dict):
        return "record body is not a JSON object"
    claimed = doc.get("seq")
    if claimed != seq:
        return f"record stored at seq {seq} claims seq {claimed!r} (moved, swapped or inserted)"
    if doc.get("prev_hash") != prev.hex():
        return "chain broken: prev_hash in the signed body is not the previous record's hash"
    if prev_col != prev:
        return "chain broken: stored prev_hash column is not the previous record's hash"
    if record_hash(prev, body) != h:
        return "hash mismatch: the record's bytes do not hash to its stored hash"
    kid = key_id.hex()
    if doc.get("key_id") != kid:
        return "stored key_id column differs from the signed body"
    if doc.get("kind") != kind or doc.get("run_id") != run_id:
        return "stored kind/run_id columns differ from the signed body"
    pub = pubkeys.get(kid)
    if pub is not None:
        try:
            _public(pub).verify(sig, h)
        except InvalidSignature:
            return f"bad signature (does not verify with key {kid})"
    return None


@dataclass
class _Chunk:
    """What checking one range of sequence numbers found (small: no rows travel between processes).

    ``segments`` are runs of consecutive records signed by one key, in order, ``(first, last,
    key_id, kind, body, hash)``; key records are segments of their own and carry their body and
    hash, so the caller can replay key validity in ledger order without seeing every row.
    """

    errors: list[tuple[int, str]]
    segments: list[tuple[int, int, str, Any, bytes | None, bytes | None]]
    leaves: bytes  # the 32-byte leaf hashes, concatenated
    root: bytes | None  # the subtree root of a range of CHUNK records without gaps


def _check_range(src: Source, first: int, last: int, start_seq: int, start_prev: bytes,
                 pubkeys: dict[str, bytes], sig_after: int = 0) -> _Chunk:
    """Check records ``first..last``; the chain is anchored at the last stored record before ``first``.

    Signatures are checked only for records after ``sig_after`` (0: all of them).
    """
    prev = start_prev
    if first > start_seq:
        before = src.query("SELECT hash FROM ledger_records WHERE seq < ? AND seq >= ? ORDER BY seq DESC LIMIT 1",
                           (first, start_seq))
        if before:
            prev = bytes(before[0][0])
    errors: list[tuple[int, str]] = []
    segments: list[tuple[int, int, str, Any, bytes | None, bytes | None]] = []
    leaves: list[bytes] = []
    expected = first
    for row in src.iter_range(first, last):
        seq, kind = row[0], row[2]
        if seq != expected:
            errors.append((expected, f"gap: record {expected} is missing (next stored is {seq})"))
        expected = seq + 1
        reason = check_row(row, prev, pubkeys if seq > sig_after else _NO_KEYS)
        if reason:
            errors.append((seq, reason))
        kid = row[3].hex()
        if kind in KEY_KINDS:
            segments.append((seq, seq, kid, kind, row[7], row[5]))
        elif segments and segments[-1][1] == seq - 1 and segments[-1][2] == kid and segments[-1][4] is None:
            segments[-1] = (segments[-1][0], seq, kid, None, None, None)
        else:
            segments.append((seq, seq, kid, None, None, None))
        leaves.append(leaf_hash(row[5]))
        prev = row[5]
    if expected <= last:
        after = src.query("SELECT MIN(seq) FROM ledger_records WHERE seq > ?", (last,))[0][0]
        nxt = f"next stored is {after}" if after is not None else "none stored after it"
        errors.append((expected, f"gap: record {expected} is missing ({nxt})"))
    return _Chunk(errors, segments, b"".join(leaves), root_from_leaves(leaves) if len(leaves) == CHUNK else None)


_NO_KEYS: dict[str, bytes] = {}
_WORKER_SOURCE: list[Source] = []


def _init_worker(url: str) -> None:
    # Each worker reads its own ranges over its own connection (never the parent's, forked or not).
    _WORKER_SOURCE[:] = [Source(url)]


def _worker_range(task: tuple[int, int, int, bytes, dict[str, bytes], int]) -> _Chunk:
    return _check_range(_WORKER_SOURCE[0], *task)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """The outcome of a verification: ``ok``, counts, and the first bad record when not ok.

    ``signers`` maps every key id the verification trusted — from the trust file, the genesis key,
    or introduced by a valid key record — to ``{"identity", "roles", "valid_from", "valid_until",
    "revoked_at", "public_key"}``. Windows are ledger positions: the key may sign seq ``s`` when
    ``valid_from`` is not None and ``valid_from <= s``, ``valid_until`` is None or ``s <=
    valid_until``, and ``revoked_at`` is None or ``s < revoked_at`` (``assay.audit.keyreplay.valid_at``);
    ``valid_from`` None means it may sign nothing. ``identity`` is who holds the key (the key id
    itself when no record or trust entry names one); a rotated-in key keeps its predecessor's
    identity and roles. ``roles`` is a subset of signer / approver / admin. Approvals are counted
    by distinct ``identity`` among keys with the approver or admin role that were valid at the
    approval's position (``assay.audit.keyreplay.approving_identities``): one person holding two
    keys counts once. Only meaningful when ``ok``; it reflects the key records replayed so far.
    """

    ok: bool
    size: int = 0
    checked: int = 0
    root: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "full"
    checkpoint_size: int | None = None
    trust: str = ""
    origin: str | None = None
    elapsed_s: float = 0.0
    key_events_line: str | None = None
    checkpoints: list[str] = field(default_factory=list)  # the checkpoint files the ledger was proven to extend
    checkpoint_sizes: list[int] = field(default_factory=list)
    trusted: str | None = None  # what was taken on a checkpoint's word instead of re-checked (None: nothing)
    signers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: attestation keys (ecdsa-p256) introduced by admins, in the shape of ``KeyState.attestors``
    attestors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        if self.ok:
            sizes = sorted(set(self.checkpoint_sizes))
            extra = ""
            if sizes:
                extra = f", consistent with checkpoint{'s' if len(sizes) > 1 else ''} at size {', '.join(map(str, sizes))}"
            return f"ledger intact: {self.checked} record(s) verified of {self.size}{extra}"
        where = f"record {self.first_bad_seq}" if self.first_bad_seq is not None else "ledger"
        return f"tampering found at {where}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "checked": self.checked,
            "root": self.root,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "errors": self.errors,
            "mode": self.mode,
            "checkpoint_size": self.checkpoint_size,
            "trust": self.trust,
            "origin": self.origin,
            "elapsed_s": round(self.elapsed_s, 4),
            "checkpoints": list(self.checkpoints),
            "trusted": self.trusted,
            "signers": self.signers,
            "attestors": self.attestors,
        }


class _Collector:
    def __init__(self, keys: KeyState | None = None) -> None:
        self.errors: list[tuple[int | None, str]] = []
        self.keys = keys  # its replayed signers go into every report

    def add(self, seq: int | None, reason: str) -> None:
        self.errors.append((seq, reason))

    def report(self, **kw: Any) -> VerifyReport:
        errs = sorted(self.errors, key=lambda e: (e[0] is None, e[0] or 0))
        first = errs[0] if errs else None
        return VerifyReport(
            ok=not errs,
            first_bad_seq=first[0] if first else None,
            reason=first[1] if first else None,
            errors=[{"seq": s, "reason": r} for s, r in errs[:MAX_ERRORS]],
            signers=self.keys.signers() if self.keys is not None else {},
            attestors=self.keys.attestors() if self.keys is not None else {},
            **kw,
        )


def _workers(requested: int | None) -> int:
    if requested:
        return max(1, requested)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _signing_keys(src: Source, keys: KeyState, n: int) -> dict[str, bytes]:
    """Every public key the ledger or the trust file names, by key id, for the signature checks.

    A key id is the hash of its public key, so a signature that verifies under ``pubkeys[kid]``
    was made by that key; whether the key was allowed to sign at that position is decided
    separately, by replaying the key records in order (``KeyState``).
    """
    pubkeys = dict(keys.pub)
    for row in src.key_rows(n):
        try:
            payload = json.loads(row[7]).get("payload")
        except (ValueError, AttributeError):
            continue
        kid = payload.get("key_id") if isinstance(payload, dict) else None
        pub = named_key(payload, kid)
        if pub is not None and isinstance(kid, str):
            pubkeys.setdefault(kid, pub)
    return pubkeys


def _replay_keys(chunk: _Chunk, keys: KeyState, col: _Collector) -> None:
    """Key validity for every record of ``chunk``, in ledger order."""
    for first, last, kid, kind, body, h in chunk.segments:
        if kind is not None:  # a key record: it may change which keys are valid after it
            reason = keys.check(first, kid, kind, body or b"")
            if reason:
                col.add(first, reason)
            keys.events.append((first, h or b""))
        elif keys.check(first, kid, None, b"") or (last != first and keys.check(last, kid, None, b"")):
            # Validity windows are intervals, so the ends decide; on failure name every bad record.
            for seq in range(first, last + 1):
                reason = keys.check(seq, kid, None, b"")
                if reason:
                    col.add(seq, reason)


def _scan(
    src: Source,
    start_seq: int,
    start_prev: bytes,
    keys: KeyState,
    col: _Collector,
    frontier: Frontier,
    leaves_out: list[bytes] | None,
    capture_at: Sequence[int],
    workers: int,
    sig_after: int = 0,
) -> tuple[int, dict[int, bytes]]:
    """Check every record from ``start_seq`` on; returns (records checked, {size: root} at capture_at).

    The records are checked in ranges of CHUNK sequence numbers aligned to the Merkle tree; with
    several workers each process reads and checks its own ranges, and this one only replays key
    validity and folds the ranges' leaves or subtree roots into the frontier, in order. Signatures
    of records up to ``sig_after`` are not checked (everything else is).
    """
    n = src.max_seq()
    pubkeys = _signing_keys(src, keys, n)
    wanted = set(capture_at)
    captured: dict[int, bytes] = {}
    count = 0

    def ranges() -> Iterator[tuple[int, int, int, bytes, dict[str, bytes], int]]:
        first = start_seq
        while first <= n:
            last = min(n, ((first - 1) // CHUNK + 1) * CHUNK)
            yield first, last, start_seq, start_prev, pubkeys, sig_after
            first = last + 1

    def handle(chunk: _Chunk) -> None:
        nonlocal count
        _replay_keys(chunk, keys, col)
        for seq, reason in chunk.errors:
            col.add(seq, reason)
        size = len(chunk.leaves) // 32
        count += size
        crosses = any(frontier.size < c < frontier.size + size for c in wanted)
        if chunk.root is not None and frontier.size % CHUNK == 0 and leaves_out is None and not crosses:
            frontier.append_subtree(CHUNK.bit_length() - 1, chunk.root)
            if frontier.size in wanted:
                captured[frontier.size] = frontier.root()
            return
        for i in range(0, len(chunk.leaves), 32):
            leaf = chunk.leaves[i : i + 32]
            frontier.append(leaf)
            if leaves_out is not None:
                leaves_out.append(leaf)
            if frontier.size in wanted:
                captured[frontier.size] = frontier.root()

    if workers > 1 and n - start_seq + 1 >= PARALLEL_MIN:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(src.url,)) as pool:
            for chunk in pool.imap(_worker_range, ranges()):
                handle(chunk)
    else:
        for task in ranges():
            handle(_check_range(src, *task))
    return count, captured


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _load_trust_arg(trust: Path | str | list[TrustedKey] | None) -> tuple[list[TrustedKey] | None, str | None]:
    if trust is None:
        return None, None
    if isinstance(trust, list):
        return trust, None
    try:
        return load_trust(Path(trust)), str(trust)
    except TrustError as exc:
        raise BadInput(str(exc)) from None


@dataclass
class _Given:
    """A checkpoint the ledger must extend: where it came from, its note text and its parsed body."""

    label: str
    text: str
    cp: Checkpoint


def _load_checkpoint(
    path: Path | str | None, text: str | None = None, fix: str = "pass a file written by `assay audit checkpoint`"
) -> _Given | None:
    if text is None:
        if path is None:
            return None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInput(f"checkpoint file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read checkpoint file {path}: {exc}") from None
    label = str(path) if path is not None else "(given checkpoint text)"
    try:
        body, _sigs = parse_note(text)
        cp = parse_checkpoint(body)
    except NoteError as exc:
        raise BadInput(f"checkpoint {label} is not a valid signed checkpoint note: {exc} ({fix})") from None
    return _Given(label, text, cp)


def newest_home_checkpoint(home: Path, ledger_id: str) -> Path | None:
    """The checkpoint of ledger ``ledger_id`` with the largest tree size that ``home`` holds, or None.

    Looks at ``{home}/checkpoints/{ledger_id}.note`` (the one assay keeps current) and
    ``{ledger_id}.*.note`` (copies kept beside it). One that cannot be read or parsed is returned
    at once, so that verifying reports it rather than quietly falling back to an older one.
    """
    folder = Path(home) / "checkpoints"
    if not ledger_id or not folder.is_dir():
        return None
    best: Path | None = None
    best_size = -1
    for path in [folder / f"{ledger_id}.note", *sorted(folder.glob(f"{ledger_id}.*.note"))]:
        if not path.is_file():
            continue
        try:
            size = parse_checkpoint(parse_note(path.read_text(encoding="utf-8"))[0]).size
        except (OSError, UnicodeDecodeError, NoteError):
            return path
        if size > best_size:
            best, best_size = path, size
    return best


_HOME_FIX = "it is this home's record of the ledger's size; restore it from a copy, or remove it if you know why it is damaged"


def _same_file(a: Path, b: Path | str | None) -> bool:
    try:
        return b is not None and a.resolve() == Path(b).resolve()
    except OSError:
        return False


def verify_ledger(
    url: str,
    checkpoint: Path | str | None = None,
    trust: Path | str | list[TrustedKey] | None = None,
    full: bool = True,
    workers: int | None = None,
    checkpoint_text: str | None = None,
    *,
    since_checkpoint: Path | str | None = None,
    home: Path | str | None = None,
) -> VerifyReport:
    """Verify every record of the ledger at ``url`` (see the module docstring); BadInput for unusable input.

    :param checkpoint: a checkpoint file (or its ``checkpoint_text``) the ledger must extend.
    :param since_checkpoint: a checkpoint whose signatures of records 1..m are taken on its word.
    :param home: an assay home: its newest checkpoint of this ledger is checked too.
    :param full: accepted for older callers; verification is always full.
    """
    del full
    t0 = time.perf_counter()
    trusted, trust_src = _load_trust_arg(trust)
    given = [g for g in (_load_checkpoint(checkpoint, checkpoint_text),) if g is not None]
    since = _load_checkpoint(since_checkpoint)
    src = Source(url)
    try:
        if home is not None:
            found = newest_home_checkpoint(Path(home), src.meta("ledger_id") or "")
            if found is not None and not _same_file(found, checkpoint) and not _same_file(found, since_checkpoint):
                loaded = _load_checkpoint(found, fix=_HOME_FIX)
                assert loaded is not None
                given.append(loaded)
        report = _verify(src, trusted, trust_src, given, since, _workers(workers))
    finally:
        src.close()
    report.elapsed_s = time.perf_counter() - t0
    return report


def verify_extension(
    url: str,
    checkpoint: Path | str | None,
    trust: Path | str | list[TrustedKey] | None = None,
    workers: int | None = None,
    checkpoint_text: str | None = None,
) -> VerifyReport:
    """Prove the ledger at ``url`` extends ``checkpoint``, re-checking only the records after it.

    The records after the checkpoint's size m are checked in full (bodies, chain, signatures, key
    windows). The first m are covered by the stored Merkle tree, proven equal to the checkpoint's
    root, and by inclusion proofs of their key records and of record m, which anchors the chain.
    This is what assay runs before signing its own next checkpoint, cheap after a few appends: the
    new checkpoint then commits to the same first m record hashes as the old one. It is never what
    ``verify`` runs for a user: an edited body before m is for the full verification to find.
    """
    t0 = time.perf_counter()
    trusted, trust_src = _load_trust_arg(trust)
    given = _load_checkpoint(checkpoint, checkpoint_text)
    if given is None:
        raise BadInput("verify_extension needs a checkpoint")
    src = Source(url)
    try:
        report = _extend(src, trusted, trust_src, given, _workers(workers))
    finally:
        src.close()
    report.elapsed_s = time.perf_counter() - t0
    return report


def _verify(
    src: Source,
    trusted: list[TrustedKey] | None,
    trust_src: str | None,
    given: list[_Given],
    since: _Given | None,
    workers: int,
) -> VerifyReport:
    keys = KeyState(trusted)
    col = _Collector(keys)
    ledger_id = src.meta("ledger_id")
    origin = origin_of(ledger_id) if ledger_id else None
    n = src.max_seq()
    cps = ([since] if since is not None else []) + given
    base: dict[str, Any] = {
        "trust": keys.describe(trust_src),
        "origin": origin,
        "mode": "since-checkpoint" if since is not None else "full+checkpoint" if cps else "full",
        "checkpoints": [g.label for g in cps],
        "checkpoint_sizes": [g.cp.size for g in cps],
    }
    if cps:
        base["checkpoint_size"] = max(g.cp.size for g in cps)
    foreign = [g for g in cps if g.cp.origin != origin]
    for g in foreign:
        col.add(None, f"checkpoint is for {g.cp.origin}, but this database is {origin} ({g.label}): "
                      "wrong checkpoint or replaced database")
    if foreign:
        return col.report(size=n, **base)
    for g in cps:
        if n < g.cp.size:
            # Truncated or rolled back: records the checkpoint commits to are gone.
            col.add(n + 1, f"ledger has {n} record(s) but the checkpoint commits to {g.cp.size} ({g.label}): "
                           "tail deleted or older copy restored")

    sig_after = since.cp.size if since is not None else 0
    frontier = Frontier()
    checked, roots = _scan(src, 1, GENESIS_PREV, keys, col, frontier, None, [g.cp.size for g in cps], workers, sig_after)
    signed_by: dict[int, list[str]] = {}
    for i, g in enumerate(cps):
        signed_by[i] = _check_note(g.text, g.cp, keys, col, g.label)
        m = g.cp.size
        if n >= m:
            at = EMPTY_ROOT if m == 0 else roots.get(m)
            if at is None:
                col.add(None, f"the first {m} records cannot be hashed into the checkpoint's tree ({g.label}): records missing")
            elif at != g.cp.root:
                col.add(None, f"ledger does not extend the checkpoint ({g.label}): its first {m} records hash to a "
                              "different root (history rewritten or forked)")
        _check_key_events(g.cp, keys.events, col, g.label)
    trusted_what = None
    if since is not None:
        if since.cp.size == 0:
            trusted_what = "nothing (the checkpoint is empty)"
        else:
            who = ", ".join(signed_by[0]) or "no trusted key"
            trusted_what = f"signatures of records 1..{since.cp.size} (checkpoint {since.label} signed by {who})"
    report = col.report(size=frontier.size, checked=checked, root=frontier.root().hex(), trusted=trusted_what, **base)
    report.key_events_line = key_events_line(keys.events)
    return report


def _extend(src: Source, trusted: list[TrustedKey] | None, trust_src: str | None, g: _Given, workers: int) -> VerifyReport:
    cp = g.cp
    if cp.size == 0:
        return _verify(src, trusted, trust_src, [g], None, workers)
    keys = KeyState(trusted)
    col = _Collector(keys)
    ledger_id = src.meta("ledger_id")
    origin = origin_of(ledger_id) if ledger_id else None
    n = src.max_seq()
    m = cp.size
    base: dict[str, Any] = {
        "trust": keys.describe(trust_src),
        "origin": origin,
        "mode": "extend",
        "checkpoints": [g.label],
        "checkpoint_sizes": [m],
        "checkpoint_size": m,
        "trusted": f"records 1..{m} through the stored Merkle tree, proven equal to the root of {g.label}",
    }
    if cp.origin != origin:
        col.add(None, f"checkpoint is for {cp.origin}, but this database is {origin} ({g.label}): "
                      "wrong checkpoint or replaced database")
        return col.report(size=n, **base)
    if n < m:
        col.add(n + 1, f"ledger has {n} record(s) but the checkpoint commits to {m} ({g.label}): "
                       "tail deleted or older copy restored")
        return col.report(size=n, **base)
    # 1. The stored tree of the first m records must be the checkpoint's tree.
    try:
        if subtree_hash(0, m, src.stored_node) != cp.root:
            raise ProofError("the first records hash to a different root")
    except ProofError as exc:
        col.add(None, f"ledger is not a consistent extension of the checkpoint ({exc}): history rewritten or forked")
        return col.report(size=n, **base)
    # 2. Key records up to m, each proven included in the checkpoint's tree.
    for row in src.key_rows(m):
        seq = row[0]
        reason = None
        try:
            verify_inclusion(seq - 1, m, leaf_hash(row[5]), inclusion_proof(seq - 1, m, src.stored_node), cp.root)
        except ProofError as exc:
            reason = f"key record is not in the checkpointed tree ({exc})"
        if reason is None:
            reason = check_row(row, row[4], {})
        if reason is None:
            reason = keys.check(seq, row[3].hex(), row[2], row[7])
        if reason is None:
            pub = keys.pub.get(row[3].hex())
            try:
                if pub is None:
                    raise InvalidSignature()
                _public(pub).verify(row[6], row[5])
            except InvalidSignature:
                reason = "bad signature on key record"
        if reason:
            col.add(seq, reason)
        keys.events.append((seq, row[5]))
    _check_key_events(cp, keys.events, col, g.label)
    _check_note(g.text, cp, keys, col, g.label)
    # 3. The last checkpointed record anchors the chain of the new ones.
    last = src.row(m)
    if last is None:
        col.add(m, f"record {m} (the checkpoint's last) is missing")
        return col.report(size=n, **base)
    try:
        verify_inclusion(m - 1, m, leaf_hash(last[5]), inclusion_proof(m - 1, m, src.stored_node), cp.root)
    except ProofError as exc:
        col.add(m, f"record {m} is not the checkpoint's last record ({exc})")
        return col.report(size=n, **base)
    # 4. Everything new, fully.
    new_leaves: list[bytes] = []
    checked, _ = _scan(src, m + 1, last[5], keys, col, _Sink(m), new_leaves, (), workers)
    size = m + len(new_leaves)
    # 5. Consistency proof from the checkpoint to the current tree.
    node = _hybrid(src, m, new_leaves)
    try:
        new_root = subtree_hash(0, size, node)
        if size == m:
            if new_root != cp.root:
                raise ProofError("stored tree does not match the checkpoint root")
        else:
            verify_consistency(m, size, consistency_proof(m, size, node), cp.root, new_root)
    except ProofError as exc:
        col.add(None, f"ledger is not a consistent extension of the checkpoint ({exc}): history rewritten or forked")
        return col.report(size=size, checked=checked, **base)
    report = col.report(size=size, checked=checked, root=new_root.hex(), **base)
    report.key_events_line = key_events_line(keys.events)
    return report


class _Sink(Frontier):
    """A frontier that only counts (incremental mode keeps the new leaves itself)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.nodes: list[bytes] = []

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        self.size += 1
        return []


def _hybrid(src: Source, m: int, new_leaves: list[bytes]) -> Any:
    """Perfect-subtree hashes: stored ones for leaves < m, computed from verified leaves beyond."""
    cache: dict[tuple[int, int], bytes] = {}

    def node(level: int, idx: int) -> bytes:
        key = (level, idx)
        if key in cache:
            return cache[key]
        start, end = idx << level, (idx + 1) << level
        if end <= m:
            h = src.stored_node(level, idx)
        elif start >= m:
            if end - m > len(new_leaves):
                raise ProofError("subtree beyond the ledger's end")
            h = root_from_leaves(new_leaves[start - m : end - m])
        else:
            h = node_hash(node(level - 1, 2 * idx), node(level - 1, 2 * idx + 1))
        cache[key] = h
        return h

    return node


def _check_note(note_text: str, cp: Any, keys: KeyState, col: _Collector, label: str = "") -> list[str]:
    """Check a checkpoint note's signature; returns the key ids that signed it."""
    pubs = keys.note_keys(cp.size)
    try:
        _body, verified = verify_note(note_text, [(cp.origin, p) for p in pubs])
    except NoteError as exc:
        col.add(None, f"checkpoint signature ({label}): {exc}" if label else f"checkpoint signature: {exc}")
        return []
    return [key_id_of(pub) for _name, pub in verified]


def _check_key_events(cp: Any, events: list[tuple[int, bytes]], col: _Collector, label: str = "") -> None:
    line = next((e for e in cp.extensions if e.startswith(KEY_EVENTS_EXT + " ")), None)
    if line is None:
        return
    upto = [(s, h) for s, h in events if s <= cp.size]
    if key_events_line(upto) != line:
        where = f" ({label})" if label else ""
        col.add(None, f"the key records up to the checkpoint differ from those it commits to{where} "
                      "(a key record was hidden or altered)")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m assay.audit.verify",
        description="Verify an assay audit ledger offline: every record, always. "
        "Exit 0 intact, 1 tampering found, 2 bad input.",
    )
    parser.add_argument("db_url", nargs="?", help="sqlite:///PATH, a SQLite file path, or postgresql+psycopg://…")
    parser.add_argument("--bundle", metavar="DIR",
                        help="verify an audit bundle (`assay audit export RUN_ID --bundle DIR`) instead of a database")
    parser.add_argument("--witness-key", action="append", default=[], metavar="VKEY|FILE",
                        help="--bundle: a witness whose cosignature the checkpoint must carry (repeatable)")
    parser.add_argument("--quorum", type=int, help="--bundle: witnesses that must have cosigned (default: all)")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--checkpoint", type=Path, help="a signed checkpoint note the ledger must extend")
    given.add_argument(
        "--since-checkpoint", type=Path,
        help="like --checkpoint, but take the signatures of the records it covers on its word "
        "(their bodies, chain and tree are still recomputed)",
    )
    parser.add_argument("--home", type=Path, help="an assay home: also check the newest checkpoint it holds")
    parser.add_argument("--trust", type=Path, help="trust file of public keys (default: trust the genesis key)")
    parser.add_argument("--full", action="store_true", help="accepted for older scripts; verification is always full")
    parser.add_argument("--workers", type=int, default=None, help="processes for signature checks (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.bundle is not None or args.db_url is None:
        if args.bundle is None or args.db_url is not None or args.checkpoint or args.since_checkpoint or args.home:
            parser.error("give a database URL, or --bundle DIR (with only --trust, --witness-key, --quorum, --json)")
        from assay.audit.bundle import run_verify

        return run_verify(args.bundle, str(args.trust) if args.trust else None, args.witness_key, args.quorum, args.json)
    try:
        report = verify_ledger(
            args.db_url, checkpoint=args.checkpoint, trust=args.trust, workers=args.workers,
            since_checkpoint=args.since_checkpoint, home=args.home,
        )
    except BadInput as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": exc.message}))
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.summary())
        if report.ok and report.root:
            print(f"size {report.size}, root {report.root}, trust: {report.trust}")
        for path in report.checkpoints:
            print(f"checkpoint: {path}")
        if report.trusted:
            print(f"trusted without re-checking: {report.trusted}")
        for e in report.errors[1:10]:
            print(f"  also: record {e['seq']}: {e['reason']}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
