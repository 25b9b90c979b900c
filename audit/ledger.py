"""The audit ledger: append signed, hash-chained, Merkle-indexed records to SQLite or PostgreSQL.

Tables (all prefixed ``ledger_``, defined with sqlmodel, sharing the assay database):

* ``ledger_records`` — one row per record: ``seq`` (1, 2, …), indexed copies of run_id / kind /
  time / key_id, ``prev_hash``, ``hash``, ``signature`` and ``body``, the exact signed canonical bytes
  (see ``assay.audit.format``). Reads always decode ``body``; nothing is re-serialized.
* ``ledger_nodes`` — RFC 6962 interior nodes of every complete perfect subtree (level ≥ 1), written
  in the same transaction as the records; they make checkpoints and consistency proofs O(log n).
* ``ledger_meta`` — the ledger id (its checkpoint origin is ``assay.ledger/<id>``).
* ``ledger_keys`` — an index of key records (when each key was added, rotated out, revoked).

Appends are serialized across processes (SQLite ``BEGIN IMMEDIATE``, PostgreSQL transaction-level
advisory lock), so concurrent writers extend one linear chain; a killed writer leaves its
transaction rolled back. Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL, as ``ENABLE
ALWAYS`` triggers) — a guard against accidents only: ``verify`` never relies on them.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import functools
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Column, Index, LargeBinary, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry as _registry
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import Field, SQLModel, create_engine

from assay.audit import verify as _verify
from assay.audit.canonical import canonical, canonical_str
from assay.audit.errors import AssayError, BadInput, Finding, InternalError
from assay.audit.format import (
    GENESIS_PREV,
    KEY_ADDED,
    KEY_KINDS,
    KEY_REVOKED,
    KEY_ROTATED,
    RUN_END_KINDS,
    Record,
    record_hash,
)
from assay.audit.keys import KeyStore, SigningKey, actor, default_identity
from assay.audit.merkle import Frontier, leaf_hash
from assay.audit.note import Checkpoint, sign_checkpoint
from assay.audit.trust import ADMIN, ATTESTOR, ECDSA_P256, ED25519, SIGNER, TrustError, parse_roles

_ledger_registry = _registry()


class _LedgerBase(SQLModel, registry=_ledger_registry):
    """Separate metadata: other assay tables' create_all/drop_all never touch the ledger."""


class LedgerRecordRow(_LedgerBase, table=True):
    __tablename__ = "ledger_records"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    run_id: str | None = Field(default=None, index=False)
    kind: str
    time: str
    key_id: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    prev_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerNodeRow(_LedgerBase, table=True):
    __tablename__ = "ledger_nodes"
    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerMetaRow(_LedgerBase, table=True):
    __tablename__ = "ledger_meta"
    name: str = Field(primary_key=True)
    value: str


class LedgerKeyRow(_LedgerBase, table=True):
    __tablename__ = "ledger_keys"
    key_id: str = Field(primary_key=True)
    public_key: str
    added_seq: int
    until_seq: int | None = None
    revoked_seq: int | None = None
    replaced_by: str | None = None


Index("ix_ledger_records_run_id", LedgerRecordRow.__table__.c.run_id)  # type: ignore[attr-defined]
Index("ix_ledger_records_kind", LedgerRecordRow.__table__.c.kind)  # type: ignore[attr-defined]

_TABLES = [t.__table__ for t in (LedgerRecordRow, LedgerNodeRow, LedgerMetaRow, LedgerKeyRow)]  # type: ignore[union-attr]

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS ledger_records_no_update BEFORE UPDATE ON ledger_records "
    "BEGIN SELECT RAISE(ABORT, 'ledger_records is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_records_no_delete BEFORE DELETE ON ledger_records "
    "BEGIN SELECT RAISE(ABORT, 'ledger_records is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_nodes_no_update BEFORE UPDATE ON ledger_nodes "
    "BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes "
    "BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only'); END",
]

_PG_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    *[
        stmt
        for table in ("ledger_records", "ledger_nodes")
        for stmt in (
            f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
            f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_change",
            f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
        )
    ],
]

#: Kind of the record that logs each signature an attestation key makes.
ATTESTATION = "attestation"

_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.assay.ledger'))"

_BODY = b'{"actor":%s,"key_id":"%s","kind":%s,"payload":%s,"prev_hash":"%s","run_id":%s,"seq":%d,"time":"%s"}'


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Location(Protocol):
    """Where a ledger lives: the home holding its keys and checkpoints, and its database URL.

    The CLI's settings are one; the ledger reads nothing else from them.
    """

    @property
    def home(self) -> Path: ...

    @property
    def db_url(self) -> str: ...


@dataclass(frozen=True)
class At:
    """A :class:`Location` given as its two parts."""

    home: Path
    db_url: str


class Ledger:
    """One ledger database. Create with ``Ledger.open``; safe to share between threads."""

    def __init__(self, settings: Location, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.dialect = engine.dialect.name
        self.keys = KeyStore(settings.home)
        self._ph = "?" if self.dialect == "sqlite" else "%s"
        self._lock = threading.RLock()
        self._actor_dict = actor()
        self._actor = canonical(self._actor_dict)
        self._frontier: tuple[int, bytes, Frontier] | None = None
        self._signer: SigningKey | None = None
        self._kind_cache: dict[str, bytes] = {}
        self.ledger_id = ""
        self._post: list[Callable[[], None]] = []
        self._owes_checkpoint = False  # appended since the home's checkpoint was last written
        self._pid = os.getpid()

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, where: Location | str, home: Path | str | None = None) -> Ledger:
        """Open (creating tables and triggers if missing) the ledger in the given database.

        ``where`` is a :class:`Location` (the CLI's settings: ``.home`` and ``.db_url``), or a
        database URL with ``home``; a ``home`` given beside a location replaces its home.
        """
        if isinstance(where, str):
            if home is None:
                raise TypeError("Ledger.open(db_url, home): a database URL needs the home that holds its keys")
            settings: Location = At(Path(home).expanduser().absolute(), where)
        else:
            settings = where if home is None else At(Path(home), where.db_url)
        url = settings.db_url
        if url.startswith("sqlite"):
            path = _verify.sqlite_path(url)
            if path not in ("", ":memory:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 120, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _rec: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout = 120000")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.close()

        elif url.startswith(("postgresql", "postgres")):
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://") :]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            engine = create_engine(url)
        else:
            raise BadInput(f"unsupported database URL {_verify.redact(url)!r}: use sqlite:///PATH or postgresql+psycopg://…")
        ledger = cls(settings, engine)
        try:
            ledger._create_schema()
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(f"cannot open ledger database {_verify.redact(settings.db_url)}: {exc}") from None
        return ledger

    def close(self) -> None:
        """Write the checkpoint this ledger owes the home (if it appended), then release its connections."""
        self.flush_checkpoint()
        self.engine.dispose()

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        raw = self.engine.raw_connection()
        try:
            yield raw.driver_connection
        finally:
            raw.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        """A serialized write transaction; yields a DBAPI cursor."""
        with self._lock, self._conn() as conn:
            self._post = []
            cur = conn.cursor()
            try:
                if self.dialect == "sqlite":
                    cur.execute("BEGIN IMMEDIATE")
                else:
                    cur.execute(_LOCK_SQL)
                yield cur
            except BaseException:
                conn.rollback()
                raise
            else:
                if self.dialect == "sqlite":
                    cur.execute("COMMIT")
                else:
                    conn.commit()
            finally:
                cur.close()
            post, self._post = self._post, []
            for fn in post:
                fn()

    def _create_schema(self) -> None:
        dialect = self.engine.dialect
        ddl = [str(CreateTable(t, if_not_exists=True).compile(dialect=dialect)) for t in _TABLES]
        ddl += [
            str(CreateIndex(ix, if_not_exists=True).compile(dialect=dialect)) for t in _TABLES for ix in t.indexes
        ]
        ddl += _SQLITE_TRIGGERS if self.dialect == "sqlite" else _PG_TRIGGERS
        with self._write() as cur:
            for stmt in ddl:
                cur.execute(stmt)
            cur.execute(f"SELECT value FROM ledger_meta WHERE name = {self._ph}", ("ledger_id",))
            row = cur.fetchone()
            if row is None:
                self.ledger_id = uuid.uuid4().hex
                cur.execute(
                    f"INSERT INTO ledger_meta (name, value) VALUES ({self._ph}, {self._ph})",
                    ("ledger_id", self.ledger_id),
                )
            else:
                self.ledger_id = row[0]

    @property
    def origin(self) -> str:
        """The checkpoint origin line (and note key name) of this ledger."""
        return _verify.origin_of(self.ledger_id)

    # -- appending -------------------------------------------------------------------------------
    def signer(self) -> SigningKey:
        if self._signer is None:
            self._signer = self.keys.active()
        return self._signer

    def append(self, run_id: str | None, kind: str, payload: Mapping[str, Any]) -> Record:
        """Append one record; returns it as stored."""
        return self.append_many([(run_id, kind, payload)])[0]

    def append_many(self, items: Sequence[tuple[str | None, str, Mapping[str, Any]]]) -> list[Record]:
        """Append records in one transaction (the fast path): all or none are stored."""
        for run_id, kind, payload in items:
            _check_item(run_id, kind, payload)
            if kind in KEY_KINDS:
                raise BadInput(f"record kind {kind!r} is reserved for key management (use assay keys)")
        return self._append([(r, k, dict(p)) for r, k, p in items])

    def _append(self, items: list[tuple[str | None, str, dict[str, Any]]], signer: SigningKey | None = None) -> list[Record]:
        if not items:
            return []
        prepared = [(run_id, kind, canonical(payload)) for run_id, kind, payload in items]
        for attempt in range(2):
            key = signer or self.signer()
            try:
                with self._write() as cur:
                    return self._append_locked(cur, key, prepared)
            except _SignerChanged:
                if attempt:
                    raise
        raise InternalError("unreachable")  # pragma: no cover

    def _key_status(self, cur: Any, key_id: str) -> tuple[Any, ...] | None:
        cur.execute(
            f"SELECT added_seq, until_seq, revoked_seq, replaced_by FROM ledger_keys WHERE key_id = {self._ph}",
            (key_id,),
        )
        row = cur.fetchone()
        return tuple(row) if row is not None else None

    def _append_locked(self, cur: Any, key: SigningKey, prepared: list[tuple[str | None, str, bytes]]) -> list[Record]:
        status = self._key_status(cur, key.key_id)
        intro: list[tuple[str | None, str, bytes]] = []
        if status is None:
            intro = self._introduce(cur, key)
        else:
            _added, until, revoked, replaced_by = status
            if revoked is not None:
                raise BadInput(
                    f"signing key {key.key_id} was revoked at ledger seq {revoked}; "
                    "a holder of a trusted key must add a new key for this home"
                )
            if until is not None:
                if replaced_by and replaced_by in self.keys.private_key_ids() and self._signer is key:
                    self.keys.set_active(replaced_by)
                    self._signer = None
                    raise _SignerChanged()
                raise BadInput(f"signing key {key.key_id} was rotated out at ledger seq {until}; run: assay keys list")
        records, _ = self._write_records(cur, key, intro + prepared)
        return records[len(intro) :]

    def _tail(self, cur: Any) -> tuple[int, bytes]:
        cur.execute("SELECT seq, hash FROM ledger_records ORDER BY seq DESC LIMIT 1")
        row = cur.fetchone()
        return (0, GENESIS_PREV) if row is None else (int(row[0]), bytes(row[1]))

    def _load_frontier(self, cur: Any, size: int, last_hash: bytes) -> Frontier:
        cached = self._frontier
        if cached is not None and cached[0] == size and cached[1] == last_hash:
            return cached[2]
        nodes = []
        for level, idx in Frontier.positions(size):
            nodes.append(self._node(cur, level, idx))
        return Frontier(size, nodes)

    def _node(self, cur: Any, level: int, idx: int) -> bytes:
        if level == 0:
            cur.execute(f"SELECT hash FROM ledger_records WHERE seq = {self._ph}", (idx + 1,))
            row = cur.fetchone()
            if row is None:
                raise InternalError(f"ledger record {idx + 1} is missing; run: assay audit verify")
            return leaf_hash(bytes(row[0]))
        cur.execute(f"SELECT hash FROM ledger_nodes WHERE level = {self._ph} AND idx = {self._ph}", (level, idx))
        row = cur.fetchone()
        if row is None:
            raise InternalError(f"ledger Merkle node ({level}, {idx}) is missing; run: assay audit verify")
        return bytes(row[0])

    def _kind_bytes(self, kind: str) -> bytes:
        b = self._kind_cache.get(kind)
        if b is None:
            b = self._kind_cache[kind] = canonical_str(kind)
        return b

    def _write_records(
        self, cur: Any, key: SigningKey, prepared: list[tuple[str | None, str, bytes]]
    ) -> tuple[list[Record], list[Any]]:
        size, prev = self._tail(cur)
        frontier = self._load_frontier(cur, size, prev)
        now = _utc_now()
        now_b = now.encode()
        kid = key.key_id.encode()
        kid_raw = bytes.fromhex(key.key_id)
        sign = key.private.sign
        actor_b = self._actor
        rec_rows: list[tuple[Any, ...]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        out: list[Record] = []
        key_rows: list[Any] = []
        seq = size
        # Work on a copy of the frontier: if the transaction fails, the cache stays valid.
        fr = Frontier(frontier.size, frontier.nodes)
        for run_id, kind, payload_b in prepared:
            seq += 1
            run_b = b"null" if run_id is None else canonical_str(run_id)
            body = _BODY % (actor_b, kid, self._kind_bytes(kind), payload_b, prev.hex().encode(), run_b, seq, now_b)
            h = record_hash(prev, body)
            sig = sign(h)
            rec_rows.append((seq, run_id, kind, now, kid_raw, prev, h, sig, body))
            node_rows.extend(fr.append(leaf_hash(h)))
            out.append(_record(seq, run_id, kind, now, self._actor_dict, payload_b, prev, h, key.key_id, sig, body))
            if kind in KEY_KINDS:
                key_rows.append((seq, kind, json.loads(payload_b)))
            prev = h
        ph = self._ph
        cur.executemany(
            "INSERT INTO ledger_records (seq, run_id, kind, time, key_id, prev_hash, hash, signature, body) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
            rec_rows,
        )
        if node_rows:
            cur.executemany(f"INSERT INTO ledger_nodes (level, idx, hash) VALUES ({ph}, {ph}, {ph})", node_rows)
        for seq_k, kind, payload in key_rows:
            self._index_key_event(cur, seq_k, kind, payload, key.key_id)
        self._frontier = (fr.size, prev, fr)
        for seq_k, kind, payload in key_rows:
            self._post.append(functools.partial(self._trust_key_event, seq_k, kind, payload))
        self._post.append(self._owe_checkpoint)
        return out, key_rows

    def _owe_checkpoint(self) -> None:
        # Runs after the commit: one flag per ledger, so the checkpoint is written once per command.
        self._owes_checkpoint = True
        with _PENDING_LOCK:
            _PENDING[id(self)] = self

    def _index_key_event(self, cur: Any, seq: int, kind: str, payload: dict[str, Any], signer_id: str) -> None:
        ph = self._ph
        if kind in (KEY_ADDED, KEY_ROTATED):
            new_id = payload["key_id"]
            start = seq if new_id == signer_id else seq + 1
            if self.dialect == "sqlite":
                sql = f"INSERT OR IGNORE INTO ledger_keys (key_id, public_key, added_seq) VALUES ({ph}, {ph}, {ph})"
            else:
                sql = (
                    f"INSERT INTO ledger_keys (key_id, public_key, added_seq) VALUES ({ph}, {ph}, {ph}) "
                    "ON CONFLICT (key_id) DO NOTHING"
                )
            cur.execute(sql, (new_id, payload["public_key"], start))
        if kind == KEY_ROTATED:
            cur.execute(
                f"UPDATE ledger_keys SET until_seq = {ph}, replaced_by = {ph} WHERE key_id = {ph}",
                (seq, payload["key_id"], payload["old_key_id"]),
            )
        if kind == KEY_REVOKED:
            cur.execute(f"UPDATE ledger_keys SET revoked_seq = {ph} WHERE key_id = {ph}", (seq, payload["key_id"]))

    def _trust_key_event(self, seq: int, kind: str, payload: dict[str, Any]) -> None:
        """Keep the home's trust file in step with a committed key record (the only way keys enter it)."""
        who = payload.get("identity") or payload.get("name") or ""
        roles = payload.get("roles") if isinstance(payload.get("roles"), list) else None
        if kind == KEY_ADDED and payload.get("algorithm") == ECDSA_P256:
            self.keys.add_trusted(
                payload["key_id"], bytes.fromhex(payload["public_key"]), identity=who, roles=[ATTESTOR],
                valid_from=seq + 1, algorithm=ECDSA_P256,
            )
        elif kind == KEY_ADDED and not payload.get("added_by"):
            self.keys.add_trusted(
                payload["key_id"], bytes.fromhex(payload["public_key"]), identity=who, roles=roles, valid_from=seq
            )
        elif kind == KEY_ROTATED:
            self.keys.add_trusted(
                payload["key_id"], bytes.fromhex(payload["public_key"]), identity=who, roles=roles, valid_from=seq + 1
            )
            self.keys.set_window(payload["old_key_id"], valid_until=seq)
        elif kind == KEY_ADDED and payload.get("added_by"):
            self.keys.add_trusted(
                payload["key_id"], bytes.fromhex(payload["public_key"]), identity=who, roles=roles, valid_from=seq + 1
            )
        elif kind == KEY_REVOKED:
            self.keys.set_window(payload["key_id"], revoked_at=seq)

    @staticmethod
    def _key_added_payload(
        new: SigningKey | None, by: SigningKey, public_raw: bytes | None = None, name: str = "",
        identity: str = "", roles: Sequence[str] | None = None, algorithm: str = ED25519,
    ) -> dict[str, Any]:
        raw = new.public_raw if new is not None else public_raw
        assert raw is not None
        from assay.audit.format import key_id_of

        kid = key_id_of(raw)
        payload: dict[str, Any] = {"key_id": kid, "public_key": raw.hex(), "algorithm": algorithm}
        if identity or name:
            payload["identity"] = identity or name
        if roles is not None:
            payload["roles"] = list(roles)
        if kid != by.key_id:
            payload["added_by"] = by.key_id
        return payload

    def _introduce(self, cur: Any, key: SigningKey, identity: str = "") -> list[tuple[str | None, str, bytes]]:
        """The genesis key_added for ``key`` if it may introduce itself; BadInput for any other unknown key.

        Only the first key of an empty ledger introduces itself (and only if this home's trust file
        is empty or lists it): every later key needs a key_added signed by an admin. The trust file
        is read once per unknown signer, never per record.
        """
        size, _ = self._tail(cur)
        trusted = self.keys.trusted(missing_ok=True)
        entry = next((k for k in trusted if k.key_id == key.key_id), None)
        if size == 0 and (not trusted or entry is not None):
            who = identity or (entry.who if entry is not None else "") or default_identity()
            payload = self._key_added_payload(key, key, identity=who, roles=[ADMIN])
            return [(None, KEY_ADDED, canonical(payload))]
        pub_file = self.keys.public_path(key.key_id)
        shown = str(pub_file) if pub_file.is_file() else "<pubfile>"
        where = "" if pub_file.is_file() else f" (<pubfile>: a file holding its public key {key.public_raw.hex()})"
        if entry is not None:
            raise BadInput(
                f"signing key {key.key_id} is listed in this home's trust file but was never added to this ledger; "
                f"an admin adds it with: assay keys add {shown} --identity NAME --role signer{where}"
            )
        raise BadInput(
            f"signing key {key.key_id} is not trusted in this home; an admin adds it with: "
            f"assay keys add {shown} --identity NAME --role signer{where}"
        )

    def _signer_info(self, cur: Any, key_id: str) -> dict[str, Any] | None:
        """Identity, roles and window of ``key_id`` from a replay of this ledger's key records."""
        from assay.audit.keyreplay import replay

        ph = self._ph
        kinds = sorted(KEY_KINDS)
        cur.execute(
            f"SELECT seq, key_id, kind, body FROM ledger_records WHERE kind IN ({ph}, {ph}, {ph}) ORDER BY seq",
            tuple(kinds),
        )
        rows = [(int(s), bytes(k).hex(), kd, bytes(b)) for s, k, kd, b in cur.fetchall()]
        trusted = self.keys.trusted() if self.keys.trust_path.exists() else None
        state, _problems = replay(rows, trusted)
        return state.signers().get(key_id)

    def _require_admin(self, cur: Any, key: SigningKey, action: str) -> None:
        from assay.audit.keyreplay import valid_at

        info = self._signer_info(cur, key.key_id)
        size, _ = self._tail(cur)
        if info is None or not valid_at(info, size + 1):
            raise Finding(f"signing key {key.key_id} is not valid in this ledger, so it cannot {action}")
        if ADMIN not in info["roles"]:
            raise Finding(
                f"refused: signing key {key.key_id} ({info['identity']}, roles: {', '.join(info['roles'])}) "
                f"is not an admin key, and only an admin key may {action}; ask an admin to run this command"
            )

    # -- key management records ------------------------------------------------------------------
    def register_key(self, identity: str = "") -> tuple[SigningKey, int | None]:
        """Make sure the active key is introduced in the ledger; returns it and its key_added seq.

        A key the ledger does not know is introduced only as the genesis key of an empty ledger
        (``identity`` names its holder, default ``{user}@{host}``); otherwise BadInput says how an
        admin adds it.
        """
        key = self.signer()
        with self._write() as cur:
            status = self._key_status(cur, key.key_id)
            if status is None:
                records, _ = self._write_records(cur, key, self._introduce(cur, key, identity))
                return key, records[0].seq
        return key, int(status[0])

    def add_key(
        self, public_raw: bytes, name: str = "", identity: str = "", roles: Sequence[str] = (SIGNER,),
        algorithm: str = ED25519,
    ) -> Record:
        """Trust another public key: a key_added record signed by the active key, which must be an admin.

        ``identity`` is who holds the key (``name`` is its deprecated spelling); ``roles`` any of
        signer, approver, admin. Refused (Finding) when the active key lacks the admin role. An
        ``ecdsa-p256`` key (``public_raw`` its uncompressed point) is an attestation key: its only
        role is attestor, and it never signs ledger records.
        """
        who = identity or name
        if not who:
            raise BadInput("a key needs an identity (who holds it): pass --identity NAME")
        if algorithm == ECDSA_P256:
            if set(roles) - {ATTESTOR}:
                raise BadInput(f"an ecdsa-p256 key is an attestation key: its only role is {ATTESTOR} (--role {ATTESTOR})")
            granted: tuple[str, ...] = (ATTESTOR,)
            from assay.audit.keys import ec_public_from_point

            try:
                ec_public_from_point(public_raw)
            except ValueError:
                raise BadInput("the ecdsa-p256 public key is not a point on P-256") from None
        else:
            if ATTESTOR in roles:
                raise BadInput(f"role {ATTESTOR} is for ECDSA P-256 attestation keys (assay keys init --type ecdsa-p256), "
                               "not Ed25519 ledger keys")
            try:
                granted = parse_roles(list(roles), "--role")
            except TrustError as exc:
                raise BadInput(str(exc)) from None
        key, _ = self.register_key()
        payload = self._key_added_payload(None, key, public_raw=public_raw, identity=who, roles=granted,
                                          algorithm=algorithm)
        with self._write() as cur:
            if self._key_status(cur, payload["key_id"]) is not None:
                raise BadInput(f"key {payload['key_id']} is already in this ledger (see: assay keys list)")
            self._require_admin(cur, key, "add keys")
            records, _ = self._write_records(cur, key, [(None, KEY_ADDED, canonical(payload))])
        return records[0]

    def rotate_key(self) -> tuple[Record, SigningKey]:
        """Replace the active key with a new one; the old key signs the key_rotated record.

        The new key keeps the old key's identity and roles (recorded in the key_rotated payload).
        """
        old, _ = self.register_key()
        new = self.keys.generate()
        with self._write() as cur:
            info = self._signer_info(cur, old.key_id) or {}
            payload = {
                "old_key_id": old.key_id, "key_id": new.key_id, "public_key": new.public_raw.hex(),
                "algorithm": "ed25519", "identity": info.get("identity") or old.key_id,
                "roles": list(info.get("roles") or [SIGNER]),
            }
            records, _ = self._write_records(cur, old, [(None, KEY_ROTATED, canonical(payload))])
        self.keys.set_active(new.key_id)
        self._signer = None
        return records[0], new

    def revoke_key(self, key_id: str, reason: str = "") -> Record:
        """Revoke a key from now on (records it signed earlier stay valid); needs an admin key."""
        key, _ = self.register_key()
        if key_id == key.key_id:
            raise BadInput("cannot revoke the active signing key; run `assay keys rotate` first, then revoke it")
        with self._write() as cur:
            status = self._key_status(cur, key_id)
            known = status is not None or any(k.key_id == key_id for k in self.keys.trusted(missing_ok=True))
            if not known:
                raise BadInput(f"unknown key id {key_id!r}; see: assay keys list")
            if status is not None and status[2] is not None:
                raise BadInput(f"key {key_id} is already revoked (seq {status[2]})")
            self._require_admin(cur, key, "revoke keys")
            payload = {"key_id": key_id, "reason": reason or "revoked"}
            records, _ = self._write_records(cur, key, [(None, KEY_REVOKED, canonical(payload))])
        return records[0]

    def record_attestation(self, run_id: str | None, payload: Mapping[str, Any]) -> Record:
        """Record one signature an attestation key made: an ``attestation`` record (signed by the ledger
        key) naming the key and the SHA-256 of exactly what it signed."""
        for field_name in ("key_id", "algorithm", "signed_sha256"):
            if not isinstance(payload.get(field_name), str):
                raise BadInput(f"attestation record needs a {field_name} string")
        return self.append(run_id, ATTESTATION, payload)

    # -- reading ---------------------------------------------------------------------------------
    def size(self) -> int:
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute("SELECT MAX(seq) FROM ledger_records")
            row = cur.fetchone()
            return int(row[0] or 0)

    def records(self, run_id: str | None = None, kind: str | None = None) -> list[Record]:
        """Records in seq order, optionally one run's and/or one kind's (decoded from the signed bytes)."""
        where, args = [], []
        if run_id is not None:
            where.append(f"run_id = {self._ph}")
            args.append(run_id)
        if kind is not None:
            where.append(f"kind = {self._ph}")
            args.append(kind)
        sql = "SELECT seq, body, hash, signature FROM ledger_records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute(sql, tuple(args))
            return [Record.from_row(int(s), bytes(b), bytes(h), bytes(g)) for s, b, h, g in cur.fetchall()]

    def runs(self) -> list[dict[str, Any]]:
        """One summary per run id: first/last record, kinds, and whether the run completed."""
        ph = self._ph
        sql = (
            "SELECT r.run_id, r.first_seq, r.last_seq, r.n, f.kind, f.time, l.kind, l.time, "
            "(SELECT e.kind FROM ledger_records e WHERE e.run_id = r.run_id "
            f"AND e.kind IN ({ph}, {ph}) ORDER BY e.seq DESC LIMIT 1) "
            "FROM (SELECT run_id, MIN(seq) AS first_seq, MAX(seq) AS last_seq, COUNT(*) AS n "
            "FROM ledger_records WHERE run_id IS NOT NULL GROUP BY run_id) r "
            "JOIN ledger_records f ON f.seq = r.first_seq JOIN ledger_records l ON l.seq = r.last_seq "
            "ORDER BY r.first_seq"
        )
        out = []
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute(sql, tuple(sorted(RUN_END_KINDS)))
            for run_id, first, last, n, fk, ft, lk, lt, end in cur.fetchall():
                status = {"run_finished": "finished", "run_failed": "failed"}.get(end or "", "incomplete")
                out.append(
                    {
                        "run_id": run_id,
                        "first_seq": int(first),
                        "last_seq": int(last),
                        "records": int(n),
                        "first_kind": fk,
                        "last_kind": lk,
                        "started": ft,
                        "last_time": lt,
                        "complete": end is not None,
                        "status": status,
                    }
                )
        return out

    # -- verification and checkpoints ---------------------------------------------------------------
    def trust_path(self) -> Path | None:
        return self.keys.trust_path if self.keys.trust_path.exists() else None

    def verify(
        self,
        checkpoint: Path | str | None = None,
        trusted_keys: Path | list[Any] | None = None,
        full: bool = True,
        *,
        since_checkpoint: Path | str | None = None,
        home_checkpoint: bool = True,
        workers: int | None = None,
    ) -> _verify.VerifyReport:
        """Verify every record of the ledger to its head (``assay.audit.verify.verify_ledger``).

        The ledger must also extend ``checkpoint`` and, unless ``home_checkpoint`` is false, the
        newest checkpoint the home holds. Default trust is the home's trust file. ``full`` is
        accepted for older callers: verification is always full (``since_checkpoint`` is the one
        shortcut, and the report's ``trusted`` says what it took on the checkpoint's word).
        """
        del full
        trust = trusted_keys if trusted_keys is not None else self.trust_path()
        return _verify.verify_ledger(
            self.settings.db_url,
            checkpoint=checkpoint,
            trust=trust,
            workers=workers,
            since_checkpoint=since_checkpoint,
            home=self.settings.home if home_checkpoint else None,
        )

    def latest_checkpoint_path(self) -> Path:
        return self.settings.home / "checkpoints" / f"{self.ledger_id}.note"

    def checkpoint(self) -> str:
        """Sign a C2SP checkpoint note of the current ledger, store it as the home's newest, return it.

        The ledger is verified in full first — every record, and that it extends the home's previous
        checkpoint — and the size and root come from that verification, so a ledger that does not
        verify is never checkpointed (Finding, exit 1).
        """
        self.register_key()
        self._owes_checkpoint = False  # this checkpoint covers what this process appended so far
        report = self.verify()
        if not report.ok:
            raise Finding(f"refusing to checkpoint a ledger that does not verify: {report.summary()}")
        return self._store_checkpoint(report)

    def flush_checkpoint(self) -> str | None:
        """Write the home's checkpoint if this ledger appended since it was last written; never raises.

        Before signing, the records after the home's previous checkpoint are verified in full and the
        stored tree of the ones before is proven to be that checkpoint's (``verify_extension``); the
        first checkpoint of a ledger verifies everything. On any problem nothing is written and a
        warning goes to stderr: the command that appended has done its work and is not failed for it.
        Returns the note written, or None.
        """
        with self._lock:
            if not self._owes_checkpoint or os.getpid() != self._pid:
                return None
            self._owes_checkpoint = False
            with _PENDING_LOCK:
                _PENDING.pop(id(self), None)
        try:
            return self._auto_checkpoint()
        except Exception as exc:  # a checkpoint that cannot be written must not fail the command
            message = exc.message if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
            _warn(f"no checkpoint written for ledger {self.ledger_id}: {_verify.redact(message)}")
            return None

    def _auto_checkpoint(self) -> str | None:
        if not self._still_there():
            return None  # the database is gone (a removed temporary home or schema): nothing to vouch for
        previous = _verify.newest_home_checkpoint(self.settings.home, self.ledger_id)
        trust = self.trust_path()
        if previous is None:
            report = _verify.verify_ledger(self.settings.db_url, trust=trust)
        else:
            report = _verify.verify_extension(self.settings.db_url, previous, trust=trust)
        if not report.ok:
            _warn(
                f"no checkpoint written for ledger {self.ledger_id}: it does not verify "
                f"({report.summary()}); run: assay audit verify"
            )
            return None
        return self._store_checkpoint(report)

    def _still_there(self) -> bool:
        if self.settings.db_url.startswith("sqlite"):
            return Path(_verify.sqlite_path(self.settings.db_url)).is_file()
        try:
            with self._conn() as conn:
                cur = conn.cursor()
                try:
                    cur.execute("SELECT seq FROM ledger_records WHERE seq = 0")
                    cur.fetchall()
                finally:
                    cur.close()
                    conn.rollback()
        except Exception:
            return False
        return True

    def _store_checkpoint(self, report: _verify.VerifyReport) -> str:
        """Sign the verified tree head of ``report`` and make it the home's newest checkpoint."""
        key = self.signer()
        ext = report.key_events_line
        cp = Checkpoint(self.origin, report.size, bytes.fromhex(report.root or ""), (ext,) if ext else ())
        note = sign_checkpoint(cp, self.origin, key.private)
        path = self.latest_checkpoint_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock")):
            # Two commands finishing together: the one that saw the longer ledger keeps its checkpoint.
            if _note_size(path) <= report.size:
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(note, encoding="utf-8")
                tmp.replace(path)
        return note


_PENDING: dict[int, Ledger] = {}  # ledgers that appended and owe their home a checkpoint
_PENDING_LOCK = threading.Lock()


def _flush_pending() -> None:
    with _PENDING_LOCK:
        pending = list(_PENDING.values())
        _PENDING.clear()
    for ledger in pending:
        ledger.flush_checkpoint()


atexit.register(_flush_pending)


def _warn(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr may be closed at exit
        print(f"assay: warning: {message}", file=sys.stderr, flush=True)


def _note_size(path: Path) -> int:
    """The tree size of the checkpoint at ``path``; -1 when there is none (or it is unreadable)."""
    from assay.audit.note import NoteError, parse_checkpoint, parse_note

    try:
        return parse_checkpoint(parse_note(path.read_text(encoding="utf-8"))[0]).size
    except (OSError, UnicodeDecodeError, NoteError):
        return -1


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` across processes (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _SignerChanged(Exception):
    """The active key was rotated by another process; retry with the new one."""


def _check_item(run_id: Any, kind: Any, payload: Any) -> None:
    if run_id is not None and not isinstance(run_id, str):
        raise BadInput(f"run_id must be a string or None, not {type(run_id).__name__}")
    if not isinstance(kind, str) or not kind or len(kind) > 64:
        raise BadInput(f"record kind must be a non-empty string of at most 64 characters, not {kind!r}")
    if not isinstance(payload, Mapping):
        raise BadInput(f"record payload must be a dict, not {type(payload).__name__}")


def _record(
    seq: int, run_id: str | None, kind: str, time: str, actor: dict[str, Any], payload_b: bytes, prev: bytes,
    h: bytes, key_id: str, sig: bytes, body: bytes,
) -> Record:
    return Record(seq, run_id, kind, time, dict(actor), json.loads(payload_b), prev.hex(), h.hex(), key_id, sig.hex(), body)
