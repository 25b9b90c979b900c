"""A run that is killed does not stay ``running``.

SIGTERM and SIGHUP end ``assay run`` through the failure path (a ``run_failed`` record, the row
errored, exit 3). SIGKILL leaves nothing a process can do, so the row records the process that owns
it and readers of the runs table report a running row whose owner is gone as ``killed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.storage.settings import Settings
from tests.conftest import EXAMPLES, run_assay

PG_BASE = os.environ.get("ASSAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Small enough to start quickly, long enough (the full Adult data) to be killed mid-run.
QUICK = ("--set", "train.tuning=none", "--set", 'train.candidates=["logistic_regression"]', "--set", "train.n_jobs=1")


def _runs(db: Path) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT run_id, status, error, pid, host FROM runs").fetchall()
    except sqlite3.Error:  # not created yet
        return []


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, str]:
    """``assay run`` on the Adult example in its own process group; returns once its runs row exists."""
    home = tmp_path / "home"
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "assay", "--home", str(home), "run",
                             str(EXAMPLES / "adult" / "assay.toml"), *QUICK, "--json"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = _runs(home / "assay.db")
        if rows:
            return proc, home, rows[0][0]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    _reap(proc)
    pytest.fail(f"no runs row appeared: {(tmp_path / 'run.log').read_text()}")


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the run's process group (workers outlive a SIGKILLed parent)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _store(home: Path) -> Any:
    from assay.storage.store import RunStore

    return RunStore(Settings.resolve(home))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_terminated_run_is_recorded_as_failed(tmp_path: Path, signum: signal.Signals) -> None:
    proc, home, run_id = _start_run(tmp_path)
    try:
        assert _store(home).get_run(run_id).status == "running"  # a live owner: still running
        time.sleep(1.0)
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    finally:
        _reap(proc)
    output = (tmp_path / "run.log").read_text()
    assert code == 3, output
    assert "Traceback" not in output
    result = json.loads(output.strip().splitlines()[-1])
    assert result["status"] == "errored" and f"killed by {signum.name}" in result["error"]

    [(row_id, status, error, pid, host)] = _runs(home / "assay.db")
    assert (row_id, status) == (run_id, "errored") and f"killed by {signum.name}" in error
    assert pid == proc.pid and host == socket.gethostname()
    assert _store(home).get_run(run_id).status == "errored"

    log = run_assay("audit", "log", "--run", run_id, "--json", home=home)
    assert log.returncode == 0, log.stderr
    records = log.json["records"]
    failed = [r for r in records if r["kind"] == "run_failed"]
    assert len(failed) == 1 and f"killed by {signum.name}" in failed[0]["payload"]["error"]
    assert failed[0]["payload"]["exit_code"] == 3
    runs = run_assay("audit", "runs", "--json", home=home)
    assert [(r["run_id"], r["status"]) for r in runs.json["runs"]] == [(run_id, "failed")]
    verified = run_assay("audit", "verify", "--json", home=home)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_sigkilled_run_reads_as_killed(tmp_path: Path) -> None:
    proc, home, run_id = _start_run(tmp_path)
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        _reap(proc)
    # the row itself says running (nothing could update it) ...
    [(_, status, _, pid, host)] = _runs(home / "assay.db")
    assert (status, pid, host) == ("running", proc.pid, socket.gethostname())
    # ... and every reader reports it killed
    store = _store(home)
    assert store.get_run(run_id).status == "killed"
    assert [(r.run_id, r.status) for r in store.list_runs()] == [(run_id, "killed")]
    runs = run_assay("audit", "runs", "--json", home=home)
    assert runs.returncode == 0, runs.stderr
    [summary] = runs.json["runs"]
    assert (summary["run_id"], summary["status"], summary["complete"]) == (run_id, "incomplete", False)
    replay = run_assay("replay", run_id, home=home)
    assert replay.returncode == 2 and "killed" in replay.stderr, replay.stderr
    listed = run_assay("models", "list", "--json", home=home)
    assert listed.returncode == 0 and listed.json["models"] == [], listed.stderr
    verified = run_assay("audit", "verify", "--json", home=home)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_owner_is_matched_by_pid_host_and_start_time(tmp_path: Path) -> None:
    """A live pid that another process now holds, or a row owned on another host, is judged correctly."""
    from assay.storage.store import RunRow, process_started

    store = _store(tmp_path / "home")
    me, here = os.getpid(), socket.gethostname()
    owners = {"alive": (me, here, process_started(me)), "reused-pid": (me, here, (process_started(me) or 0) + 1),
              "other-host": (me, "elsewhere.example", 1), "unknown-owner": (None, None, None)}
    for name, (pid, host, started) in owners.items():
        store.create_run(RunRow(run_id=name, project="p", pid=pid, host=host, pid_started=started))
    with sqlite3.connect(tmp_path / "home" / "assay.db") as conn:  # a row from before owners were recorded
        conn.execute("UPDATE runs SET pid = NULL, host = NULL, pid_started = NULL WHERE run_id = 'unknown-owner'")
    statuses = {r.run_id: r.status for r in store.list_runs()}
    assert statuses == {"alive": "running", "reused-pid": "killed", "other-host": "running",
                        "unknown-owner": "running"}
    assert store.get_run("reused-pid").status == "killed"
    store.update_run("alive", status="passed")
    assert store.get_run("alive").status == "passed"


# ------------------------------------------------------------------------------- migration

OLD_RUNS_TABLE = """CREATE TABLE runs (
    run_id VARCHAR NOT NULL, project VARCHAR NOT NULL, status VARCHAR NOT NULL, spec_path VARCHAR NOT NULL,
    spec_json VARCHAR NOT NULL, spec_hash VARCHAR NOT NULL, evidence_json VARCHAR, verdict_json VARCHAR,
    error VARCHAR, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, PRIMARY KEY (run_id))"""
OLD_ROW = ("INSERT INTO runs (run_id, project, status, spec_path, spec_json, spec_hash, started_at) "
           "VALUES ('01OLDRUN', 'old', 'running', '', '{}', '', '2024-01-01 00:00:00')")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    import psycopg

    try:
        conn = psycopg.connect("postgresql://" + PG_BASE.split("://", 1)[1], autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL test server is not reachable at {PG_BASE}: {exc}")
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        conn.execute(f"DROP SCHEMA {name} CASCADE")
        conn.close()


def _old_sqlite(tmp_path: Path) -> tuple[str, Any]:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_RUNS_TABLE)
        conn.execute(OLD_ROW)

    def columns() -> set[str]:
        with sqlite3.connect(db) as conn:
            return {r[1] for r in conn.execute("PRAGMA table_info(runs)")}

    return f"sqlite:///{db}", columns


def _old_postgres(schema: str) -> tuple[str, Any]:
    import psycopg

    dsn = "postgresql://" + PG_BASE.split("://", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(OLD_RUNS_TABLE)
        conn.execute(OLD_ROW)

    def columns() -> set[str]:
        with psycopg.connect(dsn) as conn:
            return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_schema = %s AND table_name = 'runs'", (schema,))}

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", columns


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_database_from_before_owners_gains_the_columns(tmp_path: Path, request: pytest.FixtureRequest,
                                                       backend: str) -> None:
    url, columns = _old_sqlite(tmp_path) if backend == "sqlite" else _old_postgres(request.getfixturevalue("pg_schema"))
    assert "pid" not in columns()
    env = {"ASSAY_DB_URL": url}
    for _ in range(2):  # the second open finds the columns in place
        listed = run_assay("models", "list", "--json", home=tmp_path / "home", env=env)
        assert listed.returncode == 0, listed.stderr
    assert {"pid", "host", "pid_started"} <= columns()
    from assay.storage.store import RunStore

    store = RunStore(Settings(tmp_path / "home", url))
    assert store.get_run("01OLDRUN").status == "running"  # no owner recorded: nothing to judge it by
    replay = run_assay("replay", "01OLDRUN", home=tmp_path / "home", env=env)
    assert replay.returncode == 2 and "Traceback" not in replay.stderr, replay.stderr
