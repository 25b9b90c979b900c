"""``assay report RUN --format cyclonedx``: a CycloneDX 1.6 ML-BOM, schema-valid and JSF-signed.

The BOM is validated with cyclonedx-python-lib's strict 1.6 validator; its Ed25519 JSF
signature is checked here with ``cryptography`` and ``rfc8785`` alone (not assay's code),
against the key the home's trust list names.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.conftest import run_assay
from tests.interop.conftest import Project


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jsf_verify(document: dict[str, Any], public_raw: bytes) -> bool:
    """JSF: the signature object stays in the signed data, minus its ``value``; JCS canonical form."""
    signature = dict(document["signature"])
    value = _b64url(signature.pop("value"))
    signed = {**document, "signature": signature}
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(value, rfc8785.dumps(signed))
    except InvalidSignature:
        return False
    return True


def make_bom(proj: Project, run_id: str, out: Path) -> tuple[int, str, dict[str, Any] | None]:
    result = run_assay("report", run_id, "--format", "cyclonedx", "--output", str(out), home=proj.home)
    bom = json.loads(out.read_text(encoding="utf-8")) if result.returncode == 0 else None
    return result.returncode, result.stdout + result.stderr, bom


def trusted_key(proj: Project) -> bytes:
    keys = run_assay("keys", "list", "--json", home=proj.home).json["keys"]
    [active] = [k for k in keys if k["active"]]
    assert active["trusted"]
    return bytes.fromhex(active["public_key"])


@pytest.fixture(scope="module")
def bom(trained: tuple[Project, dict], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proj, run = trained
    code, output, document = make_bom(proj, run["run_id"], tmp_path_factory.mktemp("bom") / "bom.json")
    assert code == 0, output
    assert "CycloneDX 1.6 ML-BOM" in output and run["run_id"] in output
    assert document is not None
    return document


def test_bom_validates_against_the_cyclonedx_1_6_schema(bom: dict[str, Any]) -> None:
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert errors is None, errors
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"


def test_signature_verifies_independently_with_the_trusted_ledger_key(
        trained: tuple[Project, dict], bom: dict[str, Any]) -> None:
    proj, _ = trained
    key = trusted_key(proj)
    sig = bom["signature"]
    assert sig["algorithm"] == "Ed25519"
    assert sig["publicKey"] == {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(key).rstrip(b"=").decode()}
    assert jsf_verify(bom, key)


def test_one_changed_value_breaks_the_signature(trained: tuple[Project, dict], bom: dict[str, Any]) -> None:
    proj, _ = trained
    key = trusted_key(proj)
    forged = json.loads(json.dumps(bom))
    card = next(c for c in forged["components"] if c["type"] == "machine-learning-model")["modelCard"]
    metric = card["quantitativeAnalysis"]["performanceMetrics"][0]
    metric["value"] = "0.999"
    assert not jsf_verify(forged, key)
    # re-signing with another key: the document verifies only under that key, not the trusted one
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from assay.audit.keys import SigningKey
    from assay.commands.bom import sign_bom, verify_signature

    resigned = sign_bom(forged, SigningKey.from_private(Ed25519PrivateKey.generate(), "attacker"))
    assert not jsf_verify(resigned, key)
    from assay.errors import Finding

    with pytest.raises(Finding, match="another public key"):
        verify_signature(resigned, key)
    assert verify_signature(bom, key) == bom["signature"]["keyId"]


def test_model_card_is_filled_from_the_signed_evidence(trained: tuple[Project, dict], bom: dict[str, Any]) -> None:
    proj, run = trained
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    evidence, _ = SignedLedger.open(Settings(proj.home, f"sqlite:///{proj.home / 'assay.db'}")).evidence(run["run_id"])
    [model] = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert model["hashes"] == [{"alg": "SHA-256", "content": run["model"]["artifact"].removeprefix("sha256:")}]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["assay:run_id"] == run["run_id"]
    assert props["assay:verdict"] == run["verdict"]["decision"]
    assert props["assay:policy_hash"] == run["verdict"]["policy_hash"]
    params = model["modelCard"]["modelParameters"]
    assert params["task"] == "binary classification"
    assert params["approach"] == {"type": "supervised"}
    assert params["architectureFamily"] == "generalized linear model"
    assert params["modelArchitecture"].startswith("logistic_regression")

    data = {c["bom-ref"]: c for c in bom["components"] if c["type"] == "data"}
    assert sorted(d["ref"] for d in params["datasets"]) == sorted(data) == ["data:source", "data:test", "data:train"]
    fingerprints = {ref: {p["name"]: p["value"] for p in c["properties"]}["assay:fingerprint"] for ref, c in data.items()}
    assert fingerprints == {"data:source": evidence["data"]["fingerprint"],
                            "data:train": evidence["split"]["train"]["fingerprint"],
                            "data:test": evidence["split"]["test"]["fingerprint"]}
    assert all({p["name"]: p["value"] for p in c["properties"]}["assay:source"] == "adult.csv" for c in data.values())
    assert data["data:source"]["data"][0]["sensitiveData"] == ["sex", "race"]

    metrics = model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    [auc] = [m for m in metrics if m["type"] == "roc_auc" and m["slice"].startswith("holdout")]
    assert float(auc["value"]) == evidence["metrics"]["test"]["roc_auc"]
    low, high = evidence["metrics"]["test"]["roc_auc_ci"]
    assert auc["confidenceInterval"] == {"lowerBound": json.dumps(low), "upperBound": json.dumps(high)}
    assert any(m["slice"].startswith("cross-validation") for m in metrics)
    assert any(m["slice"].startswith("baseline dummy") for m in metrics)
    female = [m for m in metrics if m["slice"].startswith("sex = Female")]
    assert {m["type"] for m in female} >= {"selection_rate", "false_negative_rate", "false_positive_rate"}
    [ratio] = [m for m in metrics if m["type"] == "selection_rate_ratio" and m["slice"].startswith("across the groups of sex ")]
    assert "confidenceInterval" in ratio


def test_fairness_assessments_cover_every_sensitive_group(bom: dict[str, Any], trained: tuple[Project, dict]) -> None:
    _, run = trained
    [model] = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    considerations = model["modelCard"]["considerations"]
    assessments = {a["groupAtRisk"]: a for a in considerations["fairnessAssessments"]}
    assert {"sex = Female", "sex = Male", "race = White", "race = Black"} <= set(assessments)
    assert any(g.startswith("sex&race = ") for g in assessments)
    female = assessments["sex = Female"]
    assert "selection rate" in female["benefits"] and "false negative rate" in female["harms"]
    # the gate's judgement of that column rides along as the mitigation
    sex_rules = [r for r in run["verdict"]["rules"] if r["path"].startswith("fairness.sex.")]
    assert sex_rules and all(r["id"] in female["mitigationStrategy"] for r in sex_rules)
    assert considerations["useCases"] == ["income above 50K from census attributes (interoperability test)"]


def test_dependencies_come_from_the_recorded_environment(bom: dict[str, Any]) -> None:
    libraries = {c["name"]: c for c in bom["components"] if c["type"] == "library"}
    import sklearn

    assert libraries["scikit-learn"]["version"] == sklearn.__version__
    assert libraries["scikit-learn"]["purl"] == f"pkg:pypi/scikit-learn@{sklearn.__version__}"
    [model] = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    [graph] = [d for d in bom["dependencies"] if d["ref"] == model["bom-ref"]]
    assert "data:train" in graph["dependsOn"] and libraries["scikit-learn"]["bom-ref"] in graph["dependsOn"]
    refs = {c["bom-ref"] for c in bom["components"]}
    assert all(ref in refs for d in bom["dependencies"] for ref in [d["ref"], *d.get("dependsOn", [])])


def test_bom_is_reproducible_for_the_same_run(trained: tuple[Project, dict], bom: dict[str, Any], tmp_path: Path) -> None:
    proj, run = trained
    code, output, again = make_bom(proj, run["run_id"][:10], tmp_path / "again.json")
    assert code == 0, output
    assert again == bom


def test_bom_is_built_from_the_ledger_not_the_runs_table(project: Project, tmp_path: Path) -> None:
    run = project.run()
    db = project.home / "assay.db"
    with sqlite3.connect(db) as conn:
        [(evidence_json,)] = conn.execute("SELECT evidence_json FROM runs WHERE run_id = ?", (run["run_id"],)).fetchall()
        altered = json.loads(evidence_json)
        altered["metrics"]["test"]["roc_auc"] = 0.999
        altered["fairness"]["sex"]["by_group"].pop("Female")
        conn.execute("UPDATE runs SET evidence_json = ? WHERE run_id = ?", (json.dumps(altered), run["run_id"]))
    code, output, document = make_bom(project, run["run_id"], tmp_path / "bom.json")
    assert code == 0, output
    assert document is not None
    [model] = [c for c in document["components"] if c["type"] == "machine-learning-model"]
    [auc] = [m for m in model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
             if m["type"] == "roc_auc" and m["slice"].startswith("holdout")]
    assert float(auc["value"]) == run["metrics"]["test"]["roc_auc"] != 0.999
    assert "sex = Female" in {a["groupAtRisk"] for a in model["modelCard"]["considerations"]["fairnessAssessments"]}


def test_tampered_ledger_gives_no_bom(project: Project, tmp_path: Path) -> None:
    run = project.run()
    from tests.audit.tamper_tools import Raw

    raw = Raw(f"sqlite:///{project.home / 'assay.db'}")
    raw.drop_triggers()
    [(seq, body)] = raw.rows("SELECT seq, body FROM ledger_records WHERE run_id = ? AND kind = 'evidence'", (run["run_id"],))
    assert b'"roc_auc":0.' in body
    raw.set(seq, body=body.replace(b'"roc_auc":0.', b'"roc_auc":0.9', 1))
    out = tmp_path / "bom.json"
    code, output, _ = make_bom(project, run["run_id"], out)
    assert code == 1, output
    assert "does not verify" in output and not out.exists()


def test_bad_input_is_exit_2(trained: tuple[Project, dict], tmp_path: Path) -> None:
    proj, run = trained
    missing = run_assay("report", "01NOSUCHRUN000000", "--format", "cyclonedx", "--output", str(tmp_path / "b.json"),
                        home=proj.home)
    assert missing.returncode == 2 and "not found in the ledger" in missing.stderr
    folder = run_assay("report", run["run_id"], "--format", "cyclonedx", "--output", str(tmp_path / "no" / "b.json"),
                       home=proj.home)
    assert folder.returncode == 2 and "does not exist" in folder.stderr
    wrong = run_assay("report", run["run_id"], "--format", "spdx", "--output", str(tmp_path / "b.json"), home=proj.home)
    assert wrong.returncode == 2 and "cyclonedx" in wrong.stderr
