"""The offline audit bundle: `assay audit export RUN_ID --bundle DIR`, then `audit verify --bundle DIR` with no database.

One real run of the Adult example (logistic regression, no tuning) is exported once per module; each
test works on its own copy of the bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.audit.bundle import verify_bundle
from assay.audit.canonical import canonical
from assay.audit.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from assay.audit.format import GENESIS_PREV, record_hash
from assay.audit.keys import KeyStore
from assay.audit.merkle import inclusion_proof, leaf_hash, root_from_leaves
from assay.audit.note import Checkpoint, parse_checkpoint, parse_note, sign_checkpoint
from assay.audit.verify import key_events_line
from tests.conftest import EXAMPLES, run_assay

FILES = ["README.md", "attestation.intoto.json", "checkpoint.note", "keys.json", "manifest.json", "manifest.sig",
         "policy.json", "policy.toml", "proofs.jsonl", "records.jsonl", "report.html"]


def _offline_env(home: Path) -> dict[str, str]:
    """A machine with no assay state: an empty HOME, no ASSAY_HOME, no database URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("bundle")
    home = base / "home"
    spec = EXAMPLES / "adult" / "assay.toml"
    run = run_assay("run", str(spec), "--set", "train.tuning=none", "--set", 'train.candidates=["logistic_regression"]',
                    "--set", "split.cv_folds=2", "--json", home=home)
    assert run.returncode == 0, run.stderr
    run_id = run.json["run_id"]
    bundle = base / "bundle"
    out = run_assay("audit", "export", run_id, "--bundle", str(bundle), "--policy-file",
                    str(EXAMPLES / "adult" / "policy.toml"), home=home)
    assert out.returncode == 0, out.stderr
    assert f"wrote audit bundle of run {run_id}" in out.stdout
    log = run_assay("audit", "log", "--json", home=home)
    return {"home": home, "run_id": run_id, "bundle": bundle, "run": run.json, "records": log.json["records"]}


@pytest.fixture
def copy(exported: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "b"
    shutil.copytree(exported["bundle"], target)
    return target


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _flip(path: Path, pos: int, xor: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos % len(data)] ^= xor
    path.write_bytes(bytes(data))


def _resign_manifest(bundle: Path, private: Any, key_id: str) -> None:
    """What a holder of the signing key can do: re-list every file's digest and sign the manifest again."""
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    for s in manifest["subject"]:
        s["digest"]["sha256"] = hashlib.sha256((bundle / s["name"]).read_bytes()).hexdigest()
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (bundle / "manifest.json").write_bytes(data)
    env = sign_envelope(data, INTOTO_PAYLOAD_TYPE, private, key_id)
    (bundle / "manifest.sig").write_text(json.dumps(env, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _verify_cli(bundle: Path, *extra: str, cwd: Path, module: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "assay.audit.verify"] if module else [sys.executable, "-m", "assay", "audit", "verify"]
    return subprocess.run([*cmd, "--bundle", str(bundle), *extra], capture_output=True, text=True, cwd=cwd,
                          env=_offline_env(cwd), stdin=subprocess.DEVNULL, timeout=120)


# --------------------------------------------------------------------------------------------- valid


def test_bundle_holds_the_run_as_signed_and_verifies_offline(exported: dict[str, Any], copy: Path,
                                                             tmp_path: Path) -> None:
    run_id = exported["run_id"]
    assert sorted(p.name for p in copy.iterdir()) == FILES
    # records.jsonl: the bodies exactly as the database stores (and the ledger signed) them
    db = sqlite3.connect(exported["home"] / "assay.db")
    stored = {seq: bytes(body) for seq, body in db.execute("SELECT seq, body FROM ledger_records")}
    lines = (copy / "records.jsonl").read_bytes().splitlines()
    seqs = [json.loads(line)["seq"] for line in lines]
    assert all(stored[s] == line for s, line in zip(seqs, lines, strict=True))
    run_seqs = [r["seq"] for r in exported["records"] if r["run_id"] == run_id]
    key_seqs = [r["seq"] for r in exported["records"] if r["kind"] == "key_added"]
    assert seqs == sorted(set(run_seqs) | set(key_seqs))
    # policy.json's SHA-256 is the digest the verdict names
    verdict = next(r for r in exported["records"] if r["kind"] == "verdict" and r["run_id"] == run_id)
    assert "sha256:" + hashlib.sha256((copy / "policy.json").read_bytes()).hexdigest() == verdict["payload"]["policy_hash"]

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    for module in (False, True):
        proc = _verify_cli(copy, "--json", cwd=cwd, module=module)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = json.loads(proc.stdout)
        assert out["ok"] is True and out["problems"] == []
        assert out["run_id"] == run_id
        assert out["records"] == len(seqs) and out["run_records"] == len(run_seqs)
        assert out["checkpoint"]["size"] >= max(run_seqs)
        assert out["verdict"]["decision"] == verdict["payload"]["decision"]
        assert out["verdict"]["artifact"] == exported["run"]["model"]["artifact"]
        assert out["files"] == len(FILES) - 2
    text = _verify_cli(copy, cwd=cwd)
    assert text.returncode == 0
    assert text.stdout.startswith(f"bundle {copy} verified: run {run_id}")
    assert "pass --trust FILE" in text.stdout  # says whose keys it trusted
    assert list(cwd.iterdir()) == []  # nothing written: no .assay home, no database


def test_auditors_own_trust_file_verifies_the_genuine_bundle(exported: dict[str, Any], copy: Path,
                                                             tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(run_assay("keys", "export", home=exported["home"]).stdout, encoding="utf-8")
    proc = _verify_cli(copy, "--trust", str(trust), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"trust: trust file {trust}" in proc.stdout


# ------------------------------------------------------------------------------------------ tampering


def _positions(path: Path) -> list[int]:
    """Start, end, middle, and bytes inside a signature and inside a record payload where the file has them."""
    data = path.read_bytes()
    found = [0, len(data) - 1, len(data) // 2]
    for marker in (b'"signature":"', b'"sig": "', b'"payload":{', b'"payload": "', b"\n\xe2\x80\x94 "):
        at = data.find(marker)
        if at >= 0:
            found.append(at + len(marker) + 5)
    return sorted(set(found))


@pytest.mark.parametrize("name", FILES)
def test_any_single_byte_change_is_found_and_named(exported: dict[str, Any], scratch: Path, name: str) -> None:
    for pos in _positions(exported["bundle"] / name):
        for xor in (0x01, 0x20, 0x80):
            target = scratch / f"{name}-{pos}-{xor}"
            shutil.copytree(exported["bundle"], target)
            _flip(target / name, pos, xor)
            report = verify_bundle(target)
            assert not report.ok, f"{name} byte {pos} ^ {xor:#x} went unnoticed"
            assert report.problems[0].file == name, report.problems[:3]
            shutil.rmtree(target)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_changes_in_any_file_fail_naming_it(exported: dict[str, Any], scratch: Path,
                                                         data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(FILES))
    size = (exported["bundle"] / name).stat().st_size
    pos = data.draw(st.integers(0, size - 1))
    xor = data.draw(st.integers(1, 255))
    target = scratch / "random"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(exported["bundle"], target)
    _flip(target / name, pos, xor)
    report = verify_bundle(target)
    assert not report.ok
    assert report.problems[0].file == name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_changes_are_found_even_when_the_key_holder_signs_the_manifest_again(
        exported: dict[str, Any], scratch: Path, data: st.DataObject) -> None:
    """The record, proof, checkpoint and policy checks stand on their own, not on the manifest."""
    key = KeyStore(exported["home"]).active(create=False)
    name = data.draw(st.sampled_from(["records.jsonl", "proofs.jsonl", "checkpoint.note", "policy.json"]))
    size = (exported["bundle"] / name).stat().st_size
    pos = data.draw(st.integers(0, size - 1))
    xor = data.draw(st.integers(1, 255))
    target = scratch / "resigned"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(exported["bundle"], target)
    _flip(target / name, pos, xor)
    _resign_manifest(target, key.private, key.key_id)
    report = verify_bundle(target)
    assert not report.ok, f"{name} byte {pos} ^ {xor} went unnoticed"
    assert name in {p.file for p in report.problems}, report.problems[:3]


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_fails_naming_it(exported: dict[str, Any], copy: Path, name: str) -> None:
    (copy / name).unlink()
    report = verify_bundle(copy)
    assert not report.ok and report.problems[0].file == name, report.problems[:3]


def test_a_file_added_after_export_fails_naming_it(copy: Path) -> None:
    (copy / "notes.txt").write_text("looks fine to me", encoding="utf-8")
    report = verify_bundle(copy)
    assert [str(p) for p in report.problems] == ["notes.txt: is not listed in manifest.json (added after export)"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_content_in_a_file_is_a_named_problem_never_a_crash(exported: dict[str, Any], scratch: Path,
                                                                data: st.DataObject) -> None:
    """Whole files or single lines replaced by arbitrary bytes or JSON (kept in the record fields' shape or not)."""
    name = data.draw(st.sampled_from(FILES))
    target = scratch / "content"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(exported["bundle"], target)
    original = (target / name).read_bytes()
    how = data.draw(st.sampled_from(["bytes", "json", "line"]))
    if how == "bytes":
        new = data.draw(st.binary(max_size=64))
    elif how == "json":
        new = json.dumps(data.draw(JSON)).encode()
    else:
        lines = original.splitlines(keepends=True)
        i = data.draw(st.integers(0, len(lines) - 1))
        value = data.draw(JSON)
        if name in ("records.jsonl", "proofs.jsonl") and data.draw(st.booleans()):
            value = {**json.loads(lines[i]), data.draw(st.sampled_from(["seq", "kind", "run_id", "payload", "hash",
                                                                          "inclusion", "tree_size", "key_id"])): value}
        lines[i] = json.dumps(value, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        new = b"".join(lines)
    if new == original:
        return
    (target / name).write_bytes(new)
    report = verify_bundle(target)
    assert not report.ok and report.problems[0].file == name


def _drop_record(bundle: Path, seq: int) -> None:
    for name in ("records.jsonl", "proofs.jsonl"):
        lines = (bundle / name).read_bytes().splitlines(keepends=True)
        (bundle / name).write_bytes(b"".join(line for line in lines if json.loads(line)["seq"] != seq))


def test_removing_a_record_fails(exported: dict[str, Any], copy: Path, tmp_path: Path) -> None:
    run_seqs = [r["seq"] for r in exported["records"] if r["run_id"] == exported["run_id"]]
    middle = run_seqs[len(run_seqs) // 2]
    _drop_record(copy, middle)
    proc = _verify_cli(copy, cwd=tmp_path)
    assert proc.returncode == 1
    assert "records.jsonl" in proc.stderr + proc.stdout
    # Signed again by the key holder, the gap in the run's records is still found.
    key = KeyStore(exported["home"]).active(create=False)
    manifest = json.loads((copy / "manifest.json").read_bytes())
    manifest["predicate"]["records"].remove(middle)
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _resign_manifest(copy, key.private, key.key_id)
    report = verify_bundle(copy)
    assert [str(p) for p in report.problems] == [
        f"records.jsonl (record {middle}): record {middle} is missing: every record from the run's first "
        f"(seq {run_seqs[0]}) to the one that closed it (seq {run_seqs[-1]}) must be present (1 missing)"
    ]
    # A key record cannot be dropped either: the checkpoint commits to all of them.
    _drop_record(copy, 1)
    manifest["predicate"]["records"].remove(1)
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _resign_manifest(copy, key.private, key.key_id)
    problems = [str(p) for p in verify_bundle(copy).problems]
    assert any("key records in the bundle differ from those the checkpoint commits to" in p for p in problems)


# --------------------------------------------------------------------------- a forger with another key


def _forge(bundle: Path, private: Any) -> str:
    """Rewrite the whole bundle as signed by ``private``: bodies, chain, tree, checkpoint, attestation, manifest."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    assert isinstance(private, Ed25519PrivateKey)
    pub = private.public_key().public_bytes_raw()
    kid = hashlib.sha256(pub).hexdigest()
    cp = parse_checkpoint(parse_note((bundle / "checkpoint.note").read_text(encoding="utf-8"))[0])
    docs = [json.loads(line) for line in (bundle / "records.jsonl").read_bytes().splitlines()]
    assert [d["seq"] for d in docs] == list(range(1, cp.size + 1)), "the forger needs every leaf of the tree"
    prev, bodies, hashes, events = GENESIS_PREV, [], [], []
    for d in docs:
        d["key_id"] = kid
        if d["kind"] == "key_added":
            d["payload"].update(key_id=kid, public_key=pub.hex())
        d["prev_hash"] = prev.hex()
        body = canonical(d)
        h = record_hash(prev, body)
        bodies.append(body)
        hashes.append(h)
        if d["kind"] == "key_added":
            events.append((d["seq"], h))
        prev = h
    leaves = [leaf_hash(h) for h in hashes]

    def node(level: int, idx: int) -> bytes:
        return root_from_leaves(leaves[idx << level:(idx + 1) << level])

    root = root_from_leaves(leaves)
    (bundle / "records.jsonl").write_bytes(b"".join(b + b"\n" for b in bodies))
    proofs = [{"seq": i + 1, "hash": h.hex(), "signature": private.sign(h).hex(), "tree_size": cp.size,
               "inclusion": [p.hex() for p in inclusion_proof(i, cp.size, node)]} for i, h in enumerate(hashes)]
    (bundle / "proofs.jsonl").write_bytes(b"".join(canonical(p) + b"\n" for p in proofs))
    forged = Checkpoint(cp.origin, cp.size, root, (key_events_line(events),))
    (bundle / "checkpoint.note").write_text(sign_checkpoint(forged, cp.origin, private), encoding="utf-8")
    env = json.loads((bundle / "attestation.intoto.json").read_bytes())
    import base64

    stmt = json.loads(base64.b64decode(env["payload"]))
    for ref in stmt["predicate"]["records"].values():
        if ref is not None:
            ref.update(hash=hashes[ref["seq"] - 1].hex(), key_id=kid)
    env = sign_envelope(canonical(stmt), INTOTO_PAYLOAD_TYPE, private, kid)
    (bundle / "attestation.intoto.json").write_text(json.dumps(env, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    manifest["predicate"].update(checkpoint={"size": cp.size, "root": root.hex()}, signed_by=kid)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _resign_manifest(bundle, private, kid)
    return kid


def test_records_resigned_with_a_key_outside_the_trust_root_fail(exported: dict[str, Any], copy: Path,
                                                                 tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate()
    kid = _forge(copy, other)
    report = verify_bundle(copy)
    assert not report.ok
    files = {p.file for p in report.problems}
    assert {"records.jsonl", "checkpoint.note", "manifest.sig", "attestation.intoto.json"} <= files
    first_record = next(p for p in report.problems if p.file == "records.jsonl")
    assert first_record.seq == 1 and kid in first_record.what and "not in the trust file" in first_record.what
    proc = _verify_cli(copy, cwd=tmp_path, module=True)
    assert proc.returncode == 1 and "records.jsonl" in proc.stdout

    # The forger also swaps keys.json: the bundle is then consistent with itself, which is why the
    # auditor's own trust file decides.
    genuine = tmp_path / "trust.json"
    genuine.write_text(run_assay("keys", "export", home=exported["home"]).stdout, encoding="utf-8")
    keys = json.loads((copy / "keys.json").read_bytes())
    keys["keys"][0].update(key_id=kid, public_key=other.public_key().public_bytes_raw().hex())
    (copy / "keys.json").write_text(json.dumps(keys, indent=2) + "\n", encoding="utf-8")
    _resign_manifest(copy, other, kid)
    assert verify_bundle(copy).ok
    proc = _verify_cli(copy, "--trust", str(genuine), cwd=tmp_path)
    assert proc.returncode == 1
    assert "records.jsonl (record 1)" in proc.stdout + proc.stderr
    # The documented check without assay agrees: fine on its own keys, refused under the genuine ones.
    script = _doc_script(tmp_path)
    assert subprocess.run([sys.executable, "-I", str(script), str(copy)], capture_output=True).returncode == 0
    refused = subprocess.run([sys.executable, "-I", str(script), str(copy), str(genuine)], capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.strip() == "FAIL manifest.sig"


# --------------------------------------------------------------------------------------- bad usage


def test_not_a_bundle_is_bad_usage(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    for target, says in ((tmp_path / "missing", "no such folder"), (tmp_path / "empty", "not an audit bundle"),
                         (tmp_path / "file", "is a file")):
        for module in (False, True):
            proc = _verify_cli(target, cwd=tmp_path, module=module)
            assert proc.returncode == 2, proc.stderr
            assert says in proc.stderr and str(target) in proc.stderr
            assert "Traceback" not in proc.stderr


def test_bundle_options_that_do_not_fit_are_bad_usage(exported: dict[str, Any], copy: Path, tmp_path: Path) -> None:
    proc = _verify_cli(copy, "--checkpoint", str(copy / "checkpoint.note"), cwd=tmp_path)
    assert proc.returncode == 2 and "--bundle carries its own checkpoint" in proc.stderr
    proc = _verify_cli(copy, "--trust", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert proc.returncode == 2 and "nope.json does not exist" in proc.stderr


def test_export_refuses_bad_targets_and_leaves_the_ledger_untouched(exported: dict[str, Any], tmp_path: Path) -> None:
    home = exported["home"]
    before = run_assay("audit", "log", "--json", home=home).json["count"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine", encoding="utf-8")
    out = run_assay("audit", "export", exported["run_id"], "--bundle", str(full), home=home)
    assert out.returncode == 2 and "exists and is not an empty folder" in out.stderr
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    out = run_assay("audit", "export", "01NOSUCHRUN", "--bundle", str(tmp_path / "new"), home=home)
    assert out.returncode == 2 and "'01NOSUCHRUN' has no ledger records" in out.stderr
    assert not (tmp_path / "new").exists()
    out = run_assay("audit", "export", exported["run_id"], "--bundle", str(tmp_path / "b2"), "--policy-file",
                    str(EXAMPLES / "adult" / "assay.toml"), home=home)
    assert out.returncode == 2 and "--policy-file" in out.stderr and "Traceback" not in out.stderr
    assert run_assay("audit", "log", "--json", home=home).json["count"] == before


# ----------------------------------------------------------------------------------- without assay


def _doc_script(tmp_path: Path) -> Path:
    """The verification script docs/audit-bundle.md gives for auditors without assay."""
    text = (EXAMPLES.parent / "docs" / "audit-bundle.md").read_text(encoding="utf-8")
    script = tmp_path / "check_bundle.py"
    script.write_text(text.split("```python\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    assert "assay" not in script.read_text().replace("assay.ledger.record.v1", "")
    return script


def test_the_documented_check_without_assay_agrees(exported: dict[str, Any], copy: Path, tmp_path: Path) -> None:
    script = _doc_script(tmp_path)

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-I", str(script), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)

    ok = check(str(copy))
    assert ok.returncode == 0 and ok.stdout == "ok\n", ok.stderr
    line = (copy / "records.jsonl").read_bytes().splitlines()[5]
    _flip(copy / "records.jsonl", (copy / "records.jsonl").read_bytes().index(line) + line.index(b'"payload":') + 12, 1)
    key = KeyStore(exported["home"]).active(create=False)
    _resign_manifest(copy, key.private, key.key_id)
    bad = check(str(copy))
    assert bad.returncode == 1 and "records.jsonl record" in bad.stderr and "hash" in bad.stderr


# ------------------------------------------------------------------------------------ key windows


def test_rotated_keys_sign_within_their_windows(exported: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(exported["home"], home)
    old = KeyStore(home).active(create=False).key_id
    rotated = run_assay("keys", "rotate", "--json", home=home)
    assert rotated.returncode == 0, rotated.stderr
    new, at = rotated.json["key_id"], rotated.json["seq"]
    bundle = tmp_path / "bundle"
    out = run_assay("audit", "export", exported["run_id"], "--bundle", str(bundle), home=home)
    assert out.returncode == 0, out.stderr
    assert f"signed by key {new}" in out.stdout
    assert not (bundle / "policy.toml").exists()  # no --policy-file: policy.json alone holds the policy
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    assert report.checkpoint_size is not None and report.checkpoint_size >= at
    keys = {k["key_id"]: k for k in json.loads((bundle / "keys.json").read_bytes())["keys"]}
    assert keys[old]["valid_until"] == at and keys[new]["valid_from"] == at + 1
    seqs = [json.loads(line)["seq"] for line in (bundle / "records.jsonl").read_bytes().splitlines()]
    assert at in seqs  # the rotation is a key record: the bundle carries it

    # Narrow the old key's window in the trust root: the run's later records are outside it.
    run_seqs = [r["seq"] for r in exported["records"] if r["run_id"] == exported["run_id"]]
    trust = json.loads((bundle / "keys.json").read_bytes())
    for k in trust["keys"]:
        if k["key_id"] == old:
            k["valid_until"] = run_seqs[3]
    narrowed = tmp_path / "narrowed.json"
    narrowed.write_text(json.dumps(trust), encoding="utf-8")
    report = verify_bundle(bundle, trust=narrowed)
    assert not report.ok
    assert report.problems[0].file == "records.jsonl" and report.problems[0].seq == run_seqs[4]
    assert f"was rotated out at seq {run_seqs[3]}" in report.problems[0].what


@pytest.mark.postgres
def test_bundle_of_a_postgresql_ledger_verifies_offline(pg_url: str, tmp_path: Path) -> None:
    home, db = tmp_path / "home", {"ASSAY_DB_URL": pg_url}
    run = run_assay("run", str(EXAMPLES / "adult" / "assay.toml"), "--set", "train.tuning=none", "--set",
                    'train.candidates=["logistic_regression"]', "--set", "split.cv_folds=2", "--json", home=home, env=db)
    assert run.returncode == 0, run.stderr
    assert not (home / "assay.db").exists()
    bundle = tmp_path / "bundle"
    out = run_assay("audit", "export", run.json["run_id"], "--bundle", str(bundle), home=home, env=db)
    assert out.returncode == 0, out.stderr
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = _verify_cli(bundle, "--json", cwd=cwd, module=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["run_id"] == run.json["run_id"]


def test_a_run_that_failed_before_training_is_bundled_without_an_attestation(tmp_path: Path) -> None:
    from assay.audit.bundle import write_bundle
    from assay.audit.ledger import Ledger
    from assay.storage.settings import Settings

    ledger = Ledger.open(Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'assay.db'}"))
    ledger.append("run-a", "run_started", {"project": "p"})
    ledger.append("run-b", "run_started", {"project": "q"})  # another run, interleaved
    ledger.append("run-a", "run_failed", {"error": "data: column income is missing"})
    ledger.append("run-b", "run_failed", {"error": "interrupted"})
    ledger.close()
    ledger = Ledger.open(Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'assay.db'}"))
    done = write_bundle(ledger, "run-a", tmp_path / "bundle", report_html=None)
    assert "attestation.intoto.json" not in done.files and done.run_records == 2
    # run-b's record between run-a's two is carried (the chain has no gap); the one after is not
    assert [json.loads(x)["run_id"] for x in (tmp_path / "bundle" / "records.jsonl").read_bytes().splitlines()] == [
        None, "run-a", "run-b", "run-a"]
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.problems
    assert report.verdict is None and report.artifact is None
    _drop_record(tmp_path / "bundle", 3)
    assert any(p.file == "records.jsonl" and p.seq == 3 for p in verify_bundle(tmp_path / "bundle").problems)
