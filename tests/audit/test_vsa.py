"""SLSA Verification Summary Attestations and in-toto Test Results: they validate against the published
predicate definitions and their DSSE signatures verify with securesystemslib (and fail when altered).

The VSA predicate is validated with a JSON Schema transcribed from the SLSA specification
(schemas/SOURCE.md) and, field by field, with the ``in-toto-attestation`` package's protobuf model;
the Statement and the Test Result predicate with that package's models.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
from in_toto_attestation.predicates.vsa.v1 import vsa_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from tests.policies.conftest import GOOD_EVIDENCE
from tests.policies.test_cli import Stored, store_run

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "slsa-verification-summary-v1.schema.json").read_text())
VSA_FIELD = "https://assay.dev/vsa/v1"
TEST_FIELD = "https://assay.dev/test-result/v1"


def _ledger_key(stored: Stored) -> SSlibKey:
    keys = json.loads(stored.assay("keys", "list", "--json").stdout)["keys"]
    active = next(k for k in keys if k["active"])
    return SSlibKey(active["key_id"], "ed25519", "ed25519", {"public": active["public_key"]})


def _verified_statement(envelope: dict[str, Any], key: SSlibKey) -> dict[str, Any]:
    """The statement of a DSSE envelope whose signature securesystemslib accepts (raises otherwise)."""
    checked = Envelope.from_dict(copy.deepcopy(envelope))  # from_dict consumes its input
    assert key.keyid in checked.verify([key], 1)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    doc = json.loads(base64.b64decode(envelope["payload"]))
    Statement.copy_from_pb(json_format.ParseDict(doc, statement_pb2.Statement())).validate()
    return dict(doc)


def _without(doc: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in fields}


def _check_vsa(statement: dict[str, Any]) -> dict[str, Any]:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
                                    ).validate(statement)
    pred = statement["predicate"]
    # the package's model declares verifiedLevels a string (the specification: an array), so it checks the rest
    json_format.ParseDict(_without(pred, "verifiedLevels", VSA_FIELD), vsa_pb2.VerificationSummary())
    return dict(pred)


def _check_test_result(statement: dict[str, Any]) -> dict[str, Any]:
    assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    pred = statement["predicate"]
    json_format.ParseDict(_without(pred, TEST_FIELD), test_result_pb2.TestResult())  # unknown fields refused
    assert pred["result"] in ("PASSED", "WARNED", "FAILED") and pred["configuration"]
    return dict(pred)


def _gate_vsa(stored: Stored, out: Path, *extra: str) -> Any:
    return stored.assay("gate", stored.run_id, "--format", "vsa", "--output", str(out), *extra)


def test_gate_vsa_validates_and_verifies(tmp_path: Path) -> None:
    stored = store_run(tmp_path, GOOD_EVIDENCE)
    out = tmp_path / "vsa.json"
    gated = _gate_vsa(stored, out)
    assert gated.returncode == 0, gated.stderr
    key = _ledger_key(stored)
    statement = _verified_statement(json.loads(out.read_text()), key)
    pred = _check_vsa(statement)
    verdict = stored.ledger().records(kind="verdict")[-1]
    digest = stored.artifact.removeprefix("sha256:")
    assert statement["subject"] == [{"name": stored.model, "digest": {"sha256": digest}}]
    assert pred["verificationResult"] == "PASSED"
    assert pred["verifiedLevels"] == ["ASSAY_GATE_PASSED", "ASSAY_LEDGER_CHECKPOINTED"]
    assert pred["policy"] == {"uri": "assay:standard",
                              "digest": {"sha256": verdict.payload["policy_hash"].removeprefix("sha256:")}}
    assert pred["resourceUri"] == "ni:///sha-256;" + base64.urlsafe_b64encode(bytes.fromhex(digest)).decode().rstrip("=")
    assert pred["timeVerified"] == verdict.time
    assert pred[VSA_FIELD]["verdict"]["seq"] == verdict.seq and pred[VSA_FIELD]["verdict"]["hash"] == verdict.hash

    run_file = tmp_path / "vsa.run.intoto.json"
    [given] = pred["inputAttestations"]
    assert given["uri"] == run_file.resolve().as_uri()
    assert given["digest"]["sha256"] == hashlib.sha256(run_file.read_bytes()).hexdigest()
    run_statement = _verified_statement(json.loads(run_file.read_bytes()), key)
    assert run_statement["predicateType"] == "https://assay.dev/attestation/gate/v1"
    assert run_statement["subject"] == statement["subject"]

    lines = (tmp_path / "vsa.tests.intoto.jsonl").read_text().splitlines()
    rules = verdict.payload["rules"]
    assert len(lines) == len(rules) > 5
    for line, rule in zip(lines, rules, strict=True):
        result = _check_test_result(_verified_statement(json.loads(line), key))
        listed = result["passedTests"] + result["warnedTests"] + result["failedTests"]
        assert listed == [rule["id"]] and result[TEST_FIELD]["outcome"] in ("pass", "n/a", "warn")
        assert result["configuration"][0]["digest"] == pred["policy"]["digest"]
        assert result["result"] != "FAILED"

    logged = stored.ledger().records(kind="attestation")
    assert [r.payload["format"] for r in logged] == ["slsa-vsa"]
    assert logged[0].payload["payload_sha256"] == hashlib.sha256(
        base64.b64decode(json.loads(out.read_text())["payload"])).hexdigest()


def test_blocked_verdict_is_failed_with_the_failing_rule(tmp_path: Path) -> None:
    evidence = copy.deepcopy(GOOD_EVIDENCE)
    evidence["checks"]["leakage"]["duplicates"].update(status="fail", value=37)
    stored = store_run(tmp_path, evidence)
    out = tmp_path / "blocked.intoto.json"
    gated = _gate_vsa(stored, out)
    assert gated.returncode == 1, gated.stderr  # the gate's exit code is the verdict's
    key = _ledger_key(stored)
    pred = _check_vsa(_verified_statement(json.loads(out.read_text()), key))
    assert pred["verificationResult"] == "FAILED" and pred["verifiedLevels"] == ["FAILED"]
    results = [_check_test_result(_verified_statement(json.loads(line), key))
               for line in (tmp_path / "blocked.tests.intoto.jsonl").read_text().splitlines()]
    failed = [r for r in results if r["result"] == "FAILED"]
    assert failed and all(r[TEST_FIELD]["outcome"] in ("block", "error") for r in failed)
    assert any("leakage" in r["failedTests"][0] for r in failed)


def test_export_summarizes_the_governing_verdict_as_one_bundle(tmp_path: Path) -> None:
    stored = store_run(tmp_path, GOOD_EVIDENCE)
    assert stored.assay("gate", stored.run_id).returncode == 0
    governing = stored.ledger().records(kind="verdict")[-1]
    permissive = stored.project / "permissive.toml"
    permissive.write_text('name = "permissive"\n[[rules]]\nid = "any"\npath = "metrics.test.roc_auc"\n'
                          'op = ">="\nthreshold = 0.0\n')
    assert stored.assay("gate", stored.run_id, "--policy", str(permissive)).returncode == 0
    exported = stored.assay("audit", "export", stored.run_id, "--format", "vsa")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    key = _ledger_key(stored)
    statements = [_verified_statement(json.loads(line), key) for line in lines]
    vsa, run_attestation, *tests = statements
    pred = _check_vsa(vsa)
    assert pred[VSA_FIELD]["verdict"]["seq"] == governing.seq  # the training policy's, not the permissive one
    assert pred["inputAttestations"][0]["digest"]["sha256"] == hashlib.sha256(lines[1].encode()).hexdigest()
    assert run_attestation["predicateType"] == "https://assay.dev/attestation/gate/v1"
    assert len(tests) == len(governing.payload["rules"])

    out = tmp_path / "exported.json"
    written = stored.assay("audit", "export", stored.run_id, "--format", "vsa", "--output", str(out))
    assert written.returncode == 0 and (tmp_path / "exported.tests.intoto.jsonl").is_file(), written.stderr

    gated = _gate_vsa(stored, tmp_path / "permissive.json", "--policy", str(permissive))
    assert gated.returncode == 0, gated.stderr
    pred = _check_vsa(_verified_statement(json.loads((tmp_path / "permissive.json").read_text()), key))
    assert pred["policy"]["uri"] == permissive.resolve().as_uri()


def test_altered_or_foreign_signed_documents_do_not_verify(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from assay.audit.dsse import sign_envelope

    stored = store_run(tmp_path, GOOD_EVIDENCE)
    out = tmp_path / "vsa.json"
    assert _gate_vsa(stored, out).returncode == 0
    key = _ledger_key(stored)
    envelope = json.loads(out.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["verificationResult"] = "PASSED"
    statement["subject"][0]["digest"]["sha256"] = "00" * 32  # claim another artifact passed
    altered = dict(envelope, payload=base64.b64encode(json.dumps(statement).encode()).decode())
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Envelope.from_dict(copy.deepcopy(altered)).verify([key], 1)
    mallory = Ed25519PrivateKey.generate()
    foreign = sign_envelope(json.dumps(statement).encode(), "application/vnd.in-toto+json", mallory, key.keyid)
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Envelope.from_dict(copy.deepcopy(foreign)).verify([key], 1)
    bad_schema = copy.deepcopy(statement)
    bad_schema["predicate"]["verifiedLevels"] = ["SLSA_ASSAY_LEVEL"]  # custom levels must not claim SLSA_
    with pytest.raises(jsonschema.ValidationError):
        _check_vsa(bad_schema)


def test_vsa_to_a_missing_folder_is_bad_input(tmp_path: Path) -> None:
    stored = store_run(tmp_path, GOOD_EVIDENCE)
    out = _gate_vsa(stored, tmp_path / "nope" / "vsa.json")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
