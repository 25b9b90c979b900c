"""A team's home for the web view: passing, blocked, waived, approved, promoted and monitored models.

The runs are stored as signed records (as ``tests/policies/test_cli.py`` ``store_run`` does: the
records a run writes, with its evidence and the model bytes in the artifact store); everything a
person does afterwards goes through the real command line: ``assay gate``, ``waive``,
``approve``, ``models promote`` and ``audit checkpoint``. Monitor results are the ``monitor``
records ``assay monitor`` writes, with the same payload shape. One team is built per backend
(SQLite in the home, a fresh PostgreSQL schema) and module, and served by ``assay serve`` in a
subprocess on a free loopback port.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from assay.audit.ledger import Ledger
from assay.storage.settings import Settings
from tests.audit.conftest import PG_BASE, _pg_connect
from tests.conftest import Result, run_assay
from tests.policies.conftest import GOOD_EVIDENCE

EVIL = "<script>alert(1)</script>"
TEAM_POLICY = 'extends = "assay:standard"\nname = "team"\napprovals = 1\n'
SPEC = """\
[project]
name = "{name}"

[data]
source = "{name}.csv"
target = "default"
task = "binary"
sensitive = ["sex", "race"]

[gate]
policy = "{policy}"
"""


@dataclass
class Team:
    """A home, its database and the runs in it (role → run id, model ref, artifact)."""

    home: Path
    db: str
    project: Path
    runs: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(self.home, self.db)

    def assay(self, *args: str, check: bool = True) -> Result:
        result = run_assay(*args, home=self.home, cwd=self.project, env={"ASSAY_DB_URL": self.db}, timeout=300)
        if check:
            assert result.returncode in (0, 1), result.stderr[-3000:]
        return result

    def ledger(self) -> Ledger:
        return Ledger.open(self.settings)


def _policy(ref: str, base: Path) -> Any:
    from assay.commands.governance import collect_packs
    from assay.kernel.manager import make_plugin_manager
    from assay.policies import load_policy

    return load_policy(ref, base, collect_packs(make_plugin_manager()))


def add_run(team: Team, role: str, run_id: str, name: str, evidence: dict[str, Any], policy: str,
            model_bytes: bytes, data_fingerprint: str, *, project_shown: str | None = None) -> None:
    """The records ``assay run`` writes for one run (without its verdict: ``assay gate`` adds it)."""
    from assay.kernel.spec import RunSpec
    from assay.storage.store import ArtifactStore, RunRow, RunStore

    spec_dir = team.project / name.replace("<", "_").replace(">", "_").replace("/", "_")
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec_path = spec_dir / "assay.toml"
    spec_name = "escaped" if project_shown else name
    spec_path.write_text(SPEC.format(name=spec_name, policy=policy), encoding="utf-8")
    spec = RunSpec.model_validate(tomllib.loads(spec_path.read_text()))
    shown = project_shown or name
    store = RunStore(team.settings)
    store.create_run(RunRow(run_id=run_id, project=shown, status="passed", spec_path=str(spec_path),
                            spec_json=spec.model_dump_json(), spec_hash=spec.hash))
    artifact = ArtifactStore(team.home).put_bytes(model_bytes)
    version = store.add_model_version(shown, run_id, artifact, "hist_gradient_boosting")
    policy_doc = _policy(policy, spec_dir)
    evidence = copy.deepcopy(evidence)
    evidence.update(run_id=run_id, policy_hash=policy_doc.hash, spec_hash=spec.hash, project=shown)
    evidence["data"].update(fingerprint=data_fingerprint, source=f"{name}.csv")
    evidence["model"].update(ref=version.ref, artifact=artifact, name=shown, version=version.version)
    store.update_run(run_id, evidence_json=json.dumps(evidence))
    ledger = team.ledger()
    ledger.append_many([
        (run_id, "run_started", {"project": shown, "spec": spec.model_dump(mode="json"), "spec_hash": spec.hash,
                                 "spec_path": str(spec_path),
                                 "policy": {"name": policy_doc.name, "hash": policy_doc.hash,
                                            "approvals": policy_doc.approvals, "document": dict(policy_doc.document)}}),
        (run_id, "data", {"fingerprint": data_fingerprint, "source": f"{name}.csv", "rows": 4000}),
        (run_id, "split", {"strategy": "stratified", "train": {"rows": 3000, "fingerprint": "sha256:" + "1" * 64},
                           # each run its own holdout, as the evidence's selection section says (one evaluation)
                           "test": {"rows": 1000, "fingerprint": "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()}}),
        (run_id, "model", {"name": shown, "version": version.version, "family": "hist_gradient_boosting",
                           "params": {}, "artifact": artifact, "predictions_hash": "sha256:" + "0" * 64}),
        (run_id, "evidence", evidence),
    ])
    ledger.close()
    model_file = team.project / "deploy" / f"{role}.skops"
    model_file.parent.mkdir(exist_ok=True)
    model_file.write_bytes(model_bytes)
    team.runs[role], team.models[role], team.artifacts[role], team.files[role] = run_id, version.ref, artifact, \
        model_file


def finish(team: Team, role: str, status: str) -> None:
    ledger = team.ledger()
    ledger.append(team.runs[role], "run_finished", {"status": status, "decision": "pass" if status == "passed"
                                                     else "block"})
    ledger.close()


def monitor_payload(ref: str, artifact: str, share: float, roc: float, i: int) -> dict[str, Any]:
    beyond = share > 0.3
    rules = [{"id": "drift", "path": "drift.share_drifted", "op": "<=", "threshold": 0.3,
              "outcome": "block" if beyond else "pass", "measured": share,
              "reason": f"drift.share_drifted = {share} {'exceeds' if beyond else 'meets'} <= 0.3"}]
    return {"monitor_id": f"01MON{i:04d}", "status": "beyond_policy" if beyond else "stable", "model": ref,
            "artifact": artifact,
            "evidence": {"kind": "monitor", "metric": "roc_auc", "model": {"ref": ref, "artifact": artifact},
                         "metrics": {"test": {"roc_auc": 0.92}, "current": {"roc_auc": roc}},
                         "drift": {"share_drifted": share, "drifted": int(share * 10), "tested": 10,
                                   "prediction": {"drifted": beyond, "score": share / 2}},
                         "data": {"current": {"source": f"/data/batch-{i}.csv", "rows": 1500,
                                              "fingerprint": f"sha256:{i:064d}", "labelled": True}}},
            "verdict": {"decision": "block" if beyond else "pass", "rules": rules,
                        "reasons": [f"drift: {rules[0]['reason']}"] if beyond else []}}


def build_team(root: Path, db: str | None) -> Team:
    home = root / "home"
    team = Team(home, db or f"sqlite:///{home / 'assay.db'}", root / "project")
    team.project.mkdir(parents=True)
    (team.project / "team.toml").write_text(TEAM_POLICY, encoding="utf-8")
    team_policy = str(team.project / "team.toml")
    leaky = copy.deepcopy(GOOD_EVIDENCE)
    leaky["checks"]["leakage"]["duplicates"].update(status="fail", value=37,
                                                     message="37 test rows also appear in the training data")
    shared_data = "sha256:" + "d" * 64
    add_run(team, "passing", "01JWEBPASS0000000000000001", "credit", GOOD_EVIDENCE, team_policy, b"credit v1",
            shared_data)
    add_run(team, "blocked", "01JWEBBLOCK000000000000001", "churn", leaky, "assay:standard", b"churn v1",
            shared_data)
    add_run(team, "waived", "01JWEBWAIVE000000000000001", "fraud", leaky, "assay:standard", b"fraud v1",
            "sha256:" + "e" * 64)
    add_run(team, "escaped", "01JWEBEVIL0000000000000001", "escaped", GOOD_EVIDENCE, "assay:standard",
            b"evil v1", "sha256:" + "f" * 64, project_shown=EVIL)
    for role in ("passing", "blocked", "waived", "escaped"):
        team.assay("gate", team.runs[role])
    finish(team, "passing", "passed")
    finish(team, "blocked", "blocked")
    finish(team, "waived", "blocked")
    finish(team, "escaped", "passed")
    waived = team.assay("waive", "no-leakage[duplicates]", "--model", team.models["waived"], "--reason",
                        f"repeat customers, reviewed {EVIL}", "--approver", "dana", "--expires", "2999-12-31")
    assert waived.returncode == 0, waived.stderr
    assert team.assay("gate", team.runs["waived"]).returncode == 0
    approved = team.assay("approve", team.models["passing"], "--approver", "rita", "--comment", "reviewed the fairness")
    assert approved.returncode == 0, approved.stderr
    promoted = team.assay("models", "promote", team.models["passing"], "--to", "production")
    assert promoted.returncode == 0, promoted.stderr
    assert team.assay("models", "promote", team.models["waived"], "--to", "staging").returncode == 0
    ledger = team.ledger()
    for i, (share, roc) in enumerate(((0.1, 0.91), (0.2, 0.89), (0.5, 0.84))):
        ledger.append(team.runs["passing"], "monitor",
                      monitor_payload(team.models["passing"], team.artifacts["passing"], share, roc, i))
    ledger.close()
    assert team.assay("audit", "checkpoint").returncode == 0
    return team


@pytest.fixture(scope="module")
def sqlite_team(tmp_path_factory: pytest.TempPathFactory) -> Team:
    return build_team(tmp_path_factory.mktemp("team-sqlite"), None)


@pytest.fixture(scope="module")
def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for the module (``pg_url`` of tests/audit, module-scoped)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = _pg_connect()
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture(scope="module")
def pg_team(tmp_path_factory: pytest.TempPathFactory, pg_schema_url: str) -> Team:
    return build_team(tmp_path_factory.mktemp("team-pg"), pg_schema_url)


# --------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    process: subprocess.Popen[str]
    log: Path
    token: str | None = None

    def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path)
        if token or self.token:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def status(self) -> dict[str, Any]:
        code, _, body = self.get("/api/status")
        assert code == 200, body
        return dict(json.loads(body)["status"])

    def wait_verified(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["state"] != "verifying" or status["verified_size"]:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"not verified after {timeout}s: {status}")
            time.sleep(0.2)


def start_server(team: Team, tmp: Path, *extra: str, token: str | None = None,
                 command: list[str] | None = None, wait: bool = True) -> Server:
    """``assay serve`` (or ``command`` given the same arguments) on a free port; verified first unless
    ``wait`` is false or a token is needed."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    args = [*(command or [sys.executable, "-m", "assay"]), "--home", str(team.home), "--db", team.db, "serve",
            "--listen", f"127.0.0.1:{port}", "--no-access-log", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("ASSAY_DB_URL", "ASSAY_HOME")}
    handle = log.open("w")
    process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, text=True, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log, token)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"assay serve did not start: {log.read_text()}") from None
            time.sleep(0.2)
    if token is None and wait:
        server.wait_verified()
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=20)
