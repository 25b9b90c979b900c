"""SLSA Verification Summary Attestations for verdicts, with each rule's outcome as an in-toto Test Result.

``assay gate RUN_ID --format vsa`` (the verdict just made) and ``assay audit export RUN_ID --format vsa``
(the governing verdict for the run's artifact under the policy it was trained under) write three
kinds of DSSE envelopes, each an in-toto Statement v1 whose subject is the model artifact, signed
with the ledger's Ed25519 key (keyid: its key id, the public key ``assay keys list`` shows):

* the VSA (predicate ``https://slsa.dev/verification_summary/v1``): ``verifier.id``, ``timeVerified``
  (the verdict record's time), ``resourceUri`` (the artifact as an RFC 6920 ``ni:///sha-256;…`` name),
  ``policy`` (``uri``: the pack name or the policy file's ``file:`` URI; ``digest.sha256``: assay's
  policy digest, the SHA-256 of its RFC 8785 canonical form), ``inputAttestations`` (the run's in-toto
  attestation, by SHA-256 of its exact bytes), ``verificationResult`` PASSED when the verdict passes and
  is bound to the run's signed evidence and artifact, ``verifiedLevels`` (below), ``slsaVersion``;
  assay's own details (verdict seq and hash, ledger origin, a checkpoint covering the verdict) ride
  in the URI-named field ``https://assay.dev/vsa/v1``;
* the run's in-toto attestation (``assay audit export --format intoto``) that the VSA names as input;
* one Test Result (``https://in-toto.io/attestation/test-result/v0.1``) per rule outcome: ``result``
  PASSED (pass, and rules that do not apply), WARNED (warn, waived) or FAILED (block, error), the
  policy as its ``configuration``, the rule id in ``passedTests`` / ``warnedTests`` / ``failedTests``,
  and the measured value, threshold and reason in ``https://assay.dev/test-result/v1``.

Levels (SLSA allows custom names not starting with ``SLSA_``; one per track): the gate track is
``ASSAY_GATE_PASSED``; the ledger track is ``ASSAY_LEDGER_VERIFIED`` (the ledger verified to its head:
every record re-hashed, chained and signed by a key valid at its position) or, above it,
``ASSAY_LEDGER_CHECKPOINTED`` (a signed checkpoint covers the verdict). A failed verification lists
only ``FAILED``, as the VSA specification asks.

With ``--output F``: F holds the VSA; ``<F>.run.intoto.json`` the run attestation (byte for byte
what the VSA's digest names) and ``<F>.tests.intoto.jsonl`` the Test Results, one envelope a line
(an in-toto bundle). Without it, stdout gets one in-toto bundle: the VSA, the run attestation, then
the Test Results. Each VSA is logged as an ``attestation`` record.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.audit.canonical import canonical
from assay.audit.dsse import INTOTO_PAYLOAD_TYPE, pae, sign_envelope
from assay.commands.attest import checkpoint_summary, covering_checkpoint, sha256_hex
from assay.errors import BadInput

if TYPE_CHECKING:
    from assay.storage.settings import Settings

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"
VSA_FIELD = "https://assay.dev/vsa/v1"
TEST_FIELD = "https://assay.dev/test-result/v1"
VERIFIER_ID = "https://assay.dev/verifier/gate/v1"
GATE_PASSED = "ASSAY_GATE_PASSED"
LEDGER_VERIFIED = "ASSAY_LEDGER_VERIFIED"
LEDGER_CHECKPOINTED = "ASSAY_LEDGER_CHECKPOINTED"
FAILED = "FAILED"
_RESULT = {"pass": "PASSED", "n/a": "PASSED", "warn": "WARNED", "waived": "WARNED", "block": "FAILED", "error": "FAILED"}
_LIST = {"PASSED": "passedTests", "WARNED": "warnedTests", "FAILED": "failedTests"}


@dataclass
class VsaSet:
    """The signed documents of one verdict's summary."""

    run_id: str
    verdict_seq: int
    result: str
    vsa: dict[str, Any]
    run_attestation: bytes  # the exact bytes the VSA's inputAttestations digest names
    test_results: list[dict[str, Any]] = field(default_factory=list)
    attestation_seq: int | None = None

    def bundle_text(self) -> str:
        """One in-toto bundle (JSON Lines): the VSA, the run attestation, then the Test Results."""
        lines = [canonical(self.vsa), self.run_attestation, *(canonical(t) for t in self.test_results)]
        return "".join(line.decode() + "\n" for line in lines)


def resource_uri(artifact: str) -> str:
    """An RFC 6920 named-information URI for ``sha256:HEX``."""
    raw = bytes.fromhex(artifact.removeprefix("sha256:"))
    return "ni:///sha-256;" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def policy_uri(source: str, base: Path | None = None) -> str:
    """A policy's URI: a bundled or plugin pack's name (``assay:standard``), or its file as a ``file:`` URI."""
    if not source:
        return "urn:assay:policy:unknown"
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.suffix == ".toml" or path.is_file():
        return path.resolve().as_uri()
    return source if ":" in source else f"urn:assay:policy:{source}"


def sidecar_paths(output: Path) -> tuple[Path, Path]:
    """Where the run attestation and the Test Results go beside a VSA written to ``output``."""
    stem = output.name
    for suffix in (".json", ".intoto"):
        stem = stem.removesuffix(suffix)
    return output.with_name(f"{stem}.run.intoto.json"), output.with_name(f"{stem}.tests.intoto.jsonl")


def build_vsa(settings: Settings, run_ref: str, policy: Any = None, output: Path | None = None) -> VsaSet:
    """Sign the VSA, the run attestation and the Test Results of RUN's governing verdict.

    :param policy: the policy a gate just judged under (its verdict is the newest under it); None:
        the policy the run was trained under, as ``assay verify`` pins it.
    :param output: where the VSA will be written (its sidecars' names go into the VSA).
    """
    from assay.audit.export import intoto_envelope
    from assay.audit.ledger import Ledger
    from assay.commands.deploy import training_policy, verify_artifact
    from assay.storage.signed import SignedLedger

    if output is not None and not output.parent.is_dir():
        raise BadInput(f"--output {output}: folder {output.parent} does not exist (create it, or pick another path)")
    signed = SignedLedger.open(settings)
    run_id = signed.resolve_run(run_ref)
    model = signed.last(run_id, "model")
    if model is None:
        raise BadInput(f"run {run_id} has no model record: there is no artifact to summarize")
    artifact = str(model.payload.get("artifact") or "")
    started = signed.started(run_id)
    if policy is not None:
        pinned, source, base = policy.hash, policy.source, None
    else:
        pinned = training_policy(signed, run_id)["hash"]
        source = str(((started.get("spec") or {}).get("gate") or {}).get("policy") or "")
        base = Path(str(started.get("spec_path") or ".")).parent
    result = verify_artifact(signed, artifact, require="pass", policy_hash=pinned)
    if result.verdict_seq is None:
        raise BadInput(f"run {run_id} has no verdict under policy {pinned} for its artifact: {result.reason}; "
                       f"record one with: assay gate {run_id}")
    verdict = next(r for r in signed.records if r.seq == result.verdict_seq)
    vp = verdict.payload or {}
    passed = result.ok
    note = covering_checkpoint(settings, verdict.seq)
    checkpoint = checkpoint_summary(note)
    ref = f"{model.payload.get('name') or 'model'}@{model.payload.get('version')}"
    subject = [{"name": ref, "digest": {"sha256": artifact.removeprefix("sha256:")}}]
    policy_rd = {"name": str(vp.get("policy") or ""), "uri": policy_uri(source, base),
                 "digest": {"sha256": str(vp.get("policy_hash") or pinned).removeprefix("sha256:")}}

    ledger = Ledger.open(settings)
    try:
        key = ledger.signer()
        run_attestation = canonical(intoto_envelope(ledger, run_id))
        input_rd: dict[str, Any] = {"digest": {"sha256": sha256_hex(run_attestation)}}
        if output is not None:
            input_rd["uri"] = sidecar_paths(output.resolve())[0].as_uri()  # a URI, not a relative reference
        levels = [GATE_PASSED, LEDGER_CHECKPOINTED if checkpoint["size"] >= verdict.seq else LEDGER_VERIFIED]
        statement: dict[str, Any] = {
            "_type": STATEMENT_TYPE,
            "subject": subject,
            "predicateType": VSA_PREDICATE,
            "predicate": {
                "verifier": {"id": VERIFIER_ID},
                "timeVerified": verdict.time,
                "resourceUri": resource_uri(artifact),
                "policy": {"uri": policy_rd["uri"], "digest": policy_rd["digest"]},
                "inputAttestations": [input_rd],
                "verificationResult": "PASSED" if passed else "FAILED",
                "verifiedLevels": levels if passed else [FAILED],
                "slsaVersion": "1.0",
                VSA_FIELD: {
                    "run_id": run_id, "model": ref, "artifact": artifact,
                    "verdict": {"seq": verdict.seq, "hash": verdict.hash, "key_id": verdict.key_id,
                                "decision": vp.get("decision"), "policy": vp.get("policy"),
                                "policy_hash": vp.get("policy_hash")},
                    "reason": result.reason,
                    "ledger": {"origin": signed.report.origin, "size": len(signed.records)},
                    "checkpoint": checkpoint,
                },
            },
        }
        vsa_payload = canonical(statement)
        vsa = sign_envelope(vsa_payload, INTOTO_PAYLOAD_TYPE, key.private, key.key_id)
        tests = [sign_envelope(canonical(_test_result(subject, policy_rd, rule, verdict, run_id)),
                               INTOTO_PAYLOAD_TYPE, key.private, key.key_id)
                 for rule in vp.get("rules") or [] if isinstance(rule, dict)]
        record = ledger.record_attestation(run_id, {
            "format": "slsa-vsa", "key_id": key.key_id, "algorithm": "ed25519",
            "signed_sha256": sha256_hex(pae(INTOTO_PAYLOAD_TYPE, vsa_payload)),
            "payload_sha256": sha256_hex(vsa_payload), "predicate_type": VSA_PREDICATE,
            "verification_result": statement["predicate"]["verificationResult"], "artifact": artifact,
            "verdict_seq": verdict.seq, "test_results": len(tests),
            "test_results_sha256": sha256_hex(b"".join(canonical(t) for t in tests)),
        })
    finally:
        ledger.close()
    return VsaSet(run_id, verdict.seq, statement["predicate"]["verificationResult"], vsa, run_attestation, tests,
                  record.seq)


def _test_result(subject: list[dict[str, Any]], policy_rd: dict[str, Any], rule: dict[str, Any], verdict: Any,
                 run_id: str) -> dict[str, Any]:
    outcome = str(rule.get("outcome") or "error")
    reason = str(rule.get("reason") or "")
    if outcome == "pass" and reason.startswith("not applicable"):
        outcome = "n/a"  # verdicts recorded before the n/a outcome existed
    result = _RESULT.get(outcome, "FAILED")
    rule_id = str(rule.get("id") or "")
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": TEST_RESULT_PREDICATE,
        "predicate": {
            "result": result,
            "configuration": [policy_rd],
            "passedTests": [rule_id] if result == "PASSED" else [],
            "warnedTests": [rule_id] if result == "WARNED" else [],
            "failedTests": [rule_id] if result == "FAILED" else [],
            TEST_FIELD: {
                "rule": rule_id, "outcome": outcome, "path": rule.get("path"), "op": rule.get("op"),
                "measured": rule.get("measured"), "threshold": rule.get("threshold"),
                "severity": rule.get("severity"), "reason": reason, "run_id": run_id,
                "verdict": {"seq": verdict.seq, "hash": verdict.hash},
            },
        },
    }


def write_vsa(docs: VsaSet, output: Path) -> list[Path]:
    """Write the VSA to ``output`` and its run attestation and Test Results beside it; returns the paths."""
    if not output.parent.is_dir():
        raise BadInput(f"--output {output}: folder {output.parent} does not exist (create it, or pick another path)")
    run_path, tests_path = sidecar_paths(output)
    writes = [(output, (json.dumps(docs.vsa, indent=2) + "\n").encode()), (run_path, docs.run_attestation),
              (tests_path, "".join(canonical(t).decode() + "\n" for t in docs.test_results).encode())]
    for path, data in writes:
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc.strerror}") from None
    return [p for p, _ in writes]
