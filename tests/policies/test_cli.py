"""The gate and deploy commands, run for real (`python -m assay`) on a run stored with its evidence.

The run is synthetic (evidence written through RunStore, the model bytes through the artifact
store) so each command's contract — exit code, output, ledger records — is checked quickly;
real-data runs are covered by the end-to-end tests of `assay run`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml

from assay.audit.ledger import Ledger
from assay.kernel.spec import RunSpec
from assay.storage.settings import Settings
from assay.storage.store import ArtifactStore, RunRow, RunStore
from tests.conftest import run_assay

from .conftest import GOOD_EVIDENCE

SPEC = """\
[project]
name = "credit"

[data]
source = "credit.csv"
target = "default"
task = "binary"
sensitive = ["sex", "race"]

[gate]
policy = "{policy}"
"""


@dataclass
class Stored:
    home: Path
    project: Path
    run_id: str
    model: str
    artifact: str
    model_file: Path
    settings: Settings

    def ledger(self) -> Ledger:
        return Ledger.open(self.settings)

    def assay(self, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        env = {"ASSAY_DB_URL": self.settings.db_url, **(env or {})}
        return run_assay(*args, home=self.home, cwd=self.project, env=env, **kw)


def store_run(tmp_path: Path, evidence: dict[str, Any], policy: str = "assay:standard", run_id: str = "01JRUN0001",
              db: str | None = None,
              model_bytes: bytes = b"model bytes v1") -> Stored:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(exist_ok=True)
    spec_path = project / "assay.toml"
    spec_path.write_text(SPEC.format(policy=policy), encoding="utf-8")
    import tomllib

    spec = RunSpec.model_validate(tomllib.loads(spec_path.read_text()))
    settings = Settings.resolve(home, db)
    store = RunStore(settings)
    store.create_run(RunRow(run_id=run_id, project="credit", status="passed", spec_path=str(spec_path),
                            spec_json=spec.model_dump_json(), spec_hash=spec.hash))
    artifact = ArtifactStore(home).put_bytes(model_bytes)
    version = store.add_model_version("credit", run_id, artifact, "hist_gradient_boosting")
    policy_doc = _policy(policy, project)
    evidence = copy.deepcopy(evidence)
    evidence.update(run_id=run_id, policy_hash=policy_doc.hash, spec_hash=spec.hash)
    evidence["model"].update(ref=version.ref, artifact=artifact, name="credit", version=version.version)
    store.update_run(run_id, evidence_json=json.dumps(evidence))
    # The signed records a run writes: what gate, verify and promote read.
    ledger = Ledger.open(settings)
    ledger.append_many([
        (run_id, "run_started", {"project": "credit", "spec": spec.model_dump(mode="json"), "spec_hash": spec.hash,
                                 "spec_path": str(spec_path),
                                 "policy": {"name": policy_doc.name, "hash": policy_doc.hash,
                                            "approvals": policy_doc.approvals, "document": dict(policy_doc.document)}}),
        (run_id, "model", {"name": "credit", "version": version.version, "family": "hist_gradient_boosting",
                           "params": {}, "artifact": artifact, "predictions_hash": "sha256:" + "0" * 64}),
        (run_id, "evidence", evidence),
    ])
    ledger.close()
    model_file = tmp_path / "deploy" / "model.skops"
    model_file.parent.mkdir(exist_ok=True)
    model_file.write_bytes(model_bytes)
    return Stored(home, project, run_id, version.ref, artifact, model_file, settings)


def _policy(ref: str, base: Path) -> Any:
    from assay.commands.governance import collect_packs
    from assay.kernel.manager import make_plugin_manager
    from assay.policies import load_policy

    return load_policy(ref, base, collect_packs(make_plugin_manager()))


@pytest.fixture
def good(tmp_path: Path) -> Stored:
    return store_run(tmp_path, GOOD_EVIDENCE)


@pytest.fixture
def leaky(tmp_path: Path) -> Stored:
    evidence = copy.deepcopy(GOOD_EVIDENCE)
    evidence["checks"]["leakage"]["duplicates"].update(status="fail", value=37)
    return store_run(tmp_path, evidence)


def test_gate_passes_records_a_signed_verdict_and_prints_each_rule(good: Stored) -> None:
    result = good.assay("gate", good.run_id, "--only", "all")
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout and "beats-baseline" in result.stdout and "no-leakage[duplicates]" in result.stdout
    [record] = good.ledger().records(run_id=good.run_id, kind="verdict")
    assert record.payload["decision"] == "pass"
    assert (record.payload["artifact"], record.payload["model"]) == (good.artifact, good.model)
    assert record.payload["policy"] == "assay:standard" and record.payload["policy_hash"].startswith("sha256:")
    assert len(record.signature) == 128
    attention = good.assay("gate", good.run_id)  # by default only what needs attention: here nothing, and the counts
    assert attention.returncode == 0 and "beats-baseline" not in attention.stdout and " pass" in attention.stdout


def test_gate_json_carries_the_verdict_and_blocks_with_exit_1(leaky: Stored) -> None:
    result = leaky.assay("gate", leaky.run_id, "--format", "json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["run_id"] == leaky.run_id and doc["model"] == leaky.model
    verdict = doc["verdict"]
    assert verdict["decision"] == "block"
    assert verdict["reasons"] == ["no-leakage[duplicates]: checks.leakage.duplicates.status = 'fail', "
                                  "needs in ['pass', 'warn', 'skip']"]
    rule = next(r for r in verdict["rules"] if r["id"] == "no-leakage[duplicates]")
    assert (rule["outcome"], rule["measured"], rule["threshold"]) == ("block", "fail", ["pass", "warn", "skip"])
    assert doc["ledger_seq"] == leaky.ledger().records(kind="verdict")[-1].seq


def test_gate_writes_junit_sarif_and_markdown_files(leaky: Stored, tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    result = leaky.assay("gate", leaky.run_id, "--format", "junit", "--output", str(junit))
    assert result.returncode == 1
    assert f"BLOCK: run {leaky.run_id}, policy assay:standard; junit report written to {junit}" in result.stderr
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    assert suite.failures == 1
    sarif = leaky.assay("gate", leaky.run_id, "--format", "sarif")
    assert json.loads(sarif.stdout)["version"] == "2.1.0"
    markdown = leaky.assay("gate", leaky.run_id, "--format", "markdown")
    assert markdown.stdout.startswith("### ❌ assay gate: **BLOCK**")


def test_gate_with_a_policy_file_and_a_bad_policy(good: Stored, tmp_path: Path) -> None:
    strict_gap = tmp_path / "tight.toml"
    strict_gap.write_text('[[rules]]\nid = "tiny-gap"\npath = "gap.${metric}"\nop = "<="\nthreshold = 0.001\n',
                          encoding="utf-8")
    result = good.assay("gate", good.run_id, "--policy", str(strict_gap), "--format", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["verdict"]["policy"] == "tight"
    strict_gap.write_text('[[rules]]\nid = "tiny-gap"\npath = "gap.${metric}"\nop = "=<"\nthreshold = 0.001\n',
                          encoding="utf-8")
    bad = good.assay("gate", good.run_id, "--policy", str(strict_gap))
    assert bad.returncode == 2
    assert f"{strict_gap}:4:6: rules[0].op: '=<' is not a comparison" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = good.assay("gate", "NOSUCHRUN")
    assert unknown.returncode == 2 and "run 'NOSUCHRUN' not found" in unknown.stderr


def test_policy_check(tmp_path: Path) -> None:
    ok = run_assay("policy", "check", "assay:strict", home=tmp_path / "home")
    assert ok.returncode == 0 and ok.stdout.startswith("ok: assay:strict: policy 'assay:strict'")
    bad = tmp_path / "p.toml"
    bad.write_text('[[rules]]\nid = "r"\npath = "metrics.test.roc_auc"\nthreshold = ">= baseline +"\nsevrity = "x"\n',
                   encoding="utf-8")
    result = run_assay("policy", "check", str(bad), home=tmp_path / "home")
    assert result.returncode == 2
    assert result.stderr.splitlines()[:2] == [
        f"error: {bad}:4:27: rules[0].threshold: expected a number, a quoted string, 'baseline' or an evidence "
        "path, but the text ended",
        f"{bad}:5:1: rules[0].sevrity: unknown key 'sevrity'; did you mean 'severity'? (valid keys: id, "
        "description, path, op, threshold, severity, bound, stage, when)",
    ]


def test_waiver_turns_a_block_into_a_pass_until_it_expires(leaky: Stored) -> None:
    assert leaky.assay("gate", leaky.run_id).returncode == 1
    typo = leaky.assay("waive", "no-leakag", "--model", leaky.model, "--reason", "r", "--approver", "dana",
                       "--expires", "2999-12-31")
    assert typo.returncode == 2 and "did you mean 'no-leakage'?" in typo.stderr
    past = leaky.assay("waive", "no-leakage", "--model", leaky.model, "--reason", "r", "--approver", "dana",
                       "--expires", "2001-01-01")
    assert past.returncode == 2 and "the date is in the past" in past.stderr
    waived = leaky.assay("waive", "no-leakage[duplicates]", "--model", leaky.model, "--reason",
                         "duplicates are legitimate repeat customers", "--approver", "dana", "--expires", "2999-12-31",
                         "--json")
    assert waived.returncode == 0, waived.stderr
    record = json.loads(waived.stdout)
    assert record["waiver"]["rule"] == "no-leakage[duplicates]"
    result = leaky.assay("gate", leaky.run_id, "--format", "json")
    assert result.returncode == 0, result.stdout
    rule = next(r for r in json.loads(result.stdout)["verdict"]["rules"] if r["id"] == "no-leakage[duplicates]")
    assert rule["outcome"] == "waived"
    assert rule["reason"].startswith(f"waived by dana until 2999-12-31, ledger #{record['seq']}: duplicates are")


def test_an_expired_waiver_recorded_in_the_ledger_is_ignored(leaky: Stored) -> None:
    leaky.ledger().append(leaky.run_id, "waiver", {"rule": "no-leakage", "model": leaky.model, "reason": "old",
                                                   "approver": "dana", "expires": "2001-01-01"})
    assert leaky.assay("gate", leaky.run_id).returncode == 1


def test_a_waiver_from_a_key_this_home_does_not_trust_cannot_be_written_or_forged(leaky: Stored,
                                                                                  tmp_path: Path) -> None:
    from assay.errors import BadInput

    assert leaky.assay("gate", leaky.run_id).returncode == 1
    outsider = Ledger.open(Settings(tmp_path / "outsider-home", leaky.settings.db_url))  # same database, own key
    with pytest.raises(BadInput, match="is not trusted in this home"):
        outsider.append(leaky.run_id, "waiver", {"rule": "no-leakage", "model": leaky.model, "reason": "trust me",
                                                 "approver": "mallory", "expires": "2999-12-31"})
    # forged past the writer (its own key_added, then the waiver), the ledger no longer verifies
    from assay.audit.canonical import canonical

    with outsider._write() as cur:  # the writer's own checks bypassed, as a forger with the file would
        key = outsider.signer()
        outsider._write_records(cur, key, [(None, "key_added", canonical(outsider._key_added_payload(key, key))),
                                           (leaky.run_id, "waiver", canonical({
                                               "rule": "no-leakage", "model": leaky.model, "reason": "trust me",
                                               "approver": "mallory", "expires": "2999-12-31",
                                               "artifact": leaky.artifact}))])
    result = leaky.assay("gate", leaky.run_id)
    assert result.returncode == 1
    assert "the ledger does not verify, so nothing is decided from it" in result.stderr
    assert "not in the trust file" in result.stderr


def test_verify_accepts_the_gated_artifact_and_rejects_changed_bytes(good: Stored) -> None:
    not_gated = good.assay("verify", str(good.model_file))
    assert not_gated.returncode == 1 and "no verdict for artifact" in not_gated.stderr
    assert good.assay("gate", good.run_id).returncode == 0
    ok = good.assay("verify", str(good.model_file), "--require-verdict", "pass", "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] and doc["decision"] == "pass" and doc["model"] == good.model
    good.model_file.write_bytes(good.model_file.read_bytes() + b" ")
    changed = good.assay("verify", str(good.model_file))
    assert changed.returncode == 1 and changed.stderr.startswith("REJECTED: ")


def test_verify_rejects_a_blocked_artifact(leaky: Stored) -> None:
    assert leaky.assay("gate", leaky.run_id).returncode == 1
    result = leaky.assay("verify", str(leaky.model_file), "--require-verdict", "pass")
    assert result.returncode == 1 and "is 'block', not pass" in result.stderr
    assert leaky.assay("verify", str(leaky.model_file), "--require-verdict", "any").returncode == 0


def test_verify_with_key_trusts_only_that_key(good: Stored, tmp_path: Path) -> None:
    assert good.assay("gate", good.run_id).returncode == 0
    signer = good.ledger().records(kind="verdict")[-1].key_id
    own = good.home / "keys" / f"{signer}.pub"
    assert good.assay("verify", str(good.model_file), "--key", str(own)).returncode == 0
    other = tmp_path / "other.pub"
    other.write_text("11" * 32)
    result = good.assay("verify", str(good.model_file), "--key", str(other))
    assert result.returncode == 1 and "the ledger does not verify" in result.stderr


def test_promotion_to_production_needs_a_pass_and_the_policys_approvals(tmp_path: Path) -> None:
    stored = store_run(tmp_path, GOOD_EVIDENCE, policy="assay:strict")
    blocked_early = stored.assay("models", "promote", stored.model, "--to", "production")
    assert blocked_early.returncode == 1 and "no verdict for artifact" in blocked_early.stderr
    assert stored.assay("gate", stored.run_id).returncode == 0
    refused = stored.assay("models", "promote", stored.model, "--to", "production")
    assert refused.returncode == 1
    assert "its policy assay:strict needs 2 approval(s) from distinct approvers, it has 0" in refused.stderr
    assert stored.assay("approve", stored.model).returncode == 0
    again = stored.assay("approve", stored.model)
    assert again.returncode == 0 and "already approved by key" in again.stdout
    assert stored.assay("models", "promote", stored.model, "--to", "production").returncode == 1
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def key(name: str) -> tuple[Path, Path]:
        private = Ed25519PrivateKey.generate()
        pem, pub = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub"
        pem.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        pem.chmod(0o600)
        pub.write_text(private.public_key().public_bytes_raw().hex())
        return pem, pub

    # An untrusted key cannot approve at all; a signer-only key's approval does not count.
    rev_pem, rev_pub = key("reviewer")
    refused = stored.assay("approve", stored.model, "--approver", "rev", env={"ASSAY_SIGNING_KEY": str(rev_pem)})
    assert refused.returncode == 2 and "is not trusted in this home" in refused.stderr
    ci_pem, ci_pub = key("ci")
    assert stored.assay("keys", "add", str(ci_pub), "--identity", "ci", "--role", "signer").returncode == 0
    ci = stored.assay("approve", stored.model, env={"ASSAY_SIGNING_KEY": str(ci_pem)})
    assert ci.returncode == 0 and "1 approval(s) by distinct approvers" in ci.stdout
    # A second key for the same identity as the first approver is still one approver.
    genesis = stored.ledger().records(kind="key_added")[0].payload["identity"]
    twin_pem, twin_pub = key("twin")
    assert stored.assay("keys", "add", str(twin_pub), "--identity", genesis, "--role", "approver").returncode == 0
    twin = stored.assay("approve", stored.model, env={"ASSAY_SIGNING_KEY": str(twin_pem)})
    assert twin.returncode == 0 and "1 approval(s) by distinct approvers" in twin.stdout
    assert stored.assay("models", "promote", stored.model, "--to", "production").returncode == 1
    assert stored.assay("keys", "add", str(rev_pub), "--identity", "rev", "--role", "approver").returncode == 0
    approved = stored.assay("approve", stored.model, "--approver", "rev", env={"ASSAY_SIGNING_KEY": str(rev_pem)})
    assert approved.returncode == 0 and "2 approval(s) by distinct approvers" in approved.stdout
    promoted = stored.assay("models", "promote", stored.model, "--to", "production")
    assert promoted.returncode == 0, promoted.stderr
    assert "none → production" in promoted.stdout
    assert RunStore(stored.settings).resolve_model("credit@production").ref == stored.model
    [record] = stored.ledger().records(kind="promotion")
    assert record.payload["to"] == "production" and record.payload["approvals_required"] == 2
    assert {a["identity"] for a in record.payload["approvals"]} == {"rev", genesis}


def test_promotion_to_staging_is_recorded_without_a_gate(good: Stored) -> None:
    result = good.assay("models", "promote", good.model, "--to", "staging")
    assert result.returncode == 0, result.stderr
    assert good.ledger().records(kind="promotion")[-1].payload["to"] == "staging"


class _BrokenGate:
    """A third-party gate plugin that raises: gating must fail closed with exit 3."""

    from assay.kernel.hookspecs import hookimpl

    @hookimpl
    def gate(self, run: Any, evidence: dict[str, Any], policy: Any) -> None:
        raise RuntimeError("policy engine unavailable")


def test_a_gate_plugin_that_raises_exits_3_and_records_no_verdict(good: Stored) -> None:
    from assay.commands.governance import gate
    from assay.errors import InternalError
    from assay.kernel.manager import make_plugin_manager

    class State(Settings):
        def plugin_manager(self) -> Any:
            return make_plugin_manager(extra_plugins=[("broken-gate", _BrokenGate())])

    state = State(good.settings.home, good.settings.db_url)
    with pytest.raises(InternalError) as info:
        gate.main([good.run_id], obj=state, standalone_mode=False)
    assert info.value.exit_code == 3
    assert "policy engine unavailable" in info.value.message and "fail closed" in info.value.message
    assert good.ledger().records(kind="verdict") == []
