"""Ledger API, keys (permissions, passphrase, CI key, rotation), in-toto export, CLI, verifier imports."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from assay.audit import verify as V
from assay.audit.dsse import INTOTO_PAYLOAD_TYPE, verify_envelope
from assay.audit.export import intoto_envelope
from assay.audit.format import record_hash
from assay.audit.ledger import Ledger
from assay.errors import BadInput
from assay.storage.settings import Settings

from .conftest import run_assay


def _sqlite(tmp_path: Path) -> Settings:
    return Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'assay.db'}")


def test_records_are_canonical_chained_and_signed(ledger: Ledger, settings: Settings) -> None:
    os.environ.pop("GITHUB_RUN_ID", None)
    rec = ledger.append("run-1", "metrics", {"auc": 0.93, "bad": float("nan"), "big": 2**70})
    assert rec.seq == 2 and rec.kind == "metrics" and rec.run_id == "run-1"
    first = ledger.records()[0]
    assert first.kind == "key_added" and first.payload["key_id"] == rec.key_id
    assert rec.payload == {"auc": 0.93, "bad": {"$float": "nan"}, "big": {"$int": str(2**70)}}
    assert set(rec.actor) == {"user", "host", "ci_job"}
    doc = json.loads(rec.body)
    assert rfc8785.dumps(doc) == rec.body  # exact canonical bytes are stored
    assert bytes.fromhex(rec.hash) == record_hash(bytes.fromhex(rec.prev_hash), rec.body)
    assert rec.prev_hash == first.hash
    stored = ledger.records(run_id="run-1")
    assert stored == [rec] and stored[0].body == rec.body
    batch = ledger.append_many([("run-2", "data", {"i": i}) for i in range(5)])
    assert [r.seq for r in batch] == [3, 4, 5, 6, 7]
    assert [r.seq for r in ledger.records(kind="data")] == [3, 4, 5, 6, 7]
    with pytest.raises(BadInput):
        ledger.append("r", "key_added", {})
    with pytest.raises(BadInput):
        ledger.append("r", "data", {"x": object()})
    assert ledger.size() == 7


def test_runs_summary(tmp_path: Path) -> None:
    led = Ledger.open(_sqlite(tmp_path))
    led.append("a", "run_started", {})
    led.append("b", "run_started", {})
    led.append("a", "run_finished", {})
    led.append("b", "data", {})
    led.append("c", "run_started", {})
    led.append("c", "run_failed", {"error": "boom"})
    runs = {r["run_id"]: r for r in led.runs()}
    assert runs["a"]["status"] == "finished" and runs["a"]["complete"]
    assert runs["b"]["status"] == "incomplete" and not runs["b"]["complete"] and runs["b"]["last_kind"] == "data"
    assert runs["c"]["status"] == "failed" and runs["c"]["first_kind"] == "run_started"


def test_ci_job_in_actor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "12345")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    led = Ledger.open(_sqlite(tmp_path))
    assert led.append("r", "data", {}).actor["ci_job"] == "GITHUB_RUN_ID=12345/2"


def test_private_key_permissions_refused(tmp_path: Path) -> None:
    s = _sqlite(tmp_path)
    led = Ledger.open(s)
    key_id = led.append("r", "data", {}).key_id
    path = s.home / "keys" / f"{key_id}.key"
    assert (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(BadInput, match=r"chmod 600 .*\.key") as exc:
        Ledger.open(s).append("r", "data", {})
    assert "PRIVATE KEY" not in exc.value.message


def test_passphrase_protected_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_KEY_PASSPHRASE", "correct horse")
    s = _sqlite(tmp_path)
    rec = Ledger.open(s).append("r", "data", {})
    pem = (s.home / "keys" / f"{rec.key_id}.key").read_bytes()
    assert b"ENCRYPTED" in pem
    monkeypatch.setenv("ASSAY_KEY_PASSPHRASE", "wrong")
    with pytest.raises(BadInput, match="wrong ASSAY_KEY_PASSPHRASE"):
        Ledger.open(s).append("r", "data", {})
    monkeypatch.delenv("ASSAY_KEY_PASSPHRASE")
    with pytest.raises(BadInput, match="passphrase-protected"):
        Ledger.open(s).append("r", "data", {})


def test_ci_signing_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    monkeypatch.setenv("ASSAY_SIGNING_KEY", pem.decode())
    s = _sqlite(tmp_path)
    rec = Ledger.open(s).append("r", "data", {})
    assert rec.key_id == __import__("hashlib").sha256(key.public_key().public_bytes_raw()).hexdigest()
    assert not list((s.home / "keys").glob("*.key"))  # CI key never written to the home
    assert V.verify_ledger(s.db_url, trust=s.home / "keys" / "trust.json").ok
    path = tmp_path / "ci.pem"
    path.write_bytes(pem)
    path.chmod(0o640)
    monkeypatch.setenv("ASSAY_SIGNING_KEY", str(path))
    with pytest.raises(BadInput, match="chmod 600"):
        Ledger.open(s).append("r", "data", {})
    path.chmod(0o600)
    assert Ledger.open(s).append("r", "data", {}).key_id == rec.key_id


def test_rotation_and_revocation_windows(tmp_path: Path) -> None:
    s = _sqlite(tmp_path)
    led = Ledger.open(s)
    old = led.append("r", "data", {}).key_id
    rot, new = led.rotate_key()
    after = led.append("r", "data", {})
    assert after.key_id == new.key_id != old and rot.key_id == old
    revoked = led.revoke_key(old, "retired")
    trust = {k.key_id: k for k in led.keys.trusted()}
    assert trust[old].valid_until == rot.seq and trust[old].revoked_at == revoked.seq
    assert trust[new.key_id].valid_from == rot.seq + 1
    assert V.verify_ledger(s.db_url, trust=led.keys.trust_path).ok
    # An auditor who only trusts the original key follows the rotation through the ledger.
    only_old = tmp_path / "old-trust.json"
    doc = json.loads(led.keys.trust_path.read_text())
    doc["keys"] = [k for k in doc["keys"] if k["key_id"] == old]
    doc["keys"][0].update(valid_until=None, revoked_at=None)
    only_old.write_text(json.dumps(doc))
    assert V.verify_ledger(s.db_url, trust=only_old).ok
    with pytest.raises(BadInput, match="active signing key"):
        led.revoke_key(new.key_id)


def _model_run(led: Ledger, run_id: str = "run-x") -> str:
    digest = "ab" * 32
    led.append(run_id, "run_started", {})
    led.append(run_id, "model", {"name": "credit-risk", "version": 3, "artifact": f"sha256:{digest}", "family": "hgb"})
    led.append(run_id, "evidence", {"policy_hash": "sha256:" + "cd" * 32, "metrics": {"test": {"roc_auc": 0.91}},
                                    "checks": {"leakage": {"dup": {"status": "pass"}}}, "bulky": [1] * 10})
    led.append(run_id, "verdict", {"decision": "pass", "rules": [{"id": "auc", "outcome": "pass"}]})
    led.append(run_id, "run_finished", {})
    return digest


def test_intoto_export_verifies_with_securesystemslib(tmp_path: Path) -> None:
    s = _sqlite(tmp_path)
    led = Ledger.open(s)
    digest = _model_run(led)
    env = intoto_envelope(led, "run-x")
    key = led.signer()
    assert env["payloadType"] == INTOTO_PAYLOAD_TYPE and env["signatures"][0]["keyid"] == key.key_id
    sslib_key = SSlibKey(key.key_id, "ed25519", "ed25519", {"public": key.public_raw.hex()})
    verified = Envelope.from_dict(copy.deepcopy(env)).verify([sslib_key], 1)  # from_dict mutates its input
    assert key.key_id in verified
    statement = json.loads(verify_envelope(env, {key.key_id: key.public_raw}))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": "credit-risk@3", "digest": {"sha256": digest}}]
    pred = statement["predicate"]
    assert pred["policy_hash"] == "sha256:" + "cd" * 32 and pred["verdict"]["decision"] == "pass"
    assert pred["evidence"]["metrics"]["test"]["roc_auc"] == 0.91 and "bulky" not in pred["evidence"]
    tampered = dict(env, payload=env["payload"][:-4] + "AAA=")
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Envelope.from_dict(copy.deepcopy(tampered)).verify([sslib_key], 1)
    with pytest.raises(BadInput, match="no model record"):
        led.append("run-y", "run_started", {})
        intoto_envelope(led, "run-y")


def test_cli_end_to_end(tmp_path: Path) -> None:
    s = _sqlite(tmp_path)
    init = run_assay("keys", "init", "--json", home=s.home, db=s.db_url)
    assert init.returncode == 0, init.stderr
    key_id = json.loads(init.stdout)["key_id"]
    led = Ledger.open(s)
    _model_run(led)
    log = run_assay("audit", "log", "--run", "run-x", "--json", home=s.home, db=s.db_url)
    assert log.returncode == 0, log.stderr
    out = json.loads(log.stdout)
    assert [r["kind"] for r in out["records"]] == ["run_started", "model", "evidence", "verdict", "run_finished"]
    assert out["run"]["status"] == "finished"
    cp = tmp_path / "cp.note"
    made = run_assay("audit", "checkpoint", "--output", str(cp), home=s.home, db=s.db_url)
    assert made.returncode == 0, made.stderr
    assert cp.read_text().split("\n")[1] == "6"
    led.append("run-z", "data", {})
    ver = run_assay("audit", "verify", "--checkpoint", str(cp), "--json", home=s.home, db=s.db_url)
    assert ver.returncode == 0 and json.loads(ver.stdout)["checked"] == 7, ver.stdout + ver.stderr  # full, and extends cp
    since = run_assay("audit", "verify", "--since-checkpoint", str(cp), "--json", home=s.home, db=s.db_url)
    assert since.returncode == 0 and json.loads(since.stdout)["mode"] == "since-checkpoint", since.stdout + since.stderr
    exp = tmp_path / "att.json"
    done = run_assay("audit", "export", "run-x", "--format", "intoto", "--output", str(exp), home=s.home, db=s.db_url)
    assert done.returncode == 0 and json.loads(exp.read_text())["signatures"][0]["keyid"] == key_id
    listed = run_assay("keys", "list", "--json", home=s.home, db=s.db_url)
    assert json.loads(listed.stdout)["keys"][0]["active"] is True
    rot = run_assay("keys", "rotate", "--json", home=s.home, db=s.db_url)
    assert rot.returncode == 0, rot.stderr
    rev = run_assay("keys", "revoke", key_id, "--json", home=s.home, db=s.db_url)
    assert rev.returncode == 0, rev.stderr
    bad = run_assay("keys", "revoke", "nope", home=s.home, db=s.db_url)
    assert bad.returncode == 2 and "unknown key id" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_assay("audit", "verify", "--checkpoint", str(tmp_path / "nope.note"), home=s.home, db=s.db_url)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    final = run_assay("audit", "verify", "--json", home=s.home, db=s.db_url)
    assert final.returncode == 0 and json.loads(final.stdout)["ok"]


def test_standalone_verifier_imports_only_stdlib_and_cryptography(tmp_path: Path) -> None:
    s = _sqlite(tmp_path)
    Ledger.open(s).append("r", "data", {})
    code = (
        "import sys; from assay.audit import verify; rc = verify.main(sys.argv[1:]);"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'sqlmodel', 'pydantic', 'rfc8785', 'click', 'sklearn', 'pandas', 'numpy', 'psycopg', 'rich'));"
        "print(heavy); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, s.db_url, "--trust", str(s.home / "keys" / "trust.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("[]"), proc.stdout
    mod = subprocess.run([sys.executable, "-m", "assay.audit.verify", s.db_url, "--json"], capture_output=True, text=True)
    assert mod.returncode == 0 and json.loads(mod.stdout)["trust"].startswith("ledger genesis key")
    bad = subprocess.run([sys.executable, "-m", "assay.audit.verify", str(tmp_path / "none.db")], capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_plugin_record_hook(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from assay.audit.plugin import LedgerRecorder

    plugin = LedgerRecorder()
    s = _sqlite(tmp_path)
    run = SimpleNamespace(run_id="run-p", settings=s)
    seq = plugin.record(run, SimpleNamespace(kind="run_started", payload={"a": 1}))
    seq2 = plugin.record(run, SimpleNamespace(kind="run_finished", payload={}))
    assert seq2 == seq + 1 and plugin.ledger_for(s) is plugin.ledger_for(s)
    assert [r["status"] for r in Ledger.open(s).runs()] == ["finished"]
