"""An independent witness for assay ledgers: C2SP tlog-witness, tlog-cosignature and verifier keys.

A key holder can sign two different histories under the same ledger id; a checkpoint alone cannot
tell which one an auditor was shown. A witness is a separate party that remembers, per log origin,
the latest checkpoint it cosigned and cosigns a new one only when given an RFC 9162 consistency
proof from that one. Checkpoints carrying a quorum of cosignatures from independent witnesses
therefore all lie on one append-only history.

This module (standard library and ``cryptography`` only) holds every piece except the HTTP server
(``assay.audit.witness_server``) and the command line (``assay.commands.witness``):

* verifier keys (c2sp.org/signed-note): ``<name>+<hex key id>+<base64(alg ‖ public key)>`` with
  key id ``SHA-256(name ‖ "\\n" ‖ alg ‖ public key)[:4]``; alg 0x01 verifies notes (a ledger's
  checkpoints), 0x04 verifies Ed25519 cosignatures (a witness).
* cosignature/v1 (c2sp.org/tlog-cosignature): a note signature line whose blob is
  ``key id (4) ‖ timestamp (8, big-endian) ‖ Ed25519 signature (64)`` over
  ``"cosignature/v1\\ntime <timestamp>\\n" ‖ checkpoint body``.
* the witness state: a SQLite database in the witness home, one row per log origin with its
  latest cosigned (size, root), updated by compare-and-swap inside one ``BEGIN IMMEDIATE``
  transaction, so two requests racing from the same old size never both succeed.
* ``handle_add_checkpoint``: the add-checkpoint checks and status codes of c2sp.org/tlog-witness
  as a function of (state, request body) → ``Reply(status, body, content type)``.
* the client side: ``add_checkpoint`` (one request), ``cosign_with_witness`` (builds the proof
  from a ledger and retries once on 409), ``witness_ledger_checkpoint`` (what ``assay audit
  checkpoint --witness`` runs) and the verifier ``witness_problems``.

Same-size checkpoints with a different root get 422, as tlog-witness specifies since C2SP commit
95978ca (earlier drafts said 409): every 409 then means only "retry from this size".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import os
import re
import sqlite3
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from assay.audit.checkpoints import read_checkpoint_file
from assay.audit.errors import BadInput, Finding
from assay.audit.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, consistency_proof, verify_consistency
from assay.audit.note import (
    EM_DASH,
    Checkpoint,
    NoteError,
    NoteSignature,
    parse_checkpoint,
    parse_note,
    verify_note,
)

NOTE_ALG = 0x01
COSIGNATURE_ALG = 0x04
COSIGNATURE_HEADER = "cosignature/v1"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 128 * 1024
MAX_EVIDENCE_PER_LOG = 1000
_MAX_TIMESTAMP = 2**63 - 1

STATE_FILE = "witness.db"
KEY_FILE = "witness.key"

_ALG_NAMES = {NOTE_ALG: "Ed25519 note key", COSIGNATURE_ALG: "Ed25519 cosignature key"}
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,18})")


class VkeyError(ValueError):
    """A verifier key string that is malformed or names a key it does not hold."""


class RequestError(ValueError):
    """An add-checkpoint request body that does not follow c2sp.org/tlog-witness."""


# ---------------------------------------------------------------------------------------------
# Verifier keys
# ---------------------------------------------------------------------------------------------


def _name_problem(name: str) -> str | None:
    if not name:
        return "the key name is empty"
    if "+" in name:
        return "the key name contains '+'"
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") for c in name):
        return "the key name contains a space or a control character"
    return None


def key_id(name: str, alg: int, public_raw: bytes) -> bytes:
    """The 4-byte key id that names a key inside signature lines and vkeys."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_raw).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """One parsed verifier key: name, signature type and raw Ed25519 public key."""

    name: str
    alg: int
    public_raw: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public_raw)

    def __str__(self) -> str:
        return format_vkey(self.name, self.alg, self.public_raw)

    def matches(self, sig: NoteSignature) -> bool:
        return sig.name == self.name and sig.key_hash == self.key_id


def format_vkey(name: str, alg: int, public_raw: bytes) -> str:
    """``<name>+<hex key id>+<base64(alg ‖ public key)>`` for an Ed25519 key of type ``alg``."""
    problem = _name_problem(name)
    if problem:
        raise VkeyError(f"cannot make a verifier key for {name!r}: {problem}")
    if alg not in _ALG_NAMES:
        raise VkeyError(f"unsupported signature type 0x{alg:02x} (supported: 0x01 notes, 0x04 cosignatures)")
    if len(public_raw) != 32:
        raise VkeyError(f"an Ed25519 public key is 32 bytes, not {len(public_raw)}")
    blob = base64.b64encode(bytes([alg]) + public_raw).decode()
    return f"{name}+{key_id(name, alg, public_raw).hex()}+{blob}"


def parse_vkey(text: str, alg: int | None = None) -> VerifierKey:
    """Parse a verifier key; with ``alg``, require that signature type. Raises VkeyError."""
    text = text.strip()
    parts = text.split("+")
    if len(parts) < 3:
        raise VkeyError(f"{_short(text)!r} is not a verifier key: expected <name>+<key id>+<key> (two '+')")
    # The base64 key may itself contain '+'; the name may not, so the first two '+' delimit.
    name, hash_hex, key_b64 = parts[0], parts[1], "+".join(parts[2:])
    problem = _name_problem(name)
    if problem:
        raise VkeyError(f"verifier key {_short(text)!r}: {problem}")
    if len(hash_hex) != 8 or not all(c in "0123456789abcdefABCDEF" for c in hash_hex):
        raise VkeyError(f"verifier key {_short(text)!r}: the key id must be 8 hex digits, not {hash_hex!r}")
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise VkeyError(f"verifier key {_short(text)!r}: the key part is not base64") from None
    if base64.b64encode(raw).decode() != key_b64:
        raise VkeyError(f"verifier key {_short(text)!r}: the key part is not canonical base64")
    if len(raw) < 1:
        raise VkeyError(f"verifier key {_short(text)!r}: the key part is empty")
    key_alg, public_raw = raw[0], raw[1:]
    if key_alg not in _ALG_NAMES:
        raise VkeyError(
            f"verifier key {_short(text)!r}: unsupported signature type 0x{key_alg:02x} "
            "(supported: 0x01 Ed25519 notes, 0x04 Ed25519 cosignatures)"
        )
    if len(public_raw) != 32:
        raise VkeyError(f"verifier key {_short(text)!r}: an Ed25519 key is 32 bytes, this one is {len(public_raw)}")
    if key_id(name, key_alg, public_raw) != bytes.fromhex(hash_hex):
        raise VkeyError(f"verifier key {_short(text)!r}: the key id does not match the name and key (altered?)")
    if alg is not None and key_alg != alg:
        want, got = _ALG_NAMES[alg], _ALG_NAMES[key_alg]
        hint = {
            COSIGNATURE_ALG: " (a witness's key is printed by `assay --home WDIR witness vkey`)",
            NOTE_ALG: " (a ledger's key is printed by `assay keys vkey`)",
        }[alg]
        raise VkeyError(f"verifier key {_short(text)!r} is an {got}, not an {want}{hint}")
    return VerifierKey(name, key_alg, public_raw)


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def load_witness_keys(values: Iterable[str]) -> list[str]:
    """Witness cosignature keys from ``--witness-key`` values: each a vkey, or a file of one per line.

    Blank lines and lines starting with ``#`` in a file are skipped. Raises BadInput naming the
    value (and line) that is neither.
    """
    out: list[str] = []
    for value in values:
        path = Path(value).expanduser()
        if "+" not in value or path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                raise BadInput(
                    f"--witness-key {value!r} is neither a verifier key (<name>+<key id>+<key>) nor an existing file"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInput(f"cannot read witness key file {value}: {exc}") from None
            found = 0
            for n, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    out.append(str(parse_vkey(line, COSIGNATURE_ALG)))
                except VkeyError as exc:
                    raise BadInput(f"witness key file {value}, line {n}: {exc}") from None
                found += 1
            if not found:
                raise BadInput(f"witness key file {value} holds no verifier keys (one <name>+<id>+<key> per line)")
            continue
        try:
            out.append(str(parse_vkey(value, COSIGNATURE_ALG)))
        except VkeyError as exc:
            raise BadInput(f"--witness-key: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# cosignature/v1
# ---------------------------------------------------------------------------------------------


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature signs: header, time line, then the checkpoint body."""
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n".encode() + body.encode()


def cosign(body: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """One cosignature line (with its newline) over checkpoint ``body`` at POSIX ``timestamp``."""
    if not 0 < timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is out of range (1 .. 2^63-1)")
    problem = _name_problem(name)
    if problem:
        raise ValueError(f"invalid witness name {name!r}: {problem}")
    pub = private_key.public_key().public_bytes_raw()
    sig = private_key.sign(cosignature_message(body, timestamp))
    blob = key_id(name, COSIGNATURE_ALG, pub) + timestamp.to_bytes(8, "big") + sig
    return f"{EM_DASH} {name} {base64.b64encode(blob).decode()}\n"


def verify_cosignature(body: str, sig: NoteSignature, key: VerifierKey) -> int:
    """The timestamp of cosignature ``sig`` by ``key`` over ``body``; raises NoteError if it fails."""
    if key.alg != COSIGNATURE_ALG or not key.matches(sig):
        raise NoteError(f"signature line is not by cosigner {key.name}")
    if len(sig.signature) != 8 + 64:
        raise NoteError(f"cosignature by {key.name} is {len(sig.signature) + 4} bytes, not 76")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise NoteError(f"cosignature by {key.name} has a timestamp beyond 2^63-1")
    try:
        Ed25519PublicKey.from_public_bytes(key.public_raw).verify(
            sig.signature[8:], cosignature_message(body, timestamp)
        )
    except (InvalidSignature, ValueError):
        raise NoteError(f"cosignature by {key.name} does not verify") from None
    return timestamp


@dataclass
class WitnessCheck:
    """What the cosignatures on one checkpoint show against a set of trusted witnesses."""

    problems: list[str]
    quorum: int
    witnesses: int
    cosigned_by: dict[str, int] = field(default_factory=dict)  # witness vkey -> cosignature time
    origin: str | None = None
    size: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "quorum": self.quorum,
            "witnesses": self.witnesses,
            "cosigned_by": [{"vkey": k, "time": t} for k, t in sorted(self.cosigned_by.items())],
            "origin": self.origin,
            "checkpoint_size": self.size,
        }


def check_witnesses(note_text: str, witness_keys: Sequence[str], quorum: int, covers_seq: int | None) -> WitnessCheck:
    """``witness_problems`` with the details (who cosigned, when); BadInput for unusable keys or quorum."""
    keys: list[VerifierKey] = []
    for value in witness_keys:
        try:
            parsed = parse_vkey(value, COSIGNATURE_ALG)
        except VkeyError as exc:
            raise BadInput(f"witness key: {exc}") from None
        if parsed not in keys:
            keys.append(parsed)
    if not keys:
        raise BadInput("no witness keys given: pass --witness-key VKEY (or a file of them)")
    if not 1 <= quorum <= len(keys):
        raise BadInput(f"--quorum {quorum} must be between 1 and the number of distinct witness keys ({len(keys)})")
    check = WitnessCheck([], quorum, len(keys))
    try:
        body, sigs = parse_note(note_text)
        cp = parse_checkpoint(body)
    except NoteError as exc:
        check.problems.append(f"the checkpoint is not a valid signed note: {exc}")
        return check
    check.origin, check.size = cp.origin, cp.size
    for s in sigs:
        for k in keys:
            if not k.matches(s):
                continue
            try:
                ts = verify_cosignature(body, s, k)
            except NoteError as exc:
                check.problems.append(f"{exc} (a forged or altered cosignature line)")
            else:
                check.cosigned_by.setdefault(str(k), ts)
    if len(check.cosigned_by) < quorum:
        names = ", ".join(sorted(k.name for k in keys if str(k) not in check.cosigned_by))
        check.problems.append(
            f"checkpoint of size {cp.size} is cosigned by {len(check.cosigned_by)} of the {len(keys)} trusted "
            f"witness(es), {quorum} required; missing: {names}"
        )
    if covers_seq is not None and cp.size < covers_seq:
        check.problems.append(
            f"the witnessed checkpoint covers records 1..{cp.size}, not record {covers_seq}: "
            "checkpoint again with `assay audit checkpoint --witness URL`"
        )
    return check


def witness_problems(note_text: str, witness_keys: list[str], quorum: int, covers_seq: int | None) -> list[str]:
    """Why ``note_text`` is not witnessed well enough; empty when it is.

    Empty when at least ``quorum`` distinct witnesses among ``witness_keys`` (cosignature vkeys,
    alg 0x04, as ``load_witness_keys`` returns) have valid cosignatures on this checkpoint and, if
    ``covers_seq`` is given, the checkpoint's size is at least ``covers_seq`` (the record lies in
    the witnessed tree). The log's own signature is not checked here: the caller verifies the
    ledger against the checkpoint. Raises BadInput for a malformed key or a quorum outside
    1..len(distinct keys).
    """
    return check_witnesses(note_text, witness_keys, quorum, covers_seq).problems


# ---------------------------------------------------------------------------------------------
# The add-checkpoint request body
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpointRequest:
    old_size: int
    proof: tuple[bytes, ...]
    note: str
    body: str
    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]


def format_add_checkpoint(note_text: str, old_size: int, proof: Sequence[bytes]) -> bytes:
    """The request body: ``old N``, one base64 proof hash per line, a blank line, the checkpoint."""
    lines = [f"old {old_size}", *(base64.b64encode(p).decode() for p in proof)]
    return ("".join(line + "\n" for line in lines) + "\n" + note_text).encode()


def parse_add_checkpoint(data: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint body strictly; raises RequestError (the server answers 400)."""
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"request body is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("request body is not UTF-8") from None
    if any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F for c in text):
        raise RequestError("request body contains control characters other than newline")
    sep = text.find("\n\n")
    if sep < 0:
        raise RequestError("request body has no blank line between the old size and proof and the checkpoint")
    head, note_text = text[: sep + 1].split("\n")[:-1], text[sep + 2 :]
    m = re.fullmatch(r"old (.*)", head[0])
    if m is None or _DECIMAL.fullmatch(m.group(1)) is None:
        raise RequestError(f"first line must be 'old <size>' (decimal, no leading zeros), not {_short(head[0], 40)!r}")
    old_size = int(m.group(1))
    if len(head) - 1 > MAX_PROOF_LINES:
        raise RequestError(f"{len(head) - 1} consistency proof lines; at most {MAX_PROOF_LINES} are allowed")
    proof = []
    for i, line in enumerate(head[1:], 1):
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"proof line {i} is not base64") from None
        if len(h) != HASH_SIZE or base64.b64encode(h).decode() != line:
            raise RequestError(f"proof line {i} is not a base64 {HASH_SIZE}-byte hash")
        proof.append(h)
    try:
        body, sigs = parse_note(note_text)
        cp = parse_checkpoint(body)
    except NoteError as exc:
        raise RequestError(f"checkpoint: {exc}") from None
    if cp.body() != body:
        # Only the canonical spelling (ASCII size, canonical base64 root) has one meaning.
        raise RequestError("checkpoint: the size or root line is not in canonical form")
    if cp.size > _MAX_TIMESTAMP:
        raise RequestError(f"checkpoint size {cp.size} is beyond 2^63-1")
    return AddCheckpointRequest(old_size, tuple(proof), note_text, body, cp, tuple(sigs))


# ---------------------------------------------------------------------------------------------
# The witness's own state
# ---------------------------------------------------------------------------------------------

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS witness_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One row per log: the latest checkpoint this witness cosigned (size 0 / empty root before any).
    "CREATE TABLE IF NOT EXISTS witness_logs (origin TEXT PRIMARY KEY, origin_hash TEXT NOT NULL UNIQUE, "
    "size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT, updated INTEGER)",
    "CREATE TABLE IF NOT EXISTS witness_log_keys (origin TEXT NOT NULL REFERENCES witness_logs (origin), "
    "vkey TEXT NOT NULL, added INTEGER NOT NULL, PRIMARY KEY (origin, vkey))",
    # Validly signed checkpoints that were inconsistent with what was cosigned: proof of a fork.
    "CREATE TABLE IF NOT EXISTS witness_evidence (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, "
    "time INTEGER NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL, request BLOB NOT NULL)",
]


def holds_ledger(home: Path) -> bool:
    """Whether ``home`` looks like an assay ledger home (its database, keys or checkpoints)."""
    return (home / "assay.db").exists() or (home / "keys").is_dir() or (home / "checkpoints").is_dir()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class WitnessState:
    """A witness home: its Ed25519 key (``witness.key``, 0600) and its state (``witness.db``)."""

    def __init__(self, home: Path, name: str, private_key: Ed25519PrivateKey) -> None:
        self.home = home
        self.name = name
        self.private_key = private_key
        self.public_raw = private_key.public_key().public_bytes_raw()
        self.db_path = home / STATE_FILE
        self._local = threading.local()

    # -- creating and opening ----------------------------------------------------------------------
    @classmethod
    def init(cls, home: Path, name: str | None = None) -> tuple[WitnessState, bool]:
        """Create a witness in ``home`` (or open the one there); returns it and whether it is new."""
        home = Path(home)
        if (home / STATE_FILE).exists():
            state = cls.open(home)
            if name is not None and name != state.name:
                raise BadInput(f"{home} already holds the witness {state.name!r}; pick another --home for {name!r}")
            return state, False
        if holds_ledger(home):
            raise BadInput(
                f"{home} holds an assay ledger (assay.db, keys/ or checkpoints/); a witness must not share a home "
                "with a ledger it witnesses: pass another --home for the witness"
            )
        if name is None:
            name = f"assay.witness/{os.urandom(6).hex()}"
        problem = _name_problem(name)
        if problem:
            raise BadInput(f"--name {name!r}: {problem} (use a schema-less URL such as witness.example.com/w1)")
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = Ed25519PrivateKey.generate()
        passphrase = os.environ.get("ASSAY_KEY_PASSPHRASE")
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
        )
        key_path = home / KEY_FILE
        if key_path.exists():
            raise BadInput(f"{key_path} exists but {home / STATE_FILE} does not; move the key away or use another --home")
        _write_private(key_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
        state = cls(home, name, private)
        with state.transaction() as cur:
            for stmt in _SCHEMA:
                cur.execute(stmt)
            cur.execute("INSERT INTO witness_meta (name, value) VALUES ('name', ?)", (name,))
        return state, True

    @classmethod
    def open(cls, home: Path) -> WitnessState:
        """Open an existing witness home; BadInput naming the fix when it is not one."""
        home = Path(home)
        db, key_path = home / STATE_FILE, home / KEY_FILE
        if not db.is_file():
            raise BadInput(f"{home} is not a witness home (no {STATE_FILE}); create one with: assay --home {home} witness init")
        from assay.audit.keys import load_private_file

        key = load_private_file(key_path)
        try:
            conn = sqlite3.connect(f"file:{urllib.parse.quote(str(db))}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT value FROM witness_meta WHERE name = 'name'").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise BadInput(f"{db} is not a witness state database: {exc}") from None
        if row is None:
            raise BadInput(f"{db} has no witness name; it was not made by `assay witness init`")
        return cls(home, row[0], key.private)

    # -- database access ---------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            # A cosignature promises the state was persisted: a commit must survive power loss.
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before anything is read."""
        conn = self.connect()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    @property
    def vkey(self) -> str:
        """This witness's cosignature verifier key (alg 0x04)."""
        return format_vkey(self.name, COSIGNATURE_ALG, self.public_raw)

    def add_log(self, vkey: str, origin: str | None = None) -> tuple[str, bool]:
        """Witness the log whose checkpoints ``vkey`` (alg 0x01) signs; returns (origin, newly added key)."""
        try:
            key = parse_vkey(vkey, NOTE_ALG)
        except VkeyError as exc:
            raise BadInput(str(exc)) from None
        origin = origin or key.name
        if not origin or "\n" in origin:
            raise BadInput(f"--origin {origin!r} is not a checkpoint origin line")
        now = int(time.time())
        with self.transaction() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO witness_logs (origin, origin_hash, size, root) VALUES (?, ?, 0, ?)",
                (origin, hashlib.sha256(origin.encode()).hexdigest(), EMPTY_ROOT),
            )
            cur.execute(
                "INSERT OR IGNORE INTO witness_log_keys (origin, vkey, added) VALUES (?, ?, ?)", (origin, str(key), now)
            )
            added = cur.rowcount == 1
        return origin, added

    def log_keys(self, origin: str) -> list[VerifierKey] | None:
        """The note keys trusted for ``origin``, or None when the origin is not witnessed here."""
        conn = self.connect()
        rows = conn.execute("SELECT vkey FROM witness_log_keys WHERE origin = ?", (origin,)).fetchall()
        if not rows:
            return None
        return [parse_vkey(r[0], NOTE_ALG) for r in rows]

    def logs(self) -> list[dict[str, Any]]:
        conn = self.connect()
        out = []
        for origin, size, root, updated in conn.execute(
            "SELECT origin, size, root, updated FROM witness_logs ORDER BY origin"
        ).fetchall():
            keys = [r[0] for r in conn.execute("SELECT vkey FROM witness_log_keys WHERE origin = ? ORDER BY added", (origin,))]
            evidence = conn.execute("SELECT COUNT(*) FROM witness_evidence WHERE origin = ?", (origin,)).fetchone()[0]
            out.append(
                {
                    "origin": origin,
                    "size": int(size),
                    "root": base64.b64encode(bytes(root)).decode(),
                    "updated": updated,
                    "keys": keys,
                    "inconsistent_requests": int(evidence),
                }
            )
        return out

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        row = self.connect().execute("SELECT size, root FROM witness_logs WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def latest_note(self, origin_hash: str) -> str | None:
        """The latest cosigned checkpoint of the log whose origin hashes to ``origin_hash`` (monitoring)."""
        row = self.connect().execute(
            "SELECT note FROM witness_logs WHERE origin_hash = ?", (origin_hash.lower(),)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])


# ---------------------------------------------------------------------------------------------
# add-checkpoint, as a function of (state, request body)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = TEXT_CONTENT_TYPE


def _text(status: int, message: str) -> Reply:
    return Reply(status, (message + "\n").encode())


def handle_add_checkpoint(state: WitnessState, data: bytes, now: Callable[[], float] = time.time) -> Reply:
    """Check a checkpoint and its consistency proof; cosign and persist it (c2sp.org/tlog-witness).

    404 unknown origin; 403 no valid signature by a key trusted for it; 400 malformed body or old
    size beyond the checkpoint's; 409 (``text/x.tlog.size``, the stored size) when ``old`` is not
    the stored size; 422 a non-empty tree with the empty root, a proof where none belongs, equal
    sizes with another root, or a proof that does not verify; 200 with the cosignature line.
    """
    try:
        req = parse_add_checkpoint(data)
    except RequestError as exc:
        return _text(400, f"bad request: {exc}")
    cp = req.checkpoint
    keys = state.log_keys(cp.origin)
    if keys is None:
        return _text(404, f"unknown log origin {_short(cp.origin, 100)!r}: this witness does not witness it")
    try:
        verify_note(req.note, [(k.name, k.public_raw) for k in keys])
    except NoteError as exc:
        return _text(403, f"checkpoint signature: {exc}")
    if req.old_size > cp.size:
        return _text(400, f"old size {req.old_size} is larger than the checkpoint size {cp.size}")
    log_sigs = [s for s in req.signatures if any(k.matches(s) for k in keys)]
    with state.transaction() as cur:
        cur.execute("SELECT size, root FROM witness_logs WHERE origin = ?", (cp.origin,))
        row = cur.fetchone()
        if row is None:  # pragma: no cover - a log's row is never deleted
            return _text(404, f"unknown log origin {cp.origin!r}")
        size, root = int(row[0]), bytes(row[1])
        if req.old_size != size:
            return Reply(409, f"{size}\n".encode(), SIZE_CONTENT_TYPE)
        problem = _consistency_problem(req, size, root)
        if problem is not None:
            _record_evidence(cur, cp.origin, int(now()), 422, problem, data)
            return _text(422, problem)
        timestamp = max(1, int(now()))
        line = cosign(req.body, state.name, state.private_key, timestamp)
        stored = req.body + "\n" + "".join(_sig_line(s) for s in log_sigs) + line
        cur.execute(
            "UPDATE witness_logs SET size = ?, root = ?, note = ?, updated = ? WHERE origin = ? AND size = ?",
            (cp.size, cp.root, stored, timestamp, cp.origin, size),
        )
        if cur.rowcount != 1:  # pragma: no cover - the write lock is held since BEGIN IMMEDIATE
            raise RuntimeError("witness state changed inside its own transaction")
    return Reply(200, line.encode())


def _consistency_problem(req: AddCheckpointRequest, size: int, root: bytes) -> str | None:
    cp = req.checkpoint
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return "a checkpoint of size 0 must carry the empty tree's root (SHA-256 of nothing)"
    if req.old_size == 0:
        return "the proof must be empty when the old size is 0" if req.proof else None
    if req.old_size == cp.size:
        if req.proof:
            return "the proof must be empty when the old size equals the checkpoint size"
        if cp.root != root:
            return (
                f"checkpoint of size {cp.size} has a different root from the one this witness cosigned at that size: "
                "the log shows two histories"
            )
        return None
    try:
        verify_consistency(req.old_size, cp.size, list(req.proof), root, cp.root)
    except ProofError as exc:
        return (
            f"consistency proof from size {req.old_size} to {cp.size} does not verify ({exc}): "
            "this checkpoint does not extend the one this witness cosigned"
        )
    return None


def _record_evidence(cur: sqlite3.Cursor, origin: str, now: int, status: int, reason: str, data: bytes) -> None:
    cur.execute("SELECT COUNT(*) FROM witness_evidence WHERE origin = ?", (origin,))
    if cur.fetchone()[0] < MAX_EVIDENCE_PER_LOG:
        cur.execute(
            "INSERT INTO witness_evidence (origin, time, status, reason, request) VALUES (?, ?, ?, ?, ?)",
            (origin, now, status, reason, data),
        )


def _sig_line(s: NoteSignature) -> str:
    return f"{EM_DASH} {s.name} {base64.b64encode(s.key_hash + s.signature).decode()}\n"


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


class WitnessRefused(Exception):
    """A witness answered with something other than 200, or could not be reached (status 0)."""

    def __init__(self, url: str, status: int, reason: str, size: int | None = None) -> None:
        super().__init__(f"witness {url} refused the checkpoint ({status}): {reason}" if status else
                         f"witness {url} is unreachable: {reason}")
        self.url = url
        self.status = status
        self.reason = reason
        self.size = size


def _endpoint(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BadInput(f"witness URL {url!r} must be http:// or https:// with a host (its submission prefix)")
    return url if url.rstrip("/").endswith("/add-checkpoint") else url.rstrip("/") + "/add-checkpoint"


def add_checkpoint(url: str, note_text: str, old_size: int, proof: Sequence[bytes], timeout: float = 30) -> list[str]:
    """POST one add-checkpoint request; returns the witness's signature lines (each ending in newline).

    Raises WitnessRefused for any other answer (``size`` set on a 409) or when unreachable, and
    BadInput for a URL that is not http(s).
    """
    endpoint = _endpoint(url)
    request = urllib.request.Request(
        endpoint,
        data=format_add_checkpoint(note_text, old_size, proof),
        method="POST",
        headers={"Content-Type": TEXT_CONTENT_TYPE, "User-Agent": "assay-witness-client"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, text = resp.status, resp.read(MAX_REQUEST_BYTES).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        text = exc.read(4096).decode("utf-8", "replace")
        size = None
        if exc.code == 409:
            ctype = (exc.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == SIZE_CONTENT_TYPE and _DECIMAL.fullmatch(text.rstrip("\n")):
                size = int(text.rstrip("\n"))
            reason = f"the witness has cosigned size {size} of this log, not {old_size}" if size is not None else text
        else:
            reason = text.strip() or (exc.reason if isinstance(exc.reason, str) else "")
        raise WitnessRefused(url, exc.code, _short(reason, 400), size) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise WitnessRefused(url, 0, str(cause)) from None
    if status != 200:
        raise WitnessRefused(url, status, _short(text.strip(), 400))
    lines = [line + "\n" for line in text.split("\n")[:-1]] if text.endswith("\n") else []
    if not lines or not all(_valid_sig_line(line) for line in lines):
        raise WitnessRefused(url, status, "the 200 reply is not a list of note signature lines")
    return lines


def _valid_sig_line(line: str) -> bool:
    parts = line.rstrip("\n").split(" ")
    if len(parts) != 3 or parts[0] != EM_DASH or _name_problem(parts[1]):
        return False
    try:
        return len(base64.b64decode(parts[2], validate=True)) >= 5
    except (binascii.Error, ValueError):
        return False


def _proof(old: int, size: int, node: Callable[[int, int], bytes]) -> list[bytes]:
    return [] if old in (0, size) else consistency_proof(old, size, node)


def cosign_with_witness(url: str, note_text: str, source: Any, old_size: int = 0, timeout: float = 30) -> list[str]:
    """Have the witness at ``url`` cosign a checkpoint of the ledger read through ``source``.

    ``source`` is an ``assay.audit.source.Source`` (or a ``Ledger``: anything with ``stored_node``,
    or ``settings.db_url``); ``old_size`` is the size this witness is believed to hold. On a 409
    the request is retried once with a proof from the size the witness reports.
    """
    node = _node_source(source)
    cp = parse_checkpoint(parse_note(note_text)[0])
    old = old_size if 0 <= old_size <= cp.size else 0
    for attempt in range(2):
        try:
            proof = _proof(old, cp.size, node)
        except ProofError as exc:
            raise WitnessRefused(url, 0, f"cannot build the consistency proof from size {old}: {exc}") from None
        try:
            return add_checkpoint(url, note_text, old, proof, timeout=timeout)
        except WitnessRefused as exc:
            if exc.status != 409 or exc.size is None or attempt:
                raise
            if exc.size > cp.size:
                raise WitnessRefused(
                    url, 409,
                    f"the witness has cosigned {exc.size} records of {cp.origin} but this ledger has {cp.size}: "
                    "the ledger was rolled back, or another copy of it is being witnessed",
                    exc.size,
                ) from None
            old = exc.size
    raise AssertionError("unreachable")  # pragma: no cover


def _node_source(source: Any) -> Callable[[int, int], bytes]:
    node = getattr(source, "stored_node", None)
    if callable(node):
        return node
    settings = getattr(source, "settings", None)
    if settings is not None:
        from assay.audit.source import Source

        return Source(settings.db_url).stored_node
    raise TypeError("source must be an assay.audit.verify.Source or an assay.audit.ledger.Ledger")


# ---------------------------------------------------------------------------------------------
# What `assay audit checkpoint --witness` and `assay audit verify --witness-key` run
# ---------------------------------------------------------------------------------------------


def witnessed_note_path(home: Path, ledger_id: str) -> Path:
    return Path(home) / "checkpoints" / f"{ledger_id}.witnessed.note"


def _ledger_id_of(origin: str) -> str:
    from assay.audit.source import origin_of

    prefix = origin_of("")
    if not origin.startswith(prefix) or len(origin) == len(prefix):
        raise BadInput(f"checkpoint origin {origin!r} is not an assay ledger's ({prefix}<ledger id>)")
    return origin[len(prefix) :]


def ledger_vkey(home: Path, db_url: str) -> tuple[str, str]:
    """The note verifier key ``assay.ledger/<id>+<key id>+<key>`` of the home's active key, and the origin."""
    from assay.audit.keys import KeyStore
    from assay.audit.source import Source, origin_of

    src = Source(db_url)
    try:
        ledger_id = src.meta("ledger_id")
    finally:
        src.close()
    if not ledger_id:
        raise BadInput("the database has no ledger id; it was not written by assay")
    key = KeyStore(Path(home)).active(create=False)
    origin = origin_of(ledger_id)
    return format_vkey(origin, NOTE_ALG, key.public_raw), origin


def witness_ledger_checkpoint(home: Path, db_url: str, note_text: str, urls: Sequence[str]) -> str:
    """Send a fresh ledger checkpoint to each witness; store and return the cosigned note.

    The note (the checkpoint with every witness's cosignature lines appended) is written to
    ``{home}/checkpoints/{ledger_id}.witnessed.note`` when at least one witness cosigned. Each
    witness is first asked from the size of the previous witnessed checkpoint. Raises Finding
    naming every witness that refused (URL, status, reason).
    """
    from assay.audit.source import Source

    for url in urls:
        _endpoint(url)
    body, _ = parse_note(note_text)
    cp = parse_checkpoint(body)
    path = witnessed_note_path(home, _ledger_id_of(cp.origin))
    guess = 0
    with contextlib.suppress(OSError, UnicodeDecodeError, NoteError):
        prev = parse_checkpoint(parse_note(path.read_text(encoding="utf-8"))[0])
        if prev.origin == cp.origin:
            guess = prev.size
    src = Source(db_url)
    lines: list[str] = []
    refused: list[WitnessRefused] = []
    try:
        for url in dict.fromkeys(urls):
            try:
                lines += [line for line in cosign_with_witness(url, note_text, src, guess) if line not in lines]
            except WitnessRefused as exc:
                refused.append(exc)
    finally:
        src.close()
    witnessed = note_text + "".join(lines)
    if lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(witnessed, encoding="utf-8")
        tmp.replace(path)
    if refused:
        detail = "; ".join(_refusal(e) for e in refused)
        raise Finding(f"checkpoint of size {cp.size} not witnessed by {len(refused)} of {len(set(urls))} witness(es): {detail}")
    return witnessed


def _refusal(exc: WitnessRefused) -> str:
    if exc.status == 0:
        return f"{exc.url} unreachable ({exc.reason})"
    if exc.status == 422:
        return (
            f"{exc.url} answered 422: {exc.reason} — this ledger is not an extension of the one the witness "
            "cosigned (history rewritten, or another copy is being witnessed)"
        )
    return f"{exc.url} answered {exc.status}: {exc.reason}"


def verify_witnessed(
    home: Path, db_url: str, checkpoint: str | None, key_values: Sequence[str], quorum: int | None
) -> tuple[str, WitnessCheck]:
    """The checkpoint file ``assay audit verify --witness-key`` verifies against, and its witness check.

    ``checkpoint`` is the ``--checkpoint`` file if given; otherwise the home's witnessed note.
    ``quorum`` defaults to the number of distinct keys. A missing witnessed note is a Finding.
    """
    keys = load_witness_keys(key_values)
    distinct = len(dict.fromkeys(keys))
    if checkpoint is None:
        from assay.audit.source import Source

        src = Source(db_url)
        try:
            ledger_id = src.meta("ledger_id")
        finally:
            src.close()
        if not ledger_id:
            raise BadInput("the database has no ledger id; it was not written by assay")
        path = witnessed_note_path(home, ledger_id)
        if not path.is_file():
            raise Finding(
                f"no witnessed checkpoint at {path}: make one with `assay audit checkpoint --witness URL`, "
                "or pass --checkpoint FILE"
            )
        checkpoint = str(path)
    return checkpoint, check_witnesses(read_checkpoint_file(checkpoint), keys, distinct if quorum is None else quorum, None)
