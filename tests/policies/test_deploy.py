"""Deploy-time checks on a real ledger: verify an artifact, count approvals, allow promotion."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.audit.ledger import Ledger
from assay.policies.deploy import (
    TrustedKey,
    chain_problem,
    check_promotion,
    count_approvals,
    home_trusted_keys,
    sha256_file,
    trusted_from_public_key,
    verify_artifact,
)
from assay.settings import Settings

ARTIFACT_BYTES = b"skops model bytes"


def _settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    return Settings(home, f"sqlite:///{home / 'assay.db'}")


def _key_file(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / f"{name}.pem"
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    path.chmod(0o600)
    return path, private.public_key().public_bytes_raw()


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "model.skops"
    path.write_bytes(ARTIFACT_BYTES)
    return path, sha256_file(path)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
    return Ledger.open(_settings(tmp_path))


def _verdict(ledger: Ledger, artifact: str, decision: str, run_id: str = "RUN1") -> Any:
    payload = {"decision": decision, "policy": "assay:standard", "policy_hash": "sha256:" + "0" * 64,
               "reasons": [] if decision == "pass" else ["no-leakage[duplicates]: found 12 duplicates"],
               "rules": [], "run_id": run_id, "artifact": artifact, "model": "credit@1"}
    return ledger.append(run_id, "verdict", payload)


def _signed_by(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: Path) -> Ledger:
    """The same ledger opened by someone whose signing key is ``key`` (ASSAY_SIGNING_KEY)."""
    monkeypatch.setenv("ASSAY_SIGNING_KEY", str(key))
    return Ledger.open(_settings(tmp_path))


def test_a_passing_verdict_verifies(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    ledger.append("RUN1", "run_started", {"project": "credit"})
    record = _verdict(ledger, artifact[1], "pass")
    result = verify_artifact(ledger.records(), artifact[1], home_trusted_keys(ledger.settings.home))
    assert result.ok, result.reason
    assert (result.verdict_seq, result.decision, result.model) == (record.seq, "pass", "credit@1")
    assert "ledger intact up to it" in result.reason


def test_the_key_option_trusts_exactly_that_key(ledger: Ledger, artifact: tuple[Path, str], tmp_path: Path) -> None:
    record = _verdict(ledger, artifact[1], "pass")
    own = next(k for k in home_trusted_keys(ledger.settings.home) if k.key_id == record.key_id)
    assert verify_artifact(ledger.records(), artifact[1], [trusted_from_public_key(own.public_raw)]).ok
    _, stranger = _key_file(tmp_path, "stranger")
    result = verify_artifact(ledger.records(), artifact[1], [trusted_from_public_key(stranger)])
    assert not result.ok
    assert "no verdict for this artifact is signed by a trusted key" in result.reason
    assert "which is not trusted" in result.reason


def test_changed_bytes_have_no_verdict(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    _verdict(ledger, artifact[1], "pass")
    artifact[0].write_bytes(ARTIFACT_BYTES + b"\x00")
    result = verify_artifact(ledger.records(), sha256_file(artifact[0]), home_trusted_keys(ledger.settings.home))
    assert not result.ok and result.reason.startswith("no verdict in the ledger for artifact sha256:")


def test_only_a_blocking_verdict_is_rejected(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    _verdict(ledger, artifact[1], "block")
    trusted = home_trusted_keys(ledger.settings.home)
    result = verify_artifact(ledger.records(), artifact[1], trusted)
    assert not result.ok
    assert "is 'block', not pass: no-leakage[duplicates]: found 12 duplicates" in result.reason
    assert verify_artifact(ledger.records(), artifact[1], trusted, require="any").ok


def test_the_newest_trusted_verdict_decides(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    _verdict(ledger, artifact[1], "pass")
    trusted = home_trusted_keys(ledger.settings.home)
    _verdict(ledger, artifact[1], "block")  # re-gated after a waiver expired
    assert not verify_artifact(ledger.records(), artifact[1], trusted).ok
    _verdict(ledger, artifact[1], "pass")
    assert verify_artifact(ledger.records(), artifact[1], trusted).ok


def test_a_verdict_signed_by_an_untrusted_key_is_rejected(ledger: Ledger, artifact: tuple[Path, str],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger.append("RUN1", "run_started", {})
    operator_key = next(iter(home_trusted_keys(ledger.settings.home)))
    forger_pem, _ = _key_file(tmp_path, "forger")
    _verdict(_signed_by(tmp_path, monkeypatch, forger_pem), artifact[1], "pass")
    result = verify_artifact(ledger.records(), artifact[1], [operator_key])
    assert not result.ok
    assert "which is not trusted" in result.reason


def _tamper(settings: Settings, seq: int, old: bytes, new: bytes) -> None:
    db = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"))
    db.execute("DROP TRIGGER ledger_records_no_update")  # an attacker with write access to the file
    (body,) = db.execute("SELECT body FROM ledger_records WHERE seq = ?", (seq,)).fetchone()
    db.execute("UPDATE ledger_records SET body = ? WHERE seq = ?", (bytes(body).replace(old, new), seq))
    db.commit()
    db.close()


def test_a_record_altered_before_the_verdict_is_found(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    evidence = ledger.append("RUN1", "evidence", {"checks": {"leakage": {"duplicates": {"status": "fail"}}}})
    _verdict(ledger, artifact[1], "pass")
    _tamper(ledger.settings, evidence.seq, b'"fail"', b'"pass"')
    result = verify_artifact(ledger.records(), artifact[1], home_trusted_keys(ledger.settings.home))
    assert not result.ok
    assert result.reason == (f"ledger integrity fails up to the verdict (seq {evidence.seq + 1}): ledger record "
                             f"{evidence.seq} was altered: its content does not match its hash")


def test_an_altered_verdict_fails_its_signature(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    record = _verdict(ledger, artifact[1], "block")
    db = sqlite3.connect(ledger.settings.db_url.removeprefix("sqlite:///"))
    db.execute("DROP TRIGGER ledger_records_no_update")
    forged = record.body.replace(b'"decision":"block"', b'"decision":"pass"')
    from assay.audit.format import record_hash

    db.execute("UPDATE ledger_records SET body = ?, hash = ? WHERE seq = ?",
               (forged, record_hash(bytes.fromhex(record.prev_hash), forged), record.seq))
    db.commit()
    db.close()
    result = verify_artifact(ledger.records(), artifact[1], home_trusted_keys(ledger.settings.home))
    assert not result.ok and "its signature does not verify" in result.reason


def test_chain_problem_detects_gaps_and_truncation(ledger: Ledger) -> None:
    for i in range(3):
        ledger.append(None, "note", {"i": i})
    records = ledger.records()
    assert chain_problem(records, records[-1].seq) is None
    assert chain_problem(records[:-1], records[-1].seq) == f"ledger ends at seq {records[-2].seq}, before record " \
                                                          f"{records[-1].seq}"
    assert chain_problem([records[0], records[2]], records[2].seq) == \
        f"ledger record {records[1].seq} is missing (found seq {records[2].seq} next)"


def test_no_trusted_keys_means_no_deploy(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    _verdict(ledger, artifact[1], "pass")
    result = verify_artifact(ledger.records(), artifact[1], [])
    assert not result.ok and result.reason.startswith("no trusted keys")


def test_a_key_outside_its_validity_window_is_not_trusted(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    record = _verdict(ledger, artifact[1], "pass")
    key = next(k for k in home_trusted_keys(ledger.settings.home) if k.key_id == record.key_id)
    revoked = TrustedKey(key.key_id, key.public_raw, revoked_at=record.seq)
    result = verify_artifact(ledger.records(), artifact[1], [revoked])
    assert not result.ok and "was not valid at seq" in result.reason


# --------------------------------------------------------------------------- approvals and promotion


def _approve(ledger: Ledger, artifact: str, approver: str) -> Any:
    return ledger.append("RUN1", "approval", {"model": "credit@1", "artifact": artifact, "approver": approver})


def test_approvals_count_distinct_trusted_keys(ledger: Ledger, artifact: tuple[Path, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _verdict(ledger, artifact[1], "pass")
    _approve(ledger, artifact[1], "ann")
    _approve(ledger, artifact[1], "ann again, same key")
    bob_pem, bob_pub = _key_file(tmp_path, "bob")
    _approve(_signed_by(tmp_path, monkeypatch, bob_pem), artifact[1], "bob")
    eve_pem, _ = _key_file(tmp_path, "eve")
    _approve(_signed_by(tmp_path, monkeypatch, eve_pem), artifact[1], "eve")
    operator = [k for k in home_trusted_keys(ledger.settings.home) if k.name != "--key"]
    ann_key = next(k for k in operator if k.key_id == ledger.records(kind="verdict")[0].key_id)
    trusted = [ann_key, trusted_from_public_key(bob_pub)]  # the auditor's trust list: ann and bob, not eve
    approvals, rejected = count_approvals(ledger.records(), "credit@1", artifact[1], trusted)
    assert sorted(a.approver for a in approvals) == ["ann", "bob"]
    assert len(rejected) == 1 and "not trusted" in rejected[0]
    check = check_promotion(ledger.records(), "credit@1", artifact[1], "RUN1", "staging", "production", trusted, 2,
                            "sha256:" + "0" * 64)
    assert check.allowed, check.reason
    assert [a["approver"] for a in check.payload["approvals"]] == ["ann", "bob"]
    refused = check_promotion(ledger.records(), "credit@1", artifact[1], "RUN1", "staging", "production", trusted, 3)
    assert not refused.allowed
    assert "needs 3 approval(s) from distinct trusted keys, it has 2" in refused.reason


def test_production_needs_a_passing_verdict(ledger: Ledger, artifact: tuple[Path, str]) -> None:
    _verdict(ledger, artifact[1], "block")
    trusted = home_trusted_keys(ledger.settings.home)
    refused = check_promotion(ledger.records(), "credit@1", artifact[1], "RUN1", "none", "production", trusted, 0)
    assert not refused.allowed and "not pass" in refused.reason
    staging = check_promotion(ledger.records(), "credit@1", artifact[1], "RUN1", "none", "staging", trusted, 0)
    assert staging.allowed and staging.payload == {"model": "credit@1", "artifact": artifact[1], "run_id": "RUN1",
                                                   "from": "none", "to": "staging"}
    _verdict(ledger, artifact[1], "pass")
    unknown_policy = check_promotion(ledger.records(), "credit@1", artifact[1], "RUN1", "none", "production",
                                     trusted, None)
    assert not unknown_policy.allowed and "pass --policy" in unknown_policy.reason
    assert check_promotion(ledger.records(), "credit@1", artifact[1], "RUN1", "none", "production", trusted, 0).allowed
