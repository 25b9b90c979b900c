"""The evidence schema: a real run's evidence fits it, plugins add sections freely, and a
plugin that writes a core section wrong errors the run (the gate fails closed) with the
section and field named."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.kernel.evidence import CORE_SECTIONS, MalformedEvidence, validate_evidence
from assay.kernel.hookspecs import hookimpl
from assay.kernel.types import Evidence
from tests.conftest import run_assay

QUICK = ["train.tuning=none", 'train.candidates=["logistic_regression"]']


class MalformedFairness:
    """A third-party evaluate plugin that writes a fairness entry as text instead of a mapping."""

    @hookimpl
    def evaluate(self) -> Any:
        return [Evidence("fairness", {"age_band": "0.83"})]


class OwnSections:
    """A third-party evaluate plugin with a section of its own and a field added to a core section."""

    @hookimpl
    def evaluate(self) -> Any:
        return [Evidence("acme_latency", {"p99_ms": [12.5, "n/a", {"batch": None}], "ok": True}),
                Evidence("data", {"acme_owner": "risk-team"})]


def _run(spec_dir: Path, home: Path, extra: tuple[tuple[str, object], ...] = ()) -> Any:
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec
    from assay.storage.settings import Settings

    spec_path = spec_dir / "assay.toml"
    spec, _ = load_spec(spec_path, QUICK)
    return Runner(make_plugin_manager(extra_plugins=extra), Settings.resolve(home), spec, spec_path).execute()


@pytest.fixture(scope="module")
def with_own_sections(adult_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("evidence") / "home"
    return home, _run(adult_small, home, (("acme", OwnSections()),))


def test_a_real_runs_evidence_fits_the_schema_with_a_plugins_own_sections(with_own_sections: Any) -> None:
    _, result = with_own_sections
    assert result.status in ("passed", "blocked"), result.error
    doc = validate_evidence(result.evidence)
    assert doc.run_id == result.run_id
    assert doc.model is not None and doc.model.artifact == result.model["artifact"]
    assert doc.model.ref == result.model["ref"] == "adult-small@1"
    assert doc.data is not None and doc.data.rows == 4000 and doc.data.fingerprint.startswith("sha256:")
    assert doc.split is not None and doc.split.train.rows + doc.split.test.rows == 4000
    assert doc.metrics is not None and 0.8 < doc.metrics.test["roc_auc"] <= 1.0
    assert doc.checks["leakage"]["duplicates"].status in ("pass", "warn")
    assert set(doc.fairness) >= {"sex", "race"}
    assert doc.monitoring is not None and doc.monitoring.reference is not None
    assert doc.environment is not None and doc.environment.python.count(".") == 2
    # what the schema does not name is kept as the plugin wrote it
    assert result.evidence["acme_latency"] == {"p99_ms": [12.5, "n/a", {"batch": None}], "ok": True}
    assert result.evidence["data"]["acme_owner"] == "risk-team"


def test_a_malformed_section_errors_the_run_names_section_and_field_and_the_gate_fails_closed(
        adult_small: Path, tmp_path: Path) -> None:
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger
    from assay.storage.store import RunStore

    home = tmp_path / "home"
    result = _run(adult_small, home, (("malformed", MalformedFairness()),))
    assert result.status == "errored" and result.exit_code == 3 and result.verdict is None
    assert "section 'fairness', field 'age_band'" in result.error
    assert "expected a JSON object (got '0.83')" in result.error
    settings_ = Settings.resolve(home)
    assert RunStore(settings_).get_run(result.run_id).status == "errored"
    records = SignedLedger.open(settings_).run_records(result.run_id)
    kinds = [r.kind for r in records]
    assert "verdict" not in kinds and kinds[-1] == "run_failed"
    assert "section 'fairness'" in records[-1].payload["error"]
    # re-gating the signed evidence later cannot pass it either: exit 3, no verdict recorded
    gated = run_assay("gate", result.run_id, "--format", "json", home=home)
    assert gated.returncode == 3, gated.stderr
    assert "section 'fairness', field 'age_band'" in gated.stderr and "Traceback" not in gated.stderr
    assert "verdict" not in [r.kind for r in SignedLedger.open(settings_).run_records(result.run_id)]


# --------------------------------------------------------------------------- the schema as a parser

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12)
plugin_sections = st.text(min_size=1).filter(lambda k: k not in CORE_SECTIONS and k not in {
    "run_id", "project", "spec_hash", "policy_hash", "task", "metric"})


@settings(max_examples=200, deadline=None)
@given(name=plugin_sections, value=json_values)
def test_any_json_in_a_plugins_own_section_is_accepted(name: str, value: Any) -> None:
    doc = validate_evidence({"run_id": "r1", name: value})
    assert doc.model_dump()[name] == value


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_a_metric_is_a_number_null_or_an_interval_and_anything_else_is_named(value: Any) -> None:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    fits = value is None or number(value) or (
        isinstance(value, list) and len(value) == 2 and all(v is None or number(v) for v in value))
    evidence = {"run_id": "r1", "metrics": {"test": {"roc_auc": value}}}
    if fits:
        metrics = validate_evidence(evidence).metrics
        assert metrics is not None and metrics.test["roc_auc"] == value
        return
    with pytest.raises(MalformedEvidence) as caught:
        validate_evidence(evidence)
    assert "section 'metrics', field 'test.roc_auc'" in caught.value.message
    assert caught.value.exit_code == 3


@settings(max_examples=100, deadline=None)
@given(status=st.text(), value=json_values)
def test_a_check_status_outside_the_status_type_is_refused(status: str, value: Any) -> None:
    evidence = {"run_id": "r1", "checks": {"leakage": {"duplicates": {"status": status, "detail": {}}}}}
    if status in ("pass", "warn", "fail", "error", "skip"):
        assert validate_evidence(evidence).checks["leakage"]["duplicates"].status == status
    else:
        with pytest.raises(MalformedEvidence, match=r"section 'checks', field 'leakage\.duplicates\.status'"):
            validate_evidence(evidence)


def test_a_digest_must_be_sha256_hex() -> None:
    model = {"name": "m", "version": 1, "ref": "m@1", "family": "ridge", "params": {}, "artifact": "sha256:" + "0" * 64}
    assert validate_evidence({"run_id": "r", "model": model}).model is not None
    with pytest.raises(MalformedEvidence, match="section 'model', field 'artifact': expected a digest"):
        validate_evidence({"run_id": "r", "model": {**model, "artifact": "md5:abc"}})
    with pytest.raises(MalformedEvidence, match="section 'model', field 'version'"):
        validate_evidence(json.loads(json.dumps({"run_id": "r", "model": {**model, "version": "1"}})))
