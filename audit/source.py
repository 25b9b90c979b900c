"""Reading a ledger database read-only: the ``Source`` over SQLite (standard library) or PostgreSQL.

Also what a message may show of a database URL (``redact``: never its password) and where a
``sqlite:///PATH`` URL points (``sqlite_path``). Nothing here judges a record: the checks are in
``assay.audit.records``, ``assay.audit.keystate`` and ``assay.audit.checkpoints``.
"""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from assay.audit.errors import BadInput
from assay.audit.format import KEY_KINDS
from assay.audit.merkle import ProofError, leaf_hash

Row = tuple[int, Any, Any, bytes, bytes, bytes, bytes, bytes]  # seq, run_id, kind, key_id, prev, hash, sig, body


def origin_of(ledger_id: str) -> str:
    """The origin line of ledger ``ledger_id``'s checkpoints."""
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


def blob(value: Any) -> bytes:
    """A binary column's bytes. SQLite lets an editor change a column's type: text is taken as the
    UTF-8 it is stored as, anything else (NULL, a number) as no bytes, so the checks report the
    record instead of the verifier failing on it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return value.encode("utf-8") if isinstance(value, str) else b""


def _row(r: Sequence[Any]) -> Row:
    try:
        return (int(r[0]), r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7]))
    except TypeError:  # a binary column that is not binary: only an edit of the database does that
        return (int(r[0]), r[1], r[2], blob(r[3]), blob(r[4]), blob(r[5]), blob(r[6]), blob(r[7]))


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

    def origin(self) -> str | None:
        """The checkpoint origin of the ledger this database holds (None: it names no ledger id)."""
        ledger_id = self.meta("ledger_id")
        return origin_of(ledger_id) if ledger_id else None

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
                yield _row(r)
        finally:
            cur.close()

    def row(self, seq: int) -> Row | None:
        rows = self.query(f"SELECT {self._COLS} FROM ledger_records WHERE seq = ?", (seq,))
        if not rows:
            return None
        r = rows[0]
        return _row(r)

    def key_rows(self, max_seq: int) -> list[Row]:
        kinds = sorted(KEY_KINDS)
        rows = self.query(
            f"SELECT {self._COLS} FROM ledger_records WHERE kind IN (?, ?, ?) AND seq <= ? ORDER BY seq",
            (*kinds, max_seq),
        )
        return [
            _row(r) for r in rows
        ]

    def stored_node(self, level: int, idx: int) -> bytes:
        """A stored perfect-subtree hash (level 0: the leaf of record idx+1). Untrusted until proven."""
        if level == 0:
            rows = self.query("SELECT hash FROM ledger_records WHERE seq = ?", (idx + 1,))
            if not rows:
                raise ProofError(f"record {idx + 1} is missing")
            return leaf_hash(blob(rows[0][0]))
        rows = self.query("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?", (level, idx))
        if not rows:
            raise ProofError(f"stored Merkle node ({level}, {idx}) is missing")
        return blob(rows[0][0])

    def close(self) -> None:
        self.conn.close()
