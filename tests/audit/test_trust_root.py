"""The trust root, as attacks: no key becomes trusted by being used; roles gate key records;
approvals count identities; rotation carries identity and roles; one public key is a trust root."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from assay.audit import verify as V
from assay.audit.keyreplay import approving_identities, trust_from_public_key, valid_at
from assay.audit.ledger import Ledger
from assay.audit.trust import FORMAT, ROLES, TrustError, parse_trust
from assay.errors import BadInput
from assay.storage.settings import Settings

from .conftest import run_assay
from .tamper_tools import Raw, forged_row, resign


class Person:
    """Someone with a private key file (0600) and its public key file, outside any assay home."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes_raw()
        self.key_id = hashlib.sha256(raw).hexdigest()
        self.pem = tmp_path / f"{name}.pem"
        self.pem.write_bytes(self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.pem.chmod(0o600)
        self.pub = tmp_path / f"{name}.pub"
        self.pub.write_text(raw.hex() + "\n")
        self.raw = raw


def _home_with_genesis(settings: Settings, records: int = 5) -> Ledger:
    led = Ledger.open(settings)
    led.append_many([("r1", "data", {"i": i}) for i in range(records)])
    return led


def _cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_assay(*args, home=settings.home, db=settings.db_url, env=env)


def _verify_json(settings: Settings, *extra: str) -> tuple[int, dict[str, Any]]:
    done = _cli(settings, "audit", "verify", "--json", *extra)
    return done.returncode, json.loads(done.stdout)


def _tail(raw: Raw) -> tuple[int, bytes]:
    seq, h = raw.rows("SELECT seq, hash FROM ledger_records ORDER BY seq DESC LIMIT 1")[0]
    return int(seq), bytes(h)


# ------------------------------------------------------------------ (a) using a key does not trust it


def test_a_fresh_ci_key_cannot_append_to_a_home_with_a_genesis_key(settings: Settings, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    led = _home_with_genesis(settings)
    genesis = led.records()[0]
    assert genesis.seq == 1 and genesis.kind == "key_added"
    assert genesis.payload["roles"] == ["admin"] and genesis.payload["identity"]
    trust_file = settings.home / "keys" / "trust.json"
    trust_before, size_before = trust_file.read_bytes(), led.size()
    ci = Person(tmp_path, "ci")

    done = _cli(settings, "keys", "init", env={"ASSAY_SIGNING_KEY": str(ci.pem)})
    assert done.returncode == 2, done.stderr
    assert (f"signing key {ci.key_id} is not trusted in this home; an admin adds it with: "
            "assay keys add <pubfile> --identity NAME --role signer") in done.stderr
    assert ci.raw.hex() in done.stderr and "Traceback" not in done.stderr and "PRIVATE" not in done.stderr

    monkeypatch.setenv("ASSAY_SIGNING_KEY", str(ci.pem))
    with pytest.raises(BadInput, match=f"signing key {ci.key_id} is not trusted in this home"):
        Ledger.open(settings).append("r2", "verdict", {"decision": "pass"})
    with pytest.raises(BadInput, match="is not trusted in this home"):
        Ledger.open(settings).append_many([("r2", "data", {"i": i}) for i in range(3)])
    monkeypatch.delenv("ASSAY_SIGNING_KEY")

    assert Ledger.open(settings).size() == size_before
    assert trust_file.read_bytes() == trust_before
    assert not [r for r in Ledger.open(settings).records() if r.key_id == ci.key_id]


def test_a_second_home_on_a_shared_ledger_cannot_introduce_itself(settings: Settings, tmp_path: Path) -> None:
    _home_with_genesis(settings)
    other = Settings(tmp_path / "other-home", settings.db_url)
    with pytest.raises(BadInput, match="is not trusted in this home") as refused:
        Ledger.open(other).append("r9", "data", {})
    key_id = (other.home / "keys" / "active").read_text().strip()
    assert f"assay keys add {other.home / 'keys' / key_id}.pub" in refused.value.message
    assert not (other.home / "keys" / "trust.json").exists()
    assert Ledger.open(settings).size() == 6


def test_the_first_ci_key_of_an_empty_ledger_is_its_genesis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    ci = Person(tmp_path, "ci")
    monkeypatch.setenv("ASSAY_SIGNING_KEY", str(ci.pem))
    rec = Ledger.open(s).append("r", "data", {})
    [intro] = Ledger.open(s).records(kind="key_added")
    assert (intro.seq, intro.key_id, rec.key_id) == (1, ci.key_id, ci.key_id)
    assert intro.payload["roles"] == ["admin"] and "added_by" not in intro.payload
    [entry] = json.loads((s.home / "keys" / "trust.json").read_text())["keys"]
    assert (entry["key_id"], entry["roles"], entry["valid_from"]) == (ci.key_id, ["admin"], 1)


def test_keys_init_names_the_genesis_identity(tmp_path: Path) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    done = _cli(s, "keys", "init", "--identity", "ann@example.org", "--json")
    assert done.returncode == 0, done.stderr
    key_id = json.loads(done.stdout)["key_id"]
    [intro] = Ledger.open(s).records()
    assert intro.payload == {"key_id": key_id, "public_key": intro.payload["public_key"], "algorithm": "ed25519",
                             "identity": "ann@example.org", "roles": ["admin"]}
    listed = _cli(s, "keys", "list")
    assert listed.returncode == 0 and key_id in listed.stdout  # whole, never a prefix
    assert "ann@example.org" in listed.stdout and "admin" in listed.stdout


# ------------------------------------------------------------------ (b) a forged signer under default verify


def test_a_record_signed_by_an_untrusted_key_is_a_finding_naming_its_seq(settings: Settings) -> None:
    _home_with_genesis(settings)
    assert _verify_json(settings)[0] == 0
    evil = Ed25519PrivateKey.generate()
    evil_pub = evil.public_key().public_bytes_raw()
    evil_id = hashlib.sha256(evil_pub).hexdigest()
    raw = Raw(settings.db_url)
    seq, prev = _tail(raw)
    intro = forged_row(seq + 1, prev, evil, evil_id, kind="key_added", run_id=None, payload={
        "key_id": evil_id, "public_key": evil_pub.hex(), "algorithm": "ed25519", "identity": "mallory",
        "roles": ["admin", "approver"]})
    raw.insert(intro)
    raw.insert(forged_row(seq + 2, intro[6], evil, evil_id, kind="verdict", run_id="r1",
                          payload={"decision": "pass"}))
    raw.close()

    code, out = _verify_json(settings)  # default: the home's own trust file
    assert code == 1 and out["ok"] is False
    assert out["first_bad_seq"] == seq + 1
    assert f"self-signed key_added by {evil_id}, a key that is not in the trust file" in out["reason"]
    assert {e["seq"] for e in out["errors"]} >= {seq + 1, seq + 2}
    assert evil_id not in out["signers"]
    text = _cli(settings, "audit", "verify")
    assert text.returncode == 1 and f"record {seq + 1}" in text.stderr
    # Without any trust file the genesis key is trusted on first use, and nothing else.
    tofu = V.verify_ledger(settings.db_url, trust=None)
    assert not tofu.ok and tofu.first_bad_seq == seq + 1 and "not in the trust file" in (tofu.reason or "")


# ------------------------------------------------------------------ (c) approvals count identities


def _approve(settings: Settings, monkeypatch: pytest.MonkeyPatch, who: Person | None, n: int) -> int:
    if who is None:
        monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
    else:
        monkeypatch.setenv("ASSAY_SIGNING_KEY", str(who.pem))
    led = Ledger.open(settings)
    rec = led.append("r1", "approval", {"model": "credit@1", "n": n})
    led.close()
    monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
    return rec.seq


def test_one_person_with_two_keys_counts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    assert _cli(s, "keys", "init", "--identity", "ann").returncode == 0
    ann2, bob, carol = Person(tmp_path, "ann2"), Person(tmp_path, "bob"), Person(tmp_path, "carol")
    for who, identity, roles in ((ann2, "ann", ["approver"]), (bob, "bob", ["approver"]), (carol, "carol", [])):
        added = _cli(s, "keys", "add", str(who.pub), "--identity", identity, *[f"--role={r}" for r in roles],
                     "--json")
        assert added.returncode == 0, added.stderr
        doc = json.loads(added.stdout)
        assert doc["identity"] == identity and doc["roles"] == (roles or ["signer"])
    approvals = []
    for n, who in enumerate([None, ann2, None, carol]):  # ann twice with two keys, carol (signer only)
        seq = _approve(s, monkeypatch, who, n)
        signer = Ledger.open(s).records()[seq - 1].key_id
        approvals.append((seq, signer))
    code, out = _verify_json(s)
    assert code == 0, out
    signers = out["signers"]
    genesis = Ledger.open(s).records()[0].key_id
    assert signers[genesis]["identity"] == signers[ann2.key_id]["identity"] == "ann"
    assert signers[carol.key_id]["roles"] == ["signer"]
    assert approving_identities(signers, approvals) == {"ann": approvals[0][0]}
    approvals.append((_approve(s, monkeypatch, bob, 9), bob.key_id))
    report = V.verify_ledger(s.db_url, trust=s.home / "keys" / "trust.json")
    assert report.ok
    assert sorted(approving_identities(report.signers, approvals)) == ["ann", "bob"]
    # A key is not an approver before its key_added takes effect.
    assert not valid_at(report.signers[bob.key_id], report.signers[bob.key_id]["valid_from"] - 1)


# ------------------------------------------------------------------ (d) only an admin manages keys


def test_a_signer_key_cannot_add_or_revoke_keys_and_a_forged_key_added_is_a_finding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    _home_with_genesis(s)
    ci, friend = Person(tmp_path, "ci"), Person(tmp_path, "friend")
    assert _cli(s, "keys", "add", str(ci.pub), "--identity", "ci", "--role", "signer").returncode == 0
    size = Ledger.open(s).size()
    as_ci = {"ASSAY_SIGNING_KEY": str(ci.pem)}
    added = _cli(s, "keys", "add", str(friend.pub), "--identity", "friend", "--role", "admin", env=as_ci)
    assert added.returncode == 1, added.stderr
    assert f"signing key {ci.key_id} (ci, roles: signer) is not an admin key" in added.stderr
    genesis = Ledger.open(s).records()[0].key_id
    revoked = _cli(s, "keys", "revoke", genesis, env=as_ci)
    assert revoked.returncode == 1 and "only an admin key may revoke keys" in revoked.stderr
    assert Ledger.open(s).size() == size
    assert _verify_json(s)[0] == 0

    # The CI key holder forges the key_added into the database file and uses the new key.
    raw = Raw(s.db_url)
    seq, prev = _tail(raw)
    row = forged_row(seq + 1, prev, ci.private, ci.key_id, kind="key_added", run_id=None, payload={
        "key_id": friend.key_id, "public_key": friend.raw.hex(), "algorithm": "ed25519", "identity": "friend",
        "roles": ["admin", "approver"], "added_by": ci.key_id})
    raw.insert(row)
    raw.insert(forged_row(seq + 2, row[6], friend.private, friend.key_id, run_id="r1", kind="approval"))
    raw.close()
    code, out = _verify_json(s)
    assert code == 1
    assert out["first_bad_seq"] == seq + 1
    assert f"key_added record signed by {ci.key_id}, a key without the admin role" in out["reason"]
    assert any(e["seq"] == seq + 2 and "unknown key" in e["reason"] for e in out["errors"])
    assert friend.key_id not in out["signers"]


def test_keys_add_needs_an_identity_and_known_roles(tmp_path: Path) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    _home_with_genesis(s)
    ci = Person(tmp_path, "ci")
    missing = _cli(s, "keys", "add", str(ci.pub))
    assert missing.returncode == 2 and "--identity" in missing.stderr
    bad_role = _cli(s, "keys", "add", str(ci.pub), "--identity", "ci", "--role", "root")
    assert bad_role.returncode == 2 and "root" in bad_role.stderr
    legacy = _cli(s, "keys", "add", str(ci.pub), "--name", "ci", "--json")  # the deprecated spelling
    assert legacy.returncode == 0, legacy.stderr
    assert json.loads(legacy.stdout)["identity"] == "ci"
    again = _cli(s, "keys", "add", str(ci.pub), "--identity", "ci")
    assert again.returncode == 2 and "already in this ledger" in again.stderr


# ------------------------------------------------------------------ (e) rotation and a lone public key


def test_after_rotation_the_auditors_old_trust_file_still_verifies(tmp_path: Path) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    assert _cli(s, "keys", "init", "--identity", "ann").returncode == 0
    _home_with_genesis(s)
    auditor = tmp_path / "auditor-trust.json"
    assert _cli(s, "keys", "export", "--output", str(auditor)).returncode == 0
    [kept] = json.loads(auditor.read_text())["keys"]
    assert kept["identity"] == "ann" and kept["roles"] == ["admin"] and kept["valid_from"] == 1
    rot = _cli(s, "keys", "rotate", "--json")
    assert rot.returncode == 0, rot.stderr
    rotated = json.loads(rot.stdout)
    led = Ledger.open(s)
    after = led.append("r2", "data", {})
    assert after.key_id == rotated["key_id"]
    record = led.records(kind="key_rotated")[0]
    assert record.payload["identity"] == "ann" and record.payload["roles"] == ["admin"]

    code, out = _verify_json(s, "--trust", str(auditor))
    assert code == 0, out
    new, old = out["signers"][rotated["key_id"]], out["signers"][rotated["old_key_id"]]
    assert (new["identity"], new["roles"], new["valid_from"]) == ("ann", ["admin"], rotated["seq"] + 1)
    assert old["valid_until"] == rotated["seq"]
    # The rotated-in key inherited admin: it may add keys.
    ci = Person(tmp_path, "ci")
    assert _cli(s, "keys", "add", str(ci.pub), "--identity", "ci").returncode == 0
    assert _verify_json(s, "--trust", str(auditor))[0] == 0


def test_one_public_key_is_a_trust_root_that_follows_rotation_and_revocation(tmp_path: Path) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    led = _home_with_genesis(s)
    genesis = led.signer()
    ci = Person(tmp_path, "ci")
    led.add_key(ci.raw, identity="ci", roles=["signer"])
    rot, new = led.rotate_key()
    led.append("r2", "data", {})
    revoked = led.revoke_key(ci.key_id, "left the team")
    led.append("r2", "data", {"after": "revocation"})
    root = trust_from_public_key(genesis.public_raw)
    report = V.verify_ledger(s.db_url, trust=root)
    assert report.ok, report.to_json()
    sig = report.signers
    assert sig[genesis.key_id]["valid_from"] == 1 and sig[genesis.key_id]["valid_until"] == rot.seq
    assert sig[new.key_id]["valid_from"] == rot.seq + 1 and sig[new.key_id]["roles"] == ["admin"]
    assert sig[ci.key_id]["revoked_at"] == revoked.seq and not valid_at(sig[ci.key_id], revoked.seq)
    # The revoked key signing after its revocation is a finding.
    raw = Raw(s.db_url)
    raw.drop_triggers()
    last, _ = _tail(raw)
    resign(raw, last, ci.private, ci.key_id)
    raw.close()
    bad = V.verify_ledger(s.db_url, trust=root)
    assert not bad.ok and bad.first_bad_seq == last and "revoked at seq" in (bad.reason or "")
    # So is the root itself signing past its rotation.
    raw = Raw(s.db_url)
    resign(raw, last, genesis.private, genesis.key_id)
    raw.close()
    past = V.verify_ledger(s.db_url, trust=root)
    assert not past.ok and past.first_bad_seq == last and f"rotated out at seq {rot.seq}" in (past.reason or "")
    # A stranger's key as the root trusts nothing this ledger holds.
    stranger = Person(tmp_path, "stranger")
    assert not V.verify_ledger(s.db_url, trust=trust_from_public_key(stranger.raw)).ok


# ------------------------------------------------------------------ trust files, old and new


def test_an_old_trust_file_without_identities_or_roles_still_works(tmp_path: Path) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    _home_with_genesis(s)
    path = s.home / "keys" / "trust.json"
    doc = json.loads(path.read_text())
    for entry in doc["keys"]:
        entry.pop("identity"), entry.pop("roles")
    path.write_text(json.dumps(doc))
    code, out = _verify_json(s)
    assert code == 0
    [info] = out["signers"].values()
    assert info["roles"] == ["admin"]  # the genesis key, though the file does not say
    ci = Person(tmp_path, "ci")
    assert _cli(s, "keys", "add", str(ci.pub), "--identity", "ci").returncode == 0
    report = V.verify_ledger(s.db_url, trust=path)
    assert report.ok and report.signers[ci.key_id]["roles"] == ["signer"]


@given(st.lists(st.one_of(st.sampled_from(ROLES), st.text(max_size=8)), max_size=5) | st.integers() | st.none())
def test_trust_file_roles_parse_or_fail_cleanly(roles: Any) -> None:
    pub = bytes(range(32))
    entry: dict[str, Any] = {"key_id": hashlib.sha256(pub).hexdigest(), "public_key": pub.hex(), "roles": roles}
    try:
        [key] = parse_trust({"format": FORMAT, "keys": [entry]})
    except TrustError as exc:
        assert "roles" in str(exc) or "role" in str(exc)
        return
    if roles is None:
        assert key.roles is None
    else:
        assert isinstance(roles, list) and set(roles) <= set(ROLES)
        assert key.roles == (tuple(r for r in ROLES if r in roles) or ("signer",))


def test_the_standalone_verifier_reports_signers(tmp_path: Path) -> None:
    s = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'a.db'}")
    _home_with_genesis(s)
    mod = subprocess.run([sys.executable, "-m", "assay.audit.verify", s.db_url, "--json"], capture_output=True,
                         text=True, timeout=60)
    assert mod.returncode == 0, mod.stderr
    [info] = json.loads(mod.stdout)["signers"].values()
    assert info["roles"] == ["admin"] and info["valid_from"] == 1
