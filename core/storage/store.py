"""Run state: the runs table, the model registry and the content-addressed artifact store.

Tables live in the same database as the audit ledger (SQLite in the assay home by
default, PostgreSQL for teams). These rows are a convenient index; the ledger is the
record of truth that auditors verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Field, Session, SQLModel, create_engine, select

from assay.errors import BadInput
from assay.storage.settings import Settings, redact_url


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"

    run_id: str = Field(primary_key=True)
    project: str = Field(index=True)
    status: str = "running"  # running | passed | blocked | errored | killed (its process died without a word)
    spec_path: str = ""
    spec_json: str = "{}"
    spec_hash: str = ""
    evidence_json: str | None = None
    verdict_json: str | None = None
    error: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    pid: int | None = None  # the process running it, on ``host``: a running row whose process is gone was killed
    host: str | None = None
    pid_started: int | None = None  # when that process started (clock ticks after boot): tells a reused pid

    @property
    def evidence(self) -> dict[str, Any] | None:
        return json.loads(self.evidence_json) if self.evidence_json else None

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self.spec_json)

    @property
    def verdict(self) -> dict[str, Any] | None:
        return json.loads(self.verdict_json) if self.verdict_json else None


class ModelVersionRow(SQLModel, table=True):
    __tablename__ = "model_versions"

    name: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    run_id: str = Field(index=True)
    artifact: str = Field(index=True)  # sha256:HEX of the stored model file
    family: str = ""
    stage: str = "none"  # none | staging | production | archived
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@cache
def engine_for(db_url: str) -> Engine:
    """One engine per database URL per process (SQLite in WAL mode)."""
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(db_url, connect_args={"timeout": 60})

        @sa_event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

    else:
        try:
            engine = create_engine(db_url, pool_pre_ping=True)
        except Exception as exc:  # an unparseable URL or a missing driver
            raise BadInput(f"--db / ASSAY_DB_URL: cannot use database URL {redact_url(db_url)}: "
                           f"{redact_url(str(exc))}") from None
    try:
        SQLModel.metadata.create_all(engine, tables=[RunRow.__table__, ModelVersionRow.__table__])  # type: ignore[attr-defined]
    except DBAPIError as exc:  # unreachable server, refused login, no permission to create tables
        engine.dispose()
        reason = " ".join(str(exc.orig).split())
        raise BadInput(f"--db / ASSAY_DB_URL: cannot use database {redact_url(db_url)}: {redact_url(reason)}") from None
    _add_missing_columns(engine)
    return engine


# Columns added to ``runs`` after its first release: (name, SQL type). Older databases gain them on open.
_ADDED_RUN_COLUMNS = (("pid", "INTEGER"), ("host", "VARCHAR"), ("pid_started", "BIGINT"))


def _add_missing_columns(engine: Engine) -> None:
    """Migrate an existing ``runs`` table (SQLite or PostgreSQL) to the current columns."""
    have = {c["name"] for c in inspect(engine).get_columns("runs")}
    for name, sql_type in _ADDED_RUN_COLUMNS:
        if name in have:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}"))
        except DBAPIError:  # another process added it first; anything else is re-raised
            if name not in {c["name"] for c in inspect(engine).get_columns("runs")}:
                raise


def process_started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (Linux /proc); None where that is unknown.

    -1 for a zombie (exited, not yet reaped by its parent).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return -1 if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_gone(row: RunRow) -> bool:
    """True when ``row`` is running but the process recorded as running it no longer exists on this host."""
    if row.status != "running" or not row.pid or row.host != socket.gethostname():
        return False
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        pass
    except OSError:
        return False
    started = process_started(row.pid)
    # a process with that pid but another start time is a newer one that was given the same pid
    return started is not None and row.pid_started is not None and started != row.pid_started


@sa_event.listens_for(RunRow, "load")
def _report_killed(row: RunRow, _context: Any) -> None:
    # Every reader of the table (get_run, list_runs, the ledger cross-checks) sees a dead owner's row as killed;
    # set without history, so the row in the database is left as its owner wrote it.
    if owner_gone(row):
        set_committed_value(row, "status", "killed")


class RunStore:
    """Runs and model versions in the assay database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = engine_for(settings.db_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # runs -------------------------------------------------------------------------
    def create_run(self, row: RunRow) -> None:
        """Insert a new run, owned by this process unless ``row`` names another."""
        if row.pid is None:
            row.pid, row.host, row.pid_started = os.getpid(), socket.gethostname(), process_started(os.getpid())
        with self.session() as s:
            s.add(row)
            s.commit()

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise KeyError(run_id)
            for key, value in values.items():
                setattr(row, key, value)
            s.add(row)
            s.commit()

    def get_run(self, run_id: str) -> RunRow:
        """The run with this id (a unique prefix of at least 6 characters also works)."""
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is None and len(run_id) >= 6:
                rows = s.exec(select(RunRow).where(RunRow.run_id.startswith(run_id))).all()
                if len(rows) == 1:
                    row = rows[0]
            if row is None:
                raise BadInput(f"run {run_id!r} not found in {self.settings.shown_db_url} (list runs with `assay audit log`)")
            return row

    def list_runs(self, project: str | None = None) -> list[RunRow]:
        with self.session() as s:
            query = select(RunRow).order_by(RunRow.started_at)  # type: ignore[arg-type]
            if project:
                query = query.where(RunRow.project == project)
            return list(s.exec(query).all())

    # models -------------------------------------------------------------------------
    def add_model_version(self, name: str, run_id: str, artifact: str, family: str) -> ModelVersionRow:
        with self.session() as s:
            last = s.exec(
                select(ModelVersionRow).where(ModelVersionRow.name == name).order_by(ModelVersionRow.version.desc())  # type: ignore[attr-defined]
            ).first()
            row = ModelVersionRow(name=name, version=(last.version + 1) if last else 1, run_id=run_id,
                                  artifact=artifact, family=family)
            s.add(row)
            s.commit()
            return row

    def model_versions(self, name: str | None = None) -> list[ModelVersionRow]:
        with self.session() as s:
            query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.version)  # type: ignore[arg-type]
            if name:
                query = query.where(ModelVersionRow.name == name)
            return list(s.exec(query).all())

    def resolve_model(self, ref: str, exclude_run: str = "", signed: Any = None) -> ModelVersionRow:
        """Resolve ``NAME@VERSION``, ``NAME@latest`` or ``NAME@<stage>`` (e.g. ``@production``) from the ledger.

        The ledger's model and promotion records decide (``signed``: an ``assay.storage.signed.SignedLedger``,
        opened and verified here when not given); this table's row must agree with them, else a
        Finding names both. ``exclude_run`` leaves out the version that run registered: a run's
        baseline ``NAME@latest`` is the latest model before it, never its own.
        """
        if signed is None:
            from assay.storage.signed import SignedLedger

            signed = SignedLedger.open(self.settings)
        entry = signed.resolve(ref, exclude_run)
        with self.session() as s:
            row = s.get(ModelVersionRow, (entry.name, entry.version))
        signed.check_model_row(entry, row)
        if row is None:  # the index lost it: the ledger's record stands
            row = ModelVersionRow(name=entry.name, version=entry.version, run_id=entry.run_id, artifact=entry.artifact,
                                  family=entry.family, stage=entry.stage)
        return row

    def signed_run(self, ref: str, signed: Any = None) -> RunRow:
        """A run (id, unique prefix, or the run that trained ``NAME@VERSION``) as its signed records say.

        What deciding commands read instead of this table; the table's row is cross-checked.
        """
        if signed is None:
            from assay.storage.signed import SignedLedger

            signed = SignedLedger.open(self.settings)
        if "@" in ref:
            ref = self.resolve_model(ref, signed=signed).run_id
        run_id = signed.resolve_run(ref)
        with self.session() as s:
            table_row = s.get(RunRow, run_id)
        return signed.run_row(run_id, table_row)

    def set_stage(self, name: str, version: int, stage: str) -> ModelVersionRow:
        with self.session() as s:
            if stage == "production":  # one production version per model
                for other in s.exec(select(ModelVersionRow).where(ModelVersionRow.name == name,
                                                                  ModelVersionRow.stage == "production")).all():
                    other.stage = "archived"
                    s.add(other)
            row = s.get(ModelVersionRow, (name, version))
            if row is None:
                raise BadInput(f"model {name}@{version} not found")
            row.stage = stage
            s.add(row)
            s.commit()
            return row


class ArtifactStore:
    """Content-addressed files under ``<home>/artifacts/sha256/``; reads check the hash."""

    def __init__(self, home: Path) -> None:
        self.root = home / "artifacts" / "sha256"

    def path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.root / hexdigest[:2] / hexdigest

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        target = self.path(digest)
        if not target.exists():
            raise BadInput(f"artifact {digest} is not in {self.root}")
        data = target.read_bytes()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            from assay.errors import Finding

            raise Finding(f"artifact {target} was altered: expected {digest}, found {actual}")
        return data
