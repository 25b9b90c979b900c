"""Helpers that tamper with a ledger database behind the ledger's back (for the tamper suite)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.audit.format import record_hash
from assay.audit.verify import sqlite_path

COLS = "seq, run_id, kind, time, key_id, prev_hash, hash, signature, body"


class Raw:
    """Direct SQL access to the ledger tables of a SQLite file or PostgreSQL schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.conn: Any = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
            self.ph = "?"
            self.pg = False
        else:
            import psycopg

            self.conn = psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)
            self.ph = "%s"
            self.pg = True

    def exec(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self.conn.execute(sql.replace("?", self.ph), args)

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql.replace("?", self.ph), args).fetchall()]

    def row(self, seq: int) -> tuple[Any, ...]:
        return self.rows(f"SELECT {COLS} FROM ledger_records WHERE seq = ?", (seq,))[0]

    def drop_triggers(self) -> None:
        if self.pg:
            for t in ("ledger_records", "ledger_nodes"):
                self.exec(f"DROP TRIGGER IF EXISTS {t}_no_change ON {t}")
                self.exec(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        else:
            for t in ("ledger_records", "ledger_nodes"):
                self.exec(f"DROP TRIGGER IF EXISTS {t}_no_update")
                self.exec(f"DROP TRIGGER IF EXISTS {t}_no_delete")

    def set(self, seq: int, **cols: Any) -> None:
        assigns = ", ".join(f"{c} = ?" for c in cols)
        self.exec(f"UPDATE ledger_records SET {assigns} WHERE seq = ?", (*cols.values(), seq))

    def insert(self, row: tuple[Any, ...]) -> None:
        self.exec(f"INSERT INTO ledger_records ({COLS}) VALUES ({', '.join('?' * 9)})", row)

    def shift_from(self, seq: int, by: int = 1) -> None:
        """Renumber records ≥ seq by ``by`` (via negative numbers to dodge the primary key)."""
        self.exec("UPDATE ledger_records SET seq = -seq WHERE seq >= ?", (seq,))
        self.exec("UPDATE ledger_records SET seq = -seq + ? WHERE seq < 0", (by,))

    def close(self) -> None:
        self.conn.close()


def forged_row(
    seq: int, prev: bytes, key: Ed25519PrivateKey, key_id: str, payload: dict[str, Any] | None = None,
    run_id: str | None = "r1", kind: str = "data",
) -> tuple[Any, ...]:
    """A well-formed record (canonical body, correct chain link) signed by ``key`` claiming ``key_id``."""
    doc = {
        "actor": {"user": "mallory", "host": "evil", "ci_job": None},
        "key_id": key_id,
        "kind": kind,
        "payload": payload or {"forged": True},
        "prev_hash": prev.hex(),
        "run_id": run_id,
        "seq": seq,
        "time": "2025-01-01T00:00:00.000000Z",
    }
    body = rfc8785.dumps(doc)
    h = record_hash(prev, body)
    return (seq, run_id, kind, doc["time"], bytes.fromhex(key_id), prev, h, key.sign(h), body)


def resign(raw: Raw, seq: int, key: Ed25519PrivateKey, key_id: str) -> None:
    """Rewrite record ``seq`` as if signed by ``key`` (same content, new key_id, hash and signature)."""
    old = raw.row(seq)
    doc = json.loads(bytes(old[8]))
    doc["key_id"] = key_id
    body = rfc8785.dumps(doc)
    prev = bytes(old[5])
    h = record_hash(prev, body)
    raw.set(seq, key_id=bytes.fromhex(key_id), hash=h, signature=key.sign(h), body=body)
