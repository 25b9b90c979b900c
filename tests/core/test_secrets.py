"""Passwords in database URLs never reach a record, the runs table, an export, a report or a message.

The data lives in a real PostgreSQL table (a sample of the bundled Adult data); the URLs carry
planted passwords (the test server trusts every connection, so any password logs in). After a
run, every byte the home holds and every byte each command printed or wrote is searched for them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Result, run_assay

PG_BASE = os.environ.get("ASSAY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SOURCE_SECRET = "PLANTED-s3cret"
DOMAIN_SECRET = "PLANTED-d0main"
DB_SECRET = "PLANTED-ledg3r"
SECRETS = (SOURCE_SECRET, DOMAIN_SECRET, DB_SECRET)

pytestmark = pytest.mark.postgres


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, _, host = rest.partition("@")
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"


@pytest.fixture
def schema() -> Iterator[str]:
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


def _url(schema: str, password: str, app: str = "") -> str:
    extra = f"&application_name={app}" if app else ""
    return _with_password(PG_BASE, password) + f"?options=-csearch_path%3D{schema}{extra}"


def _load_adult_table(schema: str, rows: int = 2500) -> None:
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sqlalchemy import create_engine

    frame = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv", na_values=["?"], skipinitialspace=True)
    sample, _ = train_test_split(frame, train_size=rows, stratify=frame["income"], random_state=0)
    engine = create_engine(f"{PG_BASE}?options=-csearch_path%3D{schema}")
    try:
        sample.drop(columns=["fnlwgt", "split"]).to_sql("adult", engine, index=False)
    finally:
        engine.dispose()


SPEC = """\
[project]
name = "adult-pg"

[data]
source = "{source}"
query = "SELECT * FROM adult"
target = "income"
task = "binary"
sensitive = ["sex"]
target_domain = "{domain}"

[split]
cv_folds = 2

[train]
candidates = ["logistic_regression"]
tuning = "none"
"""


def _assert_clean(label: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{label} holds the planted password {secret!r}"


def _assert_output_clean(label: str, result: Result) -> None:
    _assert_clean(f"{label} stdout", result.stdout)
    _assert_clean(f"{label} stderr", result.stderr)


def _assert_tree_clean(root: Path) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing under {root}"
    for path in files:
        _assert_clean(str(path), path.read_bytes())


def _dump_schema(schema: str) -> str:
    """Every row of every table in the schema, as text."""
    import psycopg

    with psycopg.connect("postgresql://" + PG_BASE.split("://", 1)[1], autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)).fetchall()]
        assert "ledger_records" in tables and "runs" in tables, tables
        return "\n".join(repr(row) for t in tables for row in conn.execute(f'SELECT * FROM {schema}."{t}"'))


def test_passwords_reach_no_record_table_export_report_or_message(tmp_path: Path, schema: str) -> None:
    _load_adult_table(schema)
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "assay.toml"
    spec.write_text(SPEC.format(source=_url(schema, SOURCE_SECRET), domain=_url(schema, DOMAIN_SECRET, "domain")),
                    encoding="utf-8")
    home = tmp_path / "home"
    outputs = tmp_path / "out"
    outputs.mkdir()

    ran = run_assay("run", str(spec), "--json", home=home)
    assert ran.returncode in (0, 1), ran.stderr
    _assert_output_clean("assay run", ran)
    run_id = ran.json["run_id"]
    assert ran.json["status"] in ("passed", "blocked")

    commands = {
        "audit export": ("audit", "export", run_id, "--format", "intoto", "--output", str(outputs / "run.intoto.json")),
        "report": ("report", run_id, "--output", str(outputs / "report.html")),
        "audit log": ("audit", "log", "--json"),
        "audit runs": ("audit", "runs", "--json"),
        "models show": ("models", "show", "adult-pg@1", "--json"),
        "lineage": ("lineage", run_id, "--json"),
        "gate": ("gate", run_id, "--format", "json"),
        "audit verify": ("audit", "verify", "--json"),
        "export stdout": ("audit", "export", run_id, "--format", "intoto"),
    }
    for label, args in commands.items():
        result = run_assay(*args, home=home)
        assert result.returncode in (0, 1), f"{label}: {result.stderr}"
        _assert_output_clean(label, result)
    assert (outputs / "run.intoto.json").stat().st_size > 0 and (outputs / "report.html").stat().st_size > 0

    # the recorded source still says where the data came from, without the password
    show = run_assay("models", "show", "adult-pg@1", "--json", home=home).json
    assert show["data"]["source"].startswith("postgresql+psycopg://postgres:***@127.0.0.1")

    # replay reads the real URL from the spec file the run recorded, and reproduces the run
    replayed = run_assay("replay", run_id, "--json", home=home)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.json["outcome"] == "reproduced"
    _assert_output_clean("replay", replayed)

    _assert_tree_clean(home)
    _assert_tree_clean(outputs)

    # with the spec file gone there is no password to connect with: replay says so
    spec.unlink()
    gone = run_assay("replay", run_id, home=home)
    assert gone.returncode == 2, gone.stdout + gone.stderr
    assert str(spec) in gone.stderr and "redacted" in gone.stderr
    _assert_output_clean("replay without spec", gone)
    _assert_tree_clean(home)


def test_ledger_database_url_password_is_not_stored_or_printed(tmp_path: Path, schema: str) -> None:
    """The same run with the ledger and runs table in PostgreSQL, reached through ASSAY_DB_URL with a password."""
    _load_adult_table(schema, rows=1500)
    spec = tmp_path / "assay.toml"
    spec.write_text(SPEC.format(source=_url(schema, SOURCE_SECRET), domain="").replace('target_domain = ""\n', ""),
                    encoding="utf-8")
    home = tmp_path / "home"
    env = {"ASSAY_DB_URL": _url(schema, DB_SECRET)}
    ran = run_assay("run", str(spec), "--json", home=home, env=env)
    assert ran.returncode in (0, 1), ran.stderr
    _assert_output_clean("assay run", ran)
    run_id = ran.json["run_id"]
    for args in (("audit", "verify"), ("audit", "runs"), ("report", run_id, "--output", str(tmp_path / "r.html")),
                 ("gate", run_id), ("models", "list"), ("replay", "no-such-run")):
        result = run_assay(*args, home=home, env=env)
        _assert_output_clean(" ".join(args), result)
    _assert_clean("PostgreSQL tables", _dump_schema(schema))
    _assert_tree_clean(home)
    _assert_clean("report", (tmp_path / "r.html").read_bytes())


@pytest.mark.parametrize("args", [("run", "SPEC", "--json"), ("audit", "runs"), ("models", "list"),
                                  ("replay", "01ABCDEF"), ("report", "01ABCDEF", "--output", "r.html")])
def test_bad_db_url_exits_2_without_the_password(tmp_path: Path, adult_small: Path, args: tuple[str, ...]) -> None:
    bad = "postgresql+psycopg://u:PLANTED@127.0.0.1:1/x"
    args = tuple(str(adult_small / "assay.toml") if a == "SPEC" else a for a in args)
    for how in ({"ASSAY_DB_URL": bad}, None):
        extra = () if how else ("--db", bad)
        result = run_assay(*extra, *args, home=tmp_path / "home", env=how, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "PLANTED" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert "127.0.0.1" in result.stderr and "u:***@" in result.stderr, result.stderr


@pytest.mark.parametrize("bad", ["mysql://u:PLANTED@127.0.0.1:1/x", "postgresql+nodriver://u:PLANTED@h/x",
                                 "postgresql+psycopg://u:PLANTED@127.0.0.1:notaport/x",
                                 "postgresql://u:PLAN/TED@127.0.0.1:1/x?password=PLANTED"])
def test_unusable_db_urls_exit_2_without_the_password(tmp_path: Path, bad: str) -> None:
    result = run_assay("--db", bad, "models", "list", home=tmp_path / "home", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PLAN" not in result.stdout + result.stderr, result.stderr
