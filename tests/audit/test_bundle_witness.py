"""Audit bundles of a witnessed ledger with two runs: cosignatures travel with the checkpoint and are checked offline."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.audit import witness as w
from assay.audit.bundle import verify_bundle
from assay.audit.note import EM_DASH
from tests.audit.test_witness import WitnessServer, start_server, stop_server
from tests.conftest import EXAMPLES, run_assay

RUN = ("run", str(EXAMPLES / "adult" / "assay.toml"), "--set", "train.tuning=none", "--set",
       'train.candidates=["logistic_regression"]', "--set", "split.cv_folds=2", "--json")


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WitnessServer]:
    srv = start_server(tmp_path_factory.mktemp("witness") / "w", name="witness.test/bundle")
    yield srv
    stop_server(srv.proc)


@pytest.fixture(scope="module")
def witnessed(witness: WitnessServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("witnessed")
    home = base / "home"
    first = run_assay(*RUN, home=home)
    assert first.returncode == 0, first.stderr
    second = run_assay(*RUN, "--set", "split.seed=7", home=home)
    assert second.returncode == 0, second.stderr
    witness.add_log(run_assay("keys", "vkey", home=home).stdout.strip())
    cp = run_assay("audit", "checkpoint", "--witness", witness.url, home=home)
    assert cp.returncode == 0, cp.stderr
    records = run_assay("audit", "log", "--json", home=home).json["records"]
    return {"home": home, "base": base, "first": first.json["run_id"], "records": records}


def test_bundle_of_the_first_run_carries_the_cosigned_checkpoint(witness: WitnessServer,
                                                                 witnessed: dict[str, Any], tmp_path: Path) -> None:
    run_id = witnessed["first"]
    bundle = tmp_path / "bundle"
    out = run_assay("audit", "export", run_id, "--bundle", str(bundle), "--witness-key", witness.vkey,
                    home=witnessed["home"])
    assert out.returncode == 0, out.stderr
    assert "1 cosignature(s)" in out.stdout
    assert (bundle / "witnesses.txt").read_text() == witness.vkey + "\n"
    note = (bundle / "checkpoint.note").read_text()
    assert f"\n{EM_DASH} {witness.name} " in note

    # The ledger holds both runs; the bundle holds the first run's records and the key record, and its
    # checkpoint covers the second run too (it is the newest, witnessed one).
    run_seqs = [r["seq"] for r in witnessed["records"] if r["run_id"] == run_id]
    lines = (bundle / "records.jsonl").read_bytes().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, *run_seqs]
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    assert report.checkpoint_size == len(witnessed["records"]) > max(run_seqs)
    assert report.cosigned_by == [witness.vkey] and report.cosignatures_unchecked == 0

    # Offline with the auditor's own witness key too; a witness that did not cosign is a finding.
    proc = run_assay("audit", "verify", "--bundle", str(bundle), "--witness-key", witness.vkey, cwd=tmp_path,
                     env={"HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"cosigned by witness(es): {witness.vkey}" in proc.stdout
    stranger = w.format_vkey("witness.test/stranger", w.COSIGNATURE_ALG,
                             Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    proc = run_assay("audit", "verify", "--bundle", str(bundle), "--witness-key", stranger, cwd=tmp_path)
    assert proc.returncode == 1
    assert "checkpoint.note: witness:" in proc.stdout + proc.stderr and "witness.test/stranger" in proc.stdout + proc.stderr
    proc = run_assay("audit", "verify", "--bundle", str(bundle), "--witness-key", stranger, "--quorum", "3",
                     cwd=tmp_path)
    assert proc.returncode == 2 and "--quorum 3" in proc.stderr


def test_a_changed_cosignature_is_found(witness: WitnessServer, witnessed: dict[str, Any], tmp_path: Path) -> None:
    from assay.audit.keys import KeyStore
    from tests.audit.test_bundle import _resign_manifest

    bundle = tmp_path / "bundle"
    out = run_assay("audit", "export", witnessed["first"], "--bundle", str(bundle), "--witness-key", witness.vkey,
                    home=witnessed["home"])
    assert out.returncode == 0, out.stderr
    text = (bundle / "checkpoint.note").read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"{EM_DASH} {witness.name} "))
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[-1] ^= 0x01  # inside the cosignature's Ed25519 signature
    forged = f"{EM_DASH} {witness.name} {base64.b64encode(bytes(blob)).decode()}"
    (bundle / "checkpoint.note").write_text(text.replace(line, forged))
    key = KeyStore(witnessed["home"]).active(create=False)
    _resign_manifest(bundle, key.private, key.key_id)  # even the key holder cannot make it pass
    report = verify_bundle(bundle)
    assert not report.ok
    assert {p.file for p in report.problems} == {"checkpoint.note"}
    assert f"cosignature by {witness.name} does not verify" in report.problems[0].what


def test_without_witness_keys_the_cosignature_is_reported_unchecked(witnessed: dict[str, Any], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    out = run_assay("audit", "export", witnessed["first"], "--bundle", str(bundle), home=witnessed["home"])
    assert out.returncode == 0, out.stderr
    assert not (bundle / "witnesses.txt").exists()
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    proc = run_assay("audit", "verify", "--bundle", str(copy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 other signature line(s) on the checkpoint not checked: pass --witness-key VKEY" in proc.stdout
