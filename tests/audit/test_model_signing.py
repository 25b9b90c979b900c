"""OpenSSF model signing: the model-signing package's own verifier accepts assay's export, and
`assay verify --signature` holds against the attacks a bundle invites (a stale or forged bundle, a
second key, a revoked key, a signature that never went through assay).

Runs carry real signed records (``store_run``) and are gated by the real `assay gate`; the bundle is
checked by `python -m model_signing verify key` and by its Python API, exactly as users run them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.audit.dsse import pae
from assay.audit.format import record_hash
from tests.policies.conftest import GOOD_EVIDENCE
from tests.policies.test_cli import Stored, store_run

PREDICATE = "https://model_signing/signature/v1.0"
VERDICT_FIELD = "https://assay.dev/model-signing/verdict/v1"


def _model_signing_verify(model: Path, signature: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    """The model-signing package's CLI, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(model), "--signature", str(signature),
         "--public_key", str(public_key)],
        capture_output=True, text=True, timeout=120,
    )


def _api_verify(model: Path, signature: Path, public_key: Path) -> None:
    import model_signing

    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(model, signature)


def _attestor(stored: Stored) -> dict[str, Any]:
    made = stored.assay("keys", "init", "--type", "ecdsa-p256", "--json")
    assert made.returncode == 0, made.stderr
    return dict(json.loads(made.stdout))


def _gated(tmp_path: Path, evidence: dict[str, Any] = GOOD_EVIDENCE, expect: int = 0) -> Stored:
    stored = store_run(tmp_path, evidence)
    gate = stored.assay("gate", stored.run_id)
    assert gate.returncode == expect, gate.stdout + gate.stderr
    return stored


def _flip_byte(path: Path, at: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _statement(bundle_path: Path) -> dict[str, Any]:
    bundle = json.loads(bundle_path.read_text())
    return dict(json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"])))


def _resign(bundle_path: Path, statement: dict[str, Any], private: ec.EllipticCurvePrivateKey,
            out: Path) -> None:
    """Write a bundle holding ``statement`` signed by ``private`` (what anyone holding a key can make)."""
    bundle = json.loads(bundle_path.read_text())
    payload = rfc8785.dumps(statement)
    sig = private.sign(pae("application/vnd.in-toto+json", payload), ec.ECDSA(hashes.SHA256()))
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    bundle["verificationMaterial"]["publicKey"]["hint"] = hashlib.sha256(pem).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    bundle["dsseEnvelope"]["signatures"] = [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]
    out.write_text(json.dumps(bundle))


def _home_private(stored: Stored, key_id: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((stored.home / "keys" / f"{key_id}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_model_signing_verifier_accepts_the_folder_export_and_rejects_one_changed_byte(tmp_path: Path) -> None:
    stored = _gated(tmp_path)
    key = _attestor(stored)
    folder = tmp_path / "release"
    done = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--output", str(folder))
    assert done.returncode == 0, done.stderr
    assert "model_signing verify key" in done.stdout
    model, sig, pub = folder / "model.skops", folder / "model.sig", Path(key["public_key_file"])
    assert sorted(p.name for p in folder.iterdir()) == ["model.sig", "model.skops"]
    assert model.read_bytes() == stored.model_file.read_bytes()

    accepted = _model_signing_verify(folder, sig, pub)
    assert accepted.returncode == 0 and "Verification succeeded" in accepted.stdout, accepted.stderr
    _api_verify(folder, sig, pub)

    bundle = json.loads(sig.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": hashlib.sha256(pub.read_bytes()).hexdigest()},
                                              "tlogEntries": []}
    statement = _statement(sig)
    assert statement["_type"] == "https://in-toto.io/Statement/v1" and statement["predicateType"] == PREDICATE
    pred = statement["predicate"]
    digest = stored.artifact.removeprefix("sha256:")
    assert pred["resources"] == [{"name": "model.skops", "algorithm": "sha256", "digest": digest}]
    assert pred["serialization"]["method"] == "files" and "model.sig" in pred["serialization"]["ignore_paths"]
    assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(bytes.fromhex(digest)).hexdigest()
    extra = pred[VERDICT_FIELD]
    verdicts = stored.ledger().records(kind="verdict")
    assert extra["verdict"]["seq"] == verdicts[-1].seq and extra["verdict"]["hash"] == verdicts[-1].hash
    assert extra["verdict"]["decision"] == "pass"
    assert extra["verdict"]["policy_hash"] == verdicts[-1].payload["policy_hash"]
    assert extra["checkpoint"]["size"] >= verdicts[-1].seq and extra["checkpoint"]["note"].startswith("assay.ledger/")

    _flip_byte(model)
    rejected = _model_signing_verify(folder, sig, pub)
    assert rejected.returncode == 1 and "Hash mismatch for" in rejected.stderr, rejected.stdout
    assert "model.skops" in rejected.stderr and "Verification succeeded" not in rejected.stdout
    with pytest.raises(ValueError, match="Signature mismatch"):
        _api_verify(folder, sig, pub)
    assert stored.assay("verify", str(model), "--signature", str(sig)).returncode == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_single_file_bundle_beside_the_model_file(tmp_path: Path, backend: str,
                                                  request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgres" else None
    stored = store_run(tmp_path, GOOD_EVIDENCE, db=db)
    assert stored.assay("gate", stored.run_id).returncode == 0
    key = _attestor(stored)
    sig = stored.model_file.with_name("model.skops.sig")
    done = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--signature", str(sig))
    assert done.returncode == 0, done.stderr
    assert _statement(sig)["predicate"]["resources"][0]["name"] == "."
    pub = Path(key["public_key_file"])
    ok = _model_signing_verify(stored.model_file, sig, pub)
    assert ok.returncode == 0, ok.stderr
    verified = stored.assay("verify", str(stored.model_file), "--signature", str(sig), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    out = json.loads(verified.stdout)
    assert out["ok"] and out["signature"]["key_id"] == key["key_id"]
    assert out["signature"]["verdict_seq"] == out["verdict_seq"]
    _flip_byte(stored.model_file, at=0)
    assert _model_signing_verify(stored.model_file, sig, pub).returncode == 1


def test_each_signature_is_a_ledger_record_and_the_key_is_trusted_through_one(tmp_path: Path) -> None:
    stored = _gated(tmp_path)
    key = _attestor(stored)
    key_file = stored.home / "keys" / f"{key['key_id']}.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    added = [r for r in stored.ledger().records(kind="key_added") if r.payload["key_id"] == key["key_id"]]
    assert len(added) == 1 and added[0].seq == key["added_seq"]
    assert added[0].payload["algorithm"] == "ecdsa-p256" and added[0].payload["roles"] == ["attestor"]
    assert added[0].payload["added_by"] == stored.ledger().records()[0].key_id  # the genesis admin signed it
    again = _attestor(stored)
    assert again["key_id"] == key["key_id"] and again["created"] is False

    listed = json.loads(stored.assay("keys", "list", "--json").stdout)["keys"]
    entry = next(e for e in listed if e["key_id"] == key["key_id"])
    assert entry["algorithm"] == "ecdsa-p256" and entry["roles"] == ["attestor"] and entry["trusted"]
    assert entry["attestor"] and entry["private_key_here"] and not entry["active"]
    text = stored.assay("keys", "list").stdout
    assert f"{key['key_id']}  " in text and "ecdsa-p256 attestation key" in text

    for n in range(2):
        folder = tmp_path / f"release{n}"
        assert stored.assay("audit", "export", stored.run_id, "--format", "model-signing",
                            "--output", str(folder)).returncode == 0
    logged = stored.ledger().records(kind="attestation")
    assert [r.payload["format"] for r in logged] == ["model-signing", "model-signing"]
    for n, record in enumerate(logged):
        bundle = json.loads((tmp_path / f"release{n}" / "model.sig").read_text())
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
        signed_bytes = pae("application/vnd.in-toto+json", payload)
        assert record.payload["signed_sha256"] == hashlib.sha256(signed_bytes).hexdigest()
        assert record.payload["key_id"] == key["key_id"] and record.key_id != key["key_id"]  # Ed25519 signs it

    audit = json.loads(stored.assay("audit", "verify", "--json").stdout)
    assert audit["ok"] and set(audit["attestors"]) == {key["key_id"]}
    assert key["key_id"] not in audit["signers"]  # never a ledger signer
    exported = json.loads(stored.assay("keys", "export").stdout)
    trust_entry = next(e for e in exported["keys"] if e["key_id"] == key["key_id"])
    assert trust_entry["algorithm"] == "ecdsa-p256"
    trust_file = tmp_path / "auditor-trust.json"
    trust_file.write_text(json.dumps(exported))
    with_file = stored.assay("audit", "verify", "--trust", str(trust_file), "--json")
    assert with_file.returncode == 0 and key["key_id"] in json.loads(with_file.stdout)["attestors"], with_file.stdout


def test_blocked_model_is_not_signed(tmp_path: Path) -> None:
    evidence = copy.deepcopy(GOOD_EVIDENCE)
    evidence["checks"]["leakage"]["duplicates"].update(status="fail", value=37)
    stored = _gated(tmp_path, evidence, expect=1)
    _attestor(stored)
    refused = stored.assay("audit", "export", stored.run_id, "--format", "model-signing",
                           "--output", str(tmp_path / "out"))
    assert refused.returncode == 1 and "not signing credit@1" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "out").exists()
    assert stored.ledger().records(kind="attestation") == []


def test_bad_input_is_exit_2_with_one_message(tmp_path: Path) -> None:
    stored = _gated(tmp_path)
    no_key = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--output",
                          str(tmp_path / "o"))
    assert no_key.returncode == 2 and "assay keys init --type ecdsa-p256" in no_key.stderr, no_key.stderr
    _attestor(stored)
    nowhere = stored.assay("audit", "export", stored.run_id, "--format", "model-signing")
    assert nowhere.returncode == 2 and "--output DIR" in nowhere.stderr
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    (crowded / "README.md").write_text("hello")
    busy = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--output", str(crowded))
    assert busy.returncode == 2 and "README.md" in busy.stderr
    junk = tmp_path / "junk.sig"
    junk.write_text("not json")
    bad = stored.assay("verify", str(stored.model_file), "--signature", str(junk))
    assert bad.returncode == 2 and "not a JSON Sigstore bundle" in bad.stderr
    for out in (no_key, nowhere, busy, bad):
        assert "Traceback" not in out.stderr


@pytest.fixture
def signed_release(tmp_path: Path) -> tuple[Stored, dict[str, Any], Path]:
    stored = _gated(tmp_path)
    key = _attestor(stored)
    sig = tmp_path / "model.sig"
    done = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--signature", str(sig))
    assert done.returncode == 0, done.stderr
    assert stored.assay("verify", str(stored.model_file), "--signature", str(sig)).returncode == 0
    return stored, key, sig


def test_a_bundle_signed_by_a_second_key_is_refused(signed_release: tuple[Stored, dict[str, Any], Path],
                                                    tmp_path: Path) -> None:
    stored, _key, sig = signed_release
    mallory = ec.generate_private_key(ec.SECP256R1())
    forged = tmp_path / "forged.sig"
    _resign(sig, _statement(sig), mallory, forged)
    pem = tmp_path / "mallory.pub"
    pem.write_bytes(mallory.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    assert _model_signing_verify(stored.model_file, forged, pem).returncode == 0  # fine by model_signing alone
    out = stored.assay("verify", str(stored.model_file), "--signature", str(forged))
    assert out.returncode == 1 and "not signed by any attestation key this ledger trusts" in out.stderr


def test_a_signature_assay_did_not_log_is_refused(signed_release: tuple[Stored, dict[str, Any], Path],
                                                  tmp_path: Path) -> None:
    """Someone holding the attestation key signs a statement of their own: it has no ledger record."""
    stored, key, sig = signed_release
    statement = _statement(sig)
    statement["predicate"][VERDICT_FIELD]["model"] = "credit@99"
    forged = tmp_path / "unlogged.sig"
    _resign(sig, statement, _home_private(stored, key["key_id"]), forged)
    assert _model_signing_verify(stored.model_file, forged, Path(key["public_key_file"])).returncode == 0
    out = stored.assay("verify", str(stored.model_file), "--signature", str(forged))
    assert out.returncode == 1 and "no attestation record in the ledger logs this signature" in out.stderr


def test_a_stale_bundle_no_longer_names_the_governing_verdict(signed_release: tuple[Stored, dict[str, Any], Path]
                                                              ) -> None:
    stored, _key, sig = signed_release
    assert stored.assay("gate", stored.run_id).returncode == 0  # a newer verdict now governs
    out = stored.assay("verify", str(stored.model_file), "--signature", str(sig))
    assert out.returncode == 1 and "but the governing verdict" in out.stderr, out.stderr
    assert stored.assay("verify", str(stored.model_file)).returncode == 0  # the model itself still passes


def test_a_revoked_attestation_key_attests_nothing(signed_release: tuple[Stored, dict[str, Any], Path],
                                                   tmp_path: Path) -> None:
    stored, key, sig = signed_release
    revoked = stored.assay("keys", "revoke", key["key_id"], "--reason", "laptop stolen")
    assert revoked.returncode == 0, revoked.stderr
    assert _model_signing_verify(stored.model_file, sig, Path(key["public_key_file"])).returncode == 0
    out = stored.assay("verify", str(stored.model_file), "--signature", str(sig))
    assert out.returncode == 1 and "was revoked at ledger seq" in out.stderr
    again = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--output",
                         str(tmp_path / "after"))
    assert again.returncode == 1 and "revoked" in again.stderr
    renewed = _attestor(stored)  # a revoked key stays revoked: init makes a new one
    assert renewed["created"] and renewed["key_id"] != key["key_id"]


def test_an_attestation_key_cannot_sign_ledger_records(signed_release: tuple[Stored, dict[str, Any], Path]) -> None:
    stored, key, _sig = signed_release
    url = stored.settings.db_url
    conn = sqlite3.connect(url.split("///", 1)[1])
    seq, prev = conn.execute("SELECT seq, hash FROM ledger_records ORDER BY seq DESC LIMIT 1").fetchone()
    doc = {"actor": {"user": "mallory", "host": "evil", "ci_job": None}, "key_id": key["key_id"], "kind": "verdict",
           "payload": {"decision": "pass"}, "prev_hash": bytes(prev).hex(), "run_id": stored.run_id, "seq": seq + 1,
           "time": "2025-01-01T00:00:00.000000Z"}
    body = rfc8785.dumps(doc)
    h = record_hash(bytes(prev), body)
    signature = _home_private(stored, key["key_id"]).sign(h, ec.ECDSA(hashes.SHA256()))
    conn.execute("INSERT INTO ledger_records (seq, run_id, kind, time, key_id, prev_hash, hash, signature, body) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (seq + 1, stored.run_id, "verdict", doc["time"], bytes.fromhex(key["key_id"]), bytes(prev), h,
                  signature, body))
    conn.commit()
    conn.close()
    out = stored.assay("audit", "verify", "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["first_bad_seq"] == seq + 1, out.stdout


def test_keys_add_trusts_an_outside_attestation_key_and_env_selects_it(tmp_path: Path) -> None:
    """A CI system's own P-256 key: an admin adds its public key; the CI job hands assay the private key."""
    stored = _gated(tmp_path)
    ci = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "ci.pub"
    pub.write_bytes(ci.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    signer = stored.assay("keys", "add", str(pub), "--identity", "ci@example", "--role", "signer")
    assert signer.returncode == 2 and "its only role is attestor" in signer.stderr
    added = stored.assay("keys", "add", str(pub), "--identity", "ci@example", "--role", "attestor", "--json")
    assert added.returncode == 0, added.stderr
    pem = ci.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()
    folder = tmp_path / "ci-release"
    done = stored.assay("audit", "export", stored.run_id, "--format", "model-signing", "--output", str(folder),
                        env={"ASSAY_ATTESTATION_KEY": pem})
    assert done.returncode == 0, done.stderr
    assert _model_signing_verify(folder, folder / "model.sig", pub).returncode == 0
    verified = stored.assay("verify", str(folder / "model.skops"), "--signature", str(folder / "model.sig"))
    assert verified.returncode == 0 and "(ci@example)" in verified.stdout, verified.stdout + verified.stderr
    assert os.environ.get("ASSAY_ATTESTATION_KEY") is None


def test_non_admin_home_creates_the_key_and_says_how_to_trust_it(tmp_path: Path) -> None:
    stored = _gated(tmp_path)
    from assay.audit.keys import KeyStore

    store = KeyStore(stored.home)
    ci = store.generate()  # a second Ed25519 key, added as a plain signer, becomes this home's active key
    pub = stored.home / "keys" / f"{ci.key_id}.pub"
    assert stored.assay("keys", "add", str(pub), "--identity", "ci", "--role", "signer").returncode == 0
    store.set_active(ci.key_id)
    made = stored.assay("keys", "init", "--type", "ecdsa-p256")
    assert made.returncode == 2 and "assay keys add" in made.stderr and "--role attestor" in made.stderr, made.stderr
    kid = store.attestor_id()
    assert kid is not None and (stored.home / "keys" / f"{kid}.key").is_file()
    assert not any(r.payload.get("key_id") == kid for r in stored.ledger().records(kind="key_added"))


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)
_PATHS = [("mediaType",), ("verificationMaterial",), ("verificationMaterial", "publicKey"),
          ("verificationMaterial", "publicKey", "hint"), ("dsseEnvelope",), ("dsseEnvelope", "payload"),
          ("dsseEnvelope", "payloadType"), ("dsseEnvelope", "signatures"), ("dsseEnvelope", "signatures", 0),
          ("dsseEnvelope", "signatures", 0, "sig"), ("dsseEnvelope", "signatures", 0, "keyid")]


def test_any_altered_bundle_is_refused_cleanly(signed_release: tuple[Stored, dict[str, Any], Path],
                                               tmp_path: Path) -> None:
    """Replace any part of a good bundle with any JSON value: verify_bundle refuses it with a Finding or
    BadInput (exit 1 or 2, never a traceback), or accepts it only when the signed statement is unchanged."""
    from assay.commands.modelsign import verify_bundle
    from assay.errors import BadInput, Finding
    from assay.storage.signed import SignedLedger

    stored, _key, sig = signed_release
    original = json.loads(sig.read_text())
    signed = SignedLedger.open(stored.settings)
    verdict_seq = stored.ledger().records(kind="verdict")[-1].seq
    assert verify_bundle(signed, sig, stored.artifact, verdict_seq)["verdict_seq"] == verdict_seq
    target = tmp_path / "mutated.sig"

    @settings(max_examples=150, deadline=None)
    @given(where=st.sampled_from(_PATHS), value=_JSON, flip=st.integers(min_value=0, max_value=400))
    def check(where: tuple[Any, ...], value: Any, flip: int) -> None:
        bundle = copy.deepcopy(original)
        node = bundle
        for step in where[:-1]:
            node = node[step]
        if where == ("dsseEnvelope", "payload"):  # also: the same payload with one character changed
            text = node["payload"]
            i = flip % len(text)
            value = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
        node[where[-1]] = value
        target.write_text(json.dumps(bundle))
        try:
            verify_bundle(signed, target, stored.artifact, verdict_seq)
        except (Finding, BadInput):
            return
        assert bundle["dsseEnvelope"]["payload"] == original["dsseEnvelope"]["payload"]

    check()


@pytest.mark.parametrize("who, roles, finding", [
    ("signer", ["attestor"], "a key without the admin role"),
    ("admin", ["admin"], "its only role is attestor"),
])
def test_forged_attestation_key_records_are_findings(tmp_path: Path, who: str, roles: list[str],
                                                     finding: str) -> None:
    """An ecdsa-p256 key_added written into the database: by a key that is not an admin, or granting
    more than attestor. The ledger stops verifying, so no bundle by that key is ever accepted."""
    from assay.audit.keys import KeyStore, ec_point, load_private_file
    from assay.audit.verify import sqlite_path
    from tests.audit.tamper_tools import Raw, forged_row

    stored = _gated(tmp_path)
    store = KeyStore(stored.home)
    admin = load_private_file(store.key_path(store.active_id() or ""))
    key = admin
    if who == "signer":
        key = store.generate()
        assert stored.assay("keys", "add", str(store.public_path(key.key_id)), "--identity", "ci",
                            "--role", "signer").returncode == 0
    mallory = ec.generate_private_key(ec.SECP256R1())
    point = ec_point(mallory.public_key())
    payload = {"key_id": hashlib.sha256(point).hexdigest(), "public_key": point.hex(), "algorithm": "ecdsa-p256",
               "identity": "mallory", "roles": roles, "added_by": key.key_id}
    raw = Raw(stored.settings.db_url)
    seq, prev = raw.rows("SELECT seq, hash FROM ledger_records ORDER BY seq DESC LIMIT 1")[0]
    raw.insert(forged_row(seq + 1, bytes(prev), key.private, key.key_id, payload, run_id=None, kind="key_added"))
    raw.close()
    assert Path(sqlite_path(stored.settings.db_url)).is_file()
    out = stored.assay("audit", "verify", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["first_bad_seq"] == seq + 1 and finding in report["reason"], out.stdout
