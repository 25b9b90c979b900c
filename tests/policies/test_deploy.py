"""Deploy-time decisions under attack: what someone who can write the database, run `assay gate` with
another policy or hold a second key can and cannot make `assay verify` and `promote` accept.

Each test is the attack itself, on a home whose runs carry real signed records (see ``store_run``).
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from assay.storage.signed import digest_of
from tests.audit.conftest import pg_url  # noqa: F401 - the PostgreSQL schema fixture
from tests.policies.conftest import GOOD_EVIDENCE
from tests.policies.test_cli import Stored, store_run

PERMISSIVE = """\
name = "permissive"
[[rules]]
id = "anything-goes"
path = "metrics.test.roc_auc"
op = ">="
threshold = 0.0
"""


def _leaky_evidence() -> dict[str, Any]:
    evidence = copy.deepcopy(GOOD_EVIDENCE)
    evidence["checks"]["leakage"]["duplicates"].update(status="fail", value=37)
    return evidence


def _two_runs(tmp_path: Path, db: str | None = None) -> tuple[Stored, Stored]:
    """A passing model (credit@1) and a blocked one (credit@2) in one home, both gated."""
    good = store_run(tmp_path, GOOD_EVIDENCE, run_id="01JGOOD0001", model_bytes=b"good model", db=db)
    bad = store_run(tmp_path, _leaky_evidence(), run_id="01JLEAKY001", model_bytes=b"leaky model", db=db)
    bad.model_file = bad.model_file.with_name("leaky.skops")
    bad.model_file.write_bytes(b"leaky model")
    good.model_file.write_bytes(b"good model")  # both runs wrote deploy/model.skops
    assert good.assay("gate", good.run_id).returncode == 0
    assert bad.assay("gate", bad.run_id).returncode == 1
    return good, bad


def _sql(stored: Stored, statement: str, *args: Any) -> None:
    """Run SQL on the home's database directly, as someone with the file (or a database login) can."""
    url = stored.settings.db_url
    if url.startswith("sqlite"):
        conn = sqlite3.connect(stored.home / "assay.db")
        conn.execute(statement, args)
        conn.commit()
        conn.close()
        return
    import psycopg

    base, _, query = url.partition("?")
    schema = query.split("search_path%3D", 1)[1]
    with psycopg.connect("postgresql://" + base.split("://", 1)[1], autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(statement.replace("?", "%s"), args)


def _evidence_json(stored: Stored, run_id: str) -> dict[str, Any]:
    from assay.storage.store import RunStore

    return json.loads(RunStore(stored.settings).get_run(run_id).evidence_json or "{}")


def _verdicts(stored: Stored) -> list[Any]:
    return stored.ledger().records(kind="verdict")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_editing_the_runs_table_cannot_move_a_pass_to_a_blocked_model(tmp_path: Path, backend: str,
                                                                        request: pytest.FixtureRequest) -> None:
    good, bad = _two_runs(tmp_path, request.getfixturevalue("pg_url") if backend == "postgres" else None)
    before = len(_verdicts(good))
    evidence = _evidence_json(good, good.run_id)
    evidence["model"]["artifact"] = bad.artifact  # no key needed: just the database
    _sql(good, "UPDATE runs SET evidence_json = ? WHERE run_id = ?", json.dumps(evidence), good.run_id)

    regate = good.assay("gate", good.run_id)
    assert regate.returncode == 1
    assert "runs table disagrees with the signed evidence" in regate.stderr
    assert f"model.artifact: ledger '{good.artifact}', runs table '{bad.artifact}'" in regate.stderr
    assert len(_verdicts(good)) == before  # nothing was decided
    refused = bad.assay("verify", str(bad.model_file))
    assert refused.returncode == 1 and "REJECTED" in refused.stderr
    assert good.assay("verify", str(good.model_file)).returncode == 0
    # the registry table edited the same way is a finding too
    _sql(good, "UPDATE model_versions SET artifact = ? WHERE name = 'credit' AND version = 1", bad.artifact)
    promote = good.assay("models", "promote", good.model, "--to", "staging")
    assert promote.returncode == 1 and "model registry disagrees with the ledger for credit@1" in promote.stderr


def test_editing_the_registry_table_is_a_finding_naming_both(tmp_path: Path) -> None:
    good, bad = _two_runs(tmp_path)
    _sql(good, "UPDATE model_versions SET artifact = ? WHERE name = 'credit' AND version = 1", bad.artifact)
    promote = good.assay("models", "promote", good.model, "--to", "staging")
    assert promote.returncode == 1
    assert "model registry disagrees with the ledger for credit@1" in promote.stderr
    assert f"artifact: ledger '{good.artifact}', model_versions table '{bad.artifact}'" in promote.stderr
    assert good.ledger().records(kind="promotion") == []


def test_a_stage_written_into_the_table_is_not_a_promotion(tmp_path: Path) -> None:
    good, _ = _two_runs(tmp_path)
    _sql(good, "UPDATE model_versions SET stage = 'production' WHERE name = 'credit' AND version = 2")
    shown = good.assay("models", "show", "credit@production")
    assert shown.returncode == 2 and "no such version" in shown.stderr


def test_re_gating_with_a_permissive_policy_cannot_make_a_blocked_model_deployable(tmp_path: Path) -> None:
    _, bad = _two_runs(tmp_path)
    permissive = tmp_path / "permissive.toml"
    permissive.write_text(PERMISSIVE, encoding="utf-8")
    assert bad.assay("gate", bad.run_id, "--policy", str(permissive)).returncode == 0  # a pass, under *that* policy
    refused = bad.assay("verify", str(bad.model_file), "--json")
    assert refused.returncode == 1
    doc = json.loads(refused.stdout)
    assert doc["decision"] == "block" and doc["policy"] == "assay:standard"
    assert any("is under policy permissive" in r and "ignored" in r for r in doc["rejected"])
    # the deploy side may pin another policy explicitly; then that policy's verdict governs
    assert bad.assay("verify", str(bad.model_file), "--policy", str(permissive)).returncode == 0
    # promotion is held to the policy the run was trained under, whatever --policy says
    promote = bad.assay("models", "promote", bad.model, "--to", "production", "--policy", str(permissive))
    assert promote.returncode == 2 and "promotion is held to that policy" in promote.stderr
    assert bad.assay("models", "promote", bad.model, "--to", "production").returncode == 1


def _append_verdict(stored: Stored, decision: str) -> int:
    """A verdict as a trusted signer writes it (re-gated after a waiver expired, say)."""
    ledger = stored.ledger()
    evidence = ledger.records(run_id=stored.run_id, kind="evidence")[-1].payload
    last = ledger.records(run_id=stored.run_id, kind="verdict")[-1].payload
    payload = {**last, "decision": decision, "evidence_digest": digest_of(evidence),
               "reasons": [] if decision == "pass" else ["no-leakage[duplicates]: found 37 duplicates"]}
    seq = ledger.append(stored.run_id, "verdict", payload).seq
    ledger.close()
    return seq


def test_the_newest_verdict_under_the_pinned_policy_governs(tmp_path: Path) -> None:
    good, _ = _two_runs(tmp_path)
    block = _append_verdict(good, "block")
    refused = good.assay("verify", str(good.model_file))
    assert refused.returncode == 1 and f"governing verdict (seq {block}" in refused.stderr
    assert good.assay("verify", str(good.model_file), "--require-verdict", "any").returncode == 0
    again = _append_verdict(good, "pass")
    ok = good.assay("verify", str(good.model_file), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict_seq"] == again


def test_a_verdict_that_does_not_commit_to_its_evidence_is_not_accepted(tmp_path: Path) -> None:
    good, _ = _two_runs(tmp_path)
    ledger = good.ledger()
    last = ledger.records(run_id=good.run_id, kind="verdict")[-1].payload
    ledger.append(good.run_id, "verdict", {**last, "evidence_digest": "sha256:" + "00" * 32})
    ledger.close()
    refused = good.assay("verify", str(good.model_file))
    assert refused.returncode == 1 and "judged evidence sha256:0000" in refused.stderr


def test_verify_with_a_key_follows_rotation_and_revocation(tmp_path: Path) -> None:
    good, _ = _two_runs(tmp_path)
    signer = _verdicts(good)[-1].key_id
    old_pub = good.home / "keys" / f"{signer}.pub"
    assert good.assay("verify", str(good.model_file), "--key", str(old_pub)).returncode == 0
    assert good.assay("keys", "rotate").returncode == 0
    # the verdict was signed while the key was valid: rotation alone does not void it
    assert good.assay("verify", str(good.model_file), "--key", str(old_pub)).returncode == 0
    revoked = good.assay("keys", "revoke", signer, "--reason", "laptop stolen")
    assert revoked.returncode == 0, revoked.stderr
    refused = good.assay("verify", str(good.model_file), "--key", str(old_pub))
    assert refused.returncode == 1 and "was revoked at seq" in refused.stderr
    stranger = tmp_path / "stranger.pub"
    stranger.write_text("11" * 32)
    assert good.assay("verify", str(good.model_file), "--key", str(stranger)).returncode == 1


def test_a_deleted_later_block_verdict_is_noticed(tmp_path: Path) -> None:
    good, _ = _two_runs(tmp_path)
    block = _append_verdict(good, "block")
    conn = sqlite3.connect(good.home / "assay.db")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")  # the database refuses deletes; its owner can drop that
    conn.execute("DELETE FROM ledger_records WHERE seq >= ?", (block,))  # the pass is the head again
    conn.commit()
    conn.close()
    refused = good.assay("verify", str(good.model_file))
    assert refused.returncode == 1 and "REJECTED" not in refused.stdout
    assert "does not verify" in refused.stderr


def test_deploy_verify_needs_a_witnessed_checkpoint_covering_the_verdict(tmp_path: Path) -> None:
    from tests.audit.test_witness import start_server, stop_server

    good, _ = _two_runs(tmp_path)
    witness = start_server(tmp_path / "witness-home", name="witness.test/deploy")
    try:
        witness.add_log(good.assay("keys", "vkey").stdout.strip())
        unwitnessed = good.assay("verify", str(good.model_file), "--witness-key", witness.vkey)
        assert unwitnessed.returncode == 1 and "no witnessed checkpoint" in unwitnessed.stderr
        assert good.assay("audit", "checkpoint", "--witness", witness.url).returncode == 0
        ok = good.assay("verify", str(good.model_file), "--witness-key", witness.vkey, "--json")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "cosigned by 1 of 1 witness(es)" in json.loads(ok.stdout)["reason"]
        newer = _append_verdict(good, "pass")  # governs now, but no witness has seen it yet
        stale = good.assay("verify", str(good.model_file), "--witness-key", witness.vkey)
        assert stale.returncode == 1 and f"not the verdict at seq {newer}" in stale.stderr
        assert good.assay("audit", "checkpoint", "--witness", witness.url).returncode == 0
        assert good.assay("verify", str(good.model_file), "--witness-key", witness.vkey).returncode == 0
        assert good.assay("verify", str(good.model_file), "--quorum", "1").returncode == 2
    finally:
        stop_server(witness.proc)
