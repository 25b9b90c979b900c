"""Fixtures for the ledger tests: public vectors, isolated SQLite/PostgreSQL ledgers, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.storage.settings import Settings
from tests.audit.public_vectors import VECTOR_SETS, VECTORS, case_files

ROOT = Path(__file__).resolve().parents[2]
PG_BASE = os.environ.get("ASSAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The public vectors carried in tests/audit/vectors; a missing or empty set fails, never skips."""
    for name, count in VECTOR_SETS.items():
        found = len(case_files(name, "*"))
        if found != count:
            pytest.fail(f"vector set {VECTORS / name} holds {found} files, expected {count}")
    return VECTORS


def _pg_connect() -> Any:
    import psycopg

    try:
        return psycopg.connect("postgresql://" + PG_BASE.split("://", 1)[1], autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL test server is not reachable at {PG_BASE}: {exc} (start it: .ci/run does)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the test database; the URL pins search_path to it. Dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = _pg_connect()
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend (SQLite file in tmp_path, or a fresh PostgreSQL schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'assay.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path, backend_url: str) -> Settings:
    return Settings(home, backend_url)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Any]:
    from assay.audit.ledger import Ledger

    led = Ledger.open(settings)
    yield led
    led.close()


def run_assay(*args: str, home: Path, db: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m assay --home H --db URL ARGS…`` as CI and users run it."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("ASSAY_SIGNING_KEY", "ASSAY_KEY_PASSPHRASE")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "assay", "--home", str(home), "--db", db, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
