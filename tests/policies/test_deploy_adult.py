"""The deploy path on real data: train on a sample of Adult, gate, waive, verify, promote.

Adult's income models do not meet the four-fifths rule on sex or race (selection rate
ratios around 0.25 and 0.6), so `assay:standard` blocks, naming those rules; a recorded
waiver lets the re-gated run pass; the stored model file then verifies for deployment and
a byte changed in it does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_assay


@pytest.mark.slow
def test_adult_gate_waive_verify_promote(tmp_path: Path, adult_small: Path) -> None:
    home = tmp_path / "home"
    run = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", home=home)
    assert run.returncode == 1, run.stderr
    result = run.json
    run_id, model, artifact = result["run_id"], result["model"]["ref"], result["model"]["artifact"]
    blocked = {r["id"] for r in result["verdict"]["rules"] if r["outcome"] in ("block", "error")}
    assert blocked and all(rule.startswith("four-fifths[") for rule in blocked), blocked
    assert {"four-fifths[sex]", "four-fifths[race]"} <= blocked

    gate = run_assay("gate", run_id, "--format", "json", home=home)
    assert gate.returncode == 1
    assert {r["id"] for r in json.loads(gate.stdout)["verdict"]["rules"] if r["outcome"] == "block"} == blocked

    model_file = tmp_path / "model.skops"
    model_file.write_bytes((home / "artifacts" / "sha256" / artifact[7:9] / artifact[7:]).read_bytes())
    refused = run_assay("verify", str(model_file), "--require-verdict", "pass", home=home)
    assert refused.returncode == 1 and "not pass" in refused.stderr

    waive = run_assay("waive", "four-fifths", "--model", model, "--reason", "benchmark model, not used on people",
                      "--approver", "fairness-board", "--expires", "2999-12-31", home=home)
    assert waive.returncode == 0, waive.stderr
    regate = run_assay("gate", run_id, "--format", "junit", "--output", str(tmp_path / "gate.xml"), home=home)
    assert regate.returncode == 0, regate.stderr

    ok = run_assay("verify", str(model_file), "--require-verdict", "pass", "--json", home=home)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"] == model
    promoted = run_assay("models", "promote", model, "--to", "production", home=home)
    assert promoted.returncode == 0, promoted.stderr
    assert run_assay("audit", "verify", home=home).returncode == 0

    tampered = bytearray(model_file.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    model_file.write_bytes(bytes(tampered))
    changed = run_assay("verify", str(model_file), home=home)
    assert changed.returncode == 1 and "no model in the ledger has artifact" in changed.stderr
