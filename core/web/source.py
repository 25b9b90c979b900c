"""Read-only access to the ledger tables, for the web view's request threads and its verifier.

SQLite is opened with a ``file:…?mode=ro`` URI; PostgreSQL sessions carry
``default_transaction_read_only=on`` (merged into the URL's ``options``), so a statement that
writes fails in the database itself, whatever code issued it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from assay.audit.format import Record
from assay.audit.verify import Source, redact, sqlite_path
from assay.errors import BadInput

READ_ONLY_OPTION = "-c default_transaction_read_only=on"
_COLS = "seq, body, hash, signature"


def readonly_url(url: str) -> str:
    """``url`` as a read-only connection string (SQLite unchanged: ``Source`` opens it ``mode=ro``)."""
    if not url.startswith(("postgresql", "postgres")):
        return url
    head, sep, query = url.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True) if sep else []
    options = [v for k, v in pairs if k == "options"]
    merged = " ".join([*options, READ_ONLY_OPTION]).strip()
    rest = [(k, v) for k, v in pairs if k != "options"] + [("options", merged)]
    return head + "?" + urllib.parse.urlencode(rest, quote_via=urllib.parse.quote)


def open_source(url: str) -> Source:
    """A read-only ``Source`` over the ledger at ``url``; BadInput naming the database if there is none."""
    return Source(readonly_url(url))


def change_marks(url: str) -> tuple[Any, ...]:
    """Cheap facts that change when the database file is written (SQLite: the file and its WAL)."""
    if not url.startswith("sqlite"):
        return ()
    path = sqlite_path(url)
    marks: list[Any] = []
    for p in (path, path + "-wal"):
        try:
            st = os.stat(p)
            marks.append((st.st_mtime_ns, st.st_size))
        except OSError:
            marks.append(None)
    return tuple(marks)


def pg_write_counter(src: Source) -> int | None:
    """Rows inserted, updated or deleted in the ledger tables (PostgreSQL statistics; None on SQLite).

    The statistics lag by up to a second and count only what the server's collector saw; they
    decide when to verify again sooner, never whether the ledger is intact.
    """
    if src.ph == "?":
        return None
    try:
        rows = src.query("SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
                         "WHERE relname IN ('ledger_records', 'ledger_nodes') AND schemaname = current_schema()")
    except Exception:
        return None
    return int(rows[0][0] or 0)


class Reader:
    """One read-only ``Source`` per thread (sqlite3 and psycopg connections are not shared)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Source] = []
        self._lock = threading.Lock()

    def source(self) -> Source:
        src = getattr(self._local, "src", None)
        if src is None:
            src = open_source(self.url)
            self._local.src = src
            with self._lock:
                self._all.append(src)
        return src

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.source().query(sql, args)
        except BadInput:
            raise
        except Exception:
            # A dropped connection (a restarted PostgreSQL): reconnect once.
            self._local.src = None
            return self.source().query(sql, args)

    def max_seq(self) -> int:
        return int(self.query("SELECT MAX(seq) FROM ledger_records")[0][0] or 0)

    def records(self, where: str = "", args: Sequence[Any] = (), order: str = "seq", limit: int | None = None
                ) -> list[tuple[Record, bytes]]:
        """Records (decoded from their signed bodies) with their stored hash bytes."""
        sql = f"SELECT {_COLS} FROM ledger_records" + (f" WHERE {where}" if where else "") + f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for seq, body, h, sig in self.query(sql, args):
            try:
                out.append((Record.from_row(int(seq), bytes(body), bytes(h), bytes(sig)), bytes(h)))
            except ValueError:  # a body that is not JSON: shown as damaged by the caller's check
                out.append((_damaged(int(seq), bytes(body), bytes(h), bytes(sig)), bytes(h)))
        return out

    def by_seqs(self, seqs: Sequence[int]) -> list[tuple[Record, bytes]]:
        out: list[tuple[Record, bytes]] = []
        wanted = sorted(set(seqs))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            out += self.records(f"seq IN ({', '.join('?' * len(chunk))})", chunk)
        return out

    def iter_columns(self, first: int, last: int, step: int = 50_000) -> Iterator[tuple[int, bytes, Any, Any]]:
        """``(seq, hash, run_id, kind)`` of records first..last, in seq order, read in ranges."""
        lo = first
        while lo <= last:
            hi = min(last, lo + step - 1)
            for seq, h, run_id, kind in self.query(
                "SELECT seq, hash, run_id, kind FROM ledger_records WHERE seq >= ? AND seq <= ? ORDER BY seq", (lo, hi)
            ):
                yield int(seq), bytes(h), run_id, kind
            lo = hi + 1

    def close(self) -> None:
        with self._lock:
            for src in self._all:
                with contextlib.suppress(Exception):
                    src.close()
            self._all.clear()


def _damaged(seq: int, body: bytes, h: bytes, sig: bytes) -> Record:
    return Record(seq, None, "(not JSON)", "", {}, {}, "", h.hex(), "", sig.hex(), body)


def describe_db(url: str) -> str:
    """The database as messages show it: a SQLite path, or the URL without its password."""
    if url.startswith("sqlite") or "://" not in url:
        return str(Path(sqlite_path(url)))
    return redact(url)
