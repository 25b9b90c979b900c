"""CycloneDX 1.6 ML-BOM of a run, built from its signed ledger records and signed with JSF.

The BOM describes the model as a ``machine-learning-model`` component whose ``modelCard``
is filled from the run's signed evidence: the task, family and architecture, the datasets
(with their fingerprints and sources), every recorded metric per slice with its bootstrap
interval, and the fairness assessment of each sensitive group. The data the model was
trained and tested on are ``data`` components; the recorded environment's packages are
``library`` components. Nothing is read from the ``runs`` table.

``cyclonedx-python-lib`` has no model of ``modelCard``, so the document is built as JSON
(the tests validate it with that library's strict 1.6 schema validator).

The signature follows JSF (JSON Signature Format) with Ed25519: the ``signature`` object
(``algorithm``, ``keyId``, ``publicKey`` as an OKP JWK) is placed in the BOM, the whole
BOM is canonicalized with JCS (RFC 8785) with the signature object present but without its
``value``, and ``value`` is the base64url (unpadded) Ed25519 signature of those bytes.
:func:`verify_signature` checks one the same way.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from assay import __version__
from assay.errors import BadInput, Finding

if TYPE_CHECKING:
    from assay.audit.keys import SigningKey
    from assay.storage.signed import SignedLedger

SPEC_VERSION = "1.6"
BOM_NAMESPACE = uuid.UUID("5b0c6a0e-7d43-5f43-9a57-6a3c1f0c8e21")

TASKS = {
    "binary": "binary classification",
    "multiclass": "multiclass classification",
    "regression": "regression",
    "ranking": "learning to rank",
    "text": "text classification",
}
OUTPUTS = {
    "binary": "class label and class probabilities",
    "multiclass": "class label and class probabilities",
    "regression": "numeric prediction",
    "ranking": "relevance score per item, ranked within each query",
    "text": "class label and class probabilities",
}
ARCHITECTURES = {
    "logistic_regression": "generalized linear model",
    "ridge": "generalized linear model",
    "hist_gradient_boosting": "gradient-boosted decision trees",
    "random_forest": "random forest (bagged decision trees)",
    "tfidf_logistic": "bag-of-words linear model",
    "tfidf_linear_svc": "bag-of-words linear model",
    "tfidf_sgd": "bag-of-words linear model",
    "pointwise_hgb": "gradient-boosted decision trees",
    "pairwise_logistic": "generalized linear model",
}
# What loading the model artifact needs at run time (skops file of scikit-learn objects):
# the model component depends on these; the rest of the recorded environment is the build's.
RUNTIME_PACKAGES = ("scikit-learn", "skops", "numpy", "scipy", "joblib", "threadpoolctl", "pandas")


# --------------------------------------------------------------------------- small helpers


def _num(value: Any) -> str:
    """A metric value as the string CycloneDX wants, exactly as recorded (no rounding)."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, (int, float)) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(value: Any) -> dict[str, str] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value):
        return {"lowerBound": _num(value[0]), "upperBound": _num(value[1])}
    return None


def _props(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, str]]:
    return [{"name": f"assay:{name}", "value": _num(value) if not isinstance(value, str) else value}
            for name, value in pairs if value is not None and value != ""]


def _hex(digest: Any) -> str | None:
    text = str(digest or "")
    return text.removeprefix("sha256:") if text.startswith("sha256:") and len(text) == 71 else None


def purl(name: str, version: str) -> str:
    """The package URL of a PyPI distribution (name normalized as the purl spec asks)."""
    normalized = name.lower().replace("_", "-").replace(".", "-")
    return f"pkg:pypi/{quote(normalized, safe='')}@{quote(str(version), safe='')}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- model card parts


def performance_metrics(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every recorded metric as a CycloneDX performance metric: one per slice, with its interval."""
    out: list[dict[str, Any]] = []
    metrics = evidence.get("metrics") or {}
    split = evidence.get("split") or {}
    level = (evidence.get("bootstrap") or {}).get("level")
    ci_note = f", {level:.0%} bootstrap interval" if _is_number(level) else ""

    def add(name: str, value: Any, slice_: str, ci: Any = None) -> None:
        if not _is_number(value):
            return
        item: dict[str, Any] = {"type": name, "value": _num(value), "slice": slice_}
        interval = _interval(ci)
        if interval:
            item["confidenceInterval"] = interval
        out.append(item)

    for stage, label in (("test", "holdout"), ("train", "training part")):
        rows = (split.get(stage) or {}).get("rows")
        slice_ = f"{label} ({rows} rows)" if rows is not None else label
        values = metrics.get(stage) or {}
        for name, value in values.items():
            if not name.endswith("_ci"):
                add(name, value, slice_ + (ci_note if f"{name}_ci" in values else ""), values.get(f"{name}_ci"))
    folds = split.get("cv_folds")
    for name, summary in (metrics.get("cv") or {}).items():
        if isinstance(summary, Mapping):
            std = summary.get("std")
            extra = f", std {_num(std)}" if _is_number(std) else ""
            add(name, summary.get("mean"), f"cross-validation mean over {folds} folds of the training part{extra}")
    baseline = evidence.get("baseline") or {}
    for name, value in (baseline.get("test") or {}).items():
        if not name.endswith("_ci"):
            add(name, value, f"baseline {baseline.get('name')} on the holdout", (baseline.get("test") or {}).get(f"{name}_ci"))
    for name, value in (evidence.get("gap") or {}).items():
        if not name.endswith("_ci"):
            add(f"{name} gap (train - holdout)", value, "generalization gap", (evidence.get("gap") or {}).get(f"{name}_ci"))
    for feature, info in (evidence.get("fairness") or {}).items():
        if not isinstance(info, Mapping):
            continue
        for name, value in info.items():
            if not name.endswith("_ci"):
                add(name, value, f"across the groups of {feature} (holdout)", info.get(f"{name}_ci"))
        for group, values in (info.get("by_group") or {}).items():
            if not isinstance(values, Mapping):
                continue
            count = values.get("count")
            slice_ = f"{feature} = {group} (holdout, {count} rows)" if count is not None else f"{feature} = {group}"
            for name, value in values.items():
                if name not in ("count", "small") and not name.endswith("_ci"):
                    add(name, value, slice_, values.get(f"{name}_ci"))
    return out


def _fairness_rules(verdict: Mapping[str, Any] | None, feature: str) -> list[Mapping[str, Any]]:
    rules = (verdict or {}).get("rules") or []
    prefix = f"fairness.{feature}."
    return [r for r in rules if str(r.get("path", "")).startswith(prefix)]


def fairness_assessments(evidence: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """One assessment per group of every sensitive column (and intersection) the run measured."""
    out: list[dict[str, str]] = []
    for feature, info in (evidence.get("fairness") or {}).items():
        if not isinstance(info, Mapping):
            continue
        positive = info.get("positive_label")
        rules = _fairness_rules(verdict, feature)
        gate = "; ".join(f"policy rule {r.get('id')} ({r.get('path')}): {r.get('outcome')} — {r.get('reason', '')}"
                         for r in rules) or f"no policy rule of this run's verdict reads fairness.{feature}"
        small = set(info.get("small_groups") or [])
        for group, values in (info.get("by_group") or {}).items():
            if not isinstance(values, Mapping):
                continue

            def shown(*names: str, values: Mapping[str, Any] = values) -> str:
                return ", ".join(f"{n.replace('_', ' ')} {_num(values[n])}" for n in names if _is_number(values.get(n)))

            predicted = f" (share predicted {positive})" if positive not in (None, "") else ""
            benefits = shown("selection_rate") + predicted if _is_number(values.get("selection_rate")) else ""
            benefits = ", ".join(p for p in (benefits, shown("accuracy", "roc_auc", "r2", "f1")) if p)
            harms = shown("false_negative_rate", "false_positive_rate", "mae", "rmse")
            if group in small or values.get("small"):
                mitigation = (f"{values.get('count')} holdout rows, fewer than evaluate.min_group_size "
                              f"{info.get('min_group_size')}: measured but not judged by the gate; {gate}")
            else:
                mitigation = gate
            item = {"groupAtRisk": f"{feature} = {group}", "mitigationStrategy": mitigation}
            if benefits:
                item["benefits"] = benefits
            if harms:
                item["harms"] = harms
            out.append(item)
    return out


def _considerations(evidence: Mapping[str, Any], verdict: Mapping[str, Any] | None,
                    spec: Mapping[str, Any]) -> dict[str, Any]:
    considerations: dict[str, Any] = {}
    description = str((spec.get("project") or {}).get("description") or "")
    if description:
        considerations["useCases"] = [description]
    limitations = []
    for group, checks in (evidence.get("checks") or {}).items():
        for name, check in (checks or {}).items():
            if isinstance(check, Mapping) and check.get("status") not in ("pass", "skip", None):
                message = check.get("message") or (check.get("detail") or {}).get("reason") or ""
                limitations.append(f"check {group}.{name}: {check.get('status')}" + (f" — {message}" if message else ""))
    if limitations:
        considerations["technicalLimitations"] = limitations
    risks = []
    for rule in (verdict or {}).get("rules") or []:
        if rule.get("outcome") in ("block", "warn", "error", "waived"):
            what, _, fix = str(rule.get("reason", "")).partition(". Fix: ")
            risk = {"name": f"{rule.get('id')} ({rule.get('outcome')}): {what}"}
            if fix:
                risk["mitigationStrategy"] = fix
            risks.append(risk)
    if risks:
        considerations["ethicalConsiderations"] = risks
    cost = evidence.get("cost") or {}
    env_props = _props((k, cost.get(k)) for k in ("wall_s", "cpu_s", "peak_mb"))
    if env_props:
        considerations["environmentalConsiderations"] = {"properties": env_props}
    assessments = fairness_assessments(evidence, verdict)
    if assessments:
        considerations["fairnessAssessments"] = assessments
    return considerations


# --------------------------------------------------------------------------- the document


def _data_components(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    data, split = evidence.get("data") or {}, evidence.get("split") or {}
    sensitive = [str(c) for c in data.get("sensitive") or []]
    columns = data.get("columns") or {}
    source = str(data.get("source") or "")

    def component(ref: str, name: str, what: str, fingerprint: Any, rows: Any, extra: list[tuple[str, Any]]) -> dict[str, Any]:
        props = _props([("fingerprint", fingerprint), ("rows", rows), ("source", source), *extra])
        entry: dict[str, Any] = {"type": "dataset", "name": name, "contents": {"properties": props}}
        if sensitive:
            entry["sensitiveData"] = sensitive
        return {"type": "data", "bom-ref": ref, "name": name, "description": what, "data": [entry],
                "properties": props}

    out = [component("data:source", source or "dataset", "the dataset as loaded", data.get("fingerprint"),
                     data.get("rows"), [("target", data.get("target")),
                                        ("columns", json.dumps(columns, sort_keys=True) if columns else None)])]
    for part, what in (("train", "training part (model selection and fitting)"), ("test", "holdout (evaluation only)")):
        info = split.get(part) or {}
        if info:
            out.append(component(f"data:{part}", f"{source or 'dataset'} [{part}]", what, info.get("fingerprint"),
                                 info.get("rows"), [("split_strategy", split.get("strategy")),
                                                    ("split_seed", split.get("seed")),
                                                    ("rows_sha256", info.get("rows_sha256")),
                                                    ("derived_from", "data:source")]))
    return out


def build_bom(signed: SignedLedger, run_id: str) -> dict[str, Any]:
    """The unsigned BOM of ``run_id`` from its signed records (BadInput when it has no evidence)."""
    evidence, record = signed.evidence(run_id)
    started = signed.started(run_id)
    verdict_record = signed.last(run_id, "verdict")
    verdict = dict(verdict_record.payload) if verdict_record is not None else None
    spec = started.get("spec") or {}
    model = evidence.get("model") or {}
    task = str(evidence.get("task") or (spec.get("data") or {}).get("task") or "")
    family = str(model.get("family") or "")
    params = model.get("params") or {}
    name = str(model.get("name") or evidence.get("project") or started.get("project") or "model")
    version = str(model.get("version") or "")
    env = evidence.get("environment") or {}
    packages: Mapping[str, Any] = env.get("packages") or {}

    libraries = [{"type": "library", "bom-ref": purl(n, v), "name": n, "version": str(v), "purl": purl(n, v),
                  "scope": "required" if n.lower() in RUNTIME_PACKAGES else "optional"}
                 for n, v in sorted(packages.items(), key=lambda kv: kv[0].lower())]
    runtime = [c["bom-ref"] for c in libraries if c["scope"] == "required"]
    platform = []
    if env.get("python"):
        platform = [{"type": "platform", "bom-ref": "platform:python", "name": str(env.get("implementation") or "python"),
                     "version": str(env["python"]), "properties": _props([("platform", env.get("platform"))])}]
    data_components = _data_components(evidence)
    model_ref = f"model:{name}@{version}" if version else f"model:{name}"
    architecture = family + (" (" + ", ".join(f"{k}={_num(v)}" for k, v in sorted(params.items())) + ")" if params else "")
    model_parameters: dict[str, Any] = {
        "approach": {"type": "supervised"},
        "task": TASKS.get(task, task or "unknown"),
        "architectureFamily": ARCHITECTURES.get(family, family or "unknown"),
        "modelArchitecture": architecture or "unknown",
        "datasets": [{"ref": c["bom-ref"]} for c in data_components],
        "inputs": [{"format": "text column" if task == "text" else "tabular (pandas DataFrame of the feature columns)"}],
        "outputs": [{"format": OUTPUTS.get(task, "prediction")}],
    }
    model_card: dict[str, Any] = {"bom-ref": f"model-card:{run_id}", "modelParameters": model_parameters,
                                  "quantitativeAnalysis": {"performanceMetrics": performance_metrics(evidence)},
                                  "considerations": _considerations(evidence, verdict, spec)}
    verdict_props = [("verdict", (verdict or {}).get("decision")), ("policy", (verdict or {}).get("policy")),
                     ("policy_hash", (verdict or {}).get("policy_hash")),
                     ("evidence_digest", (verdict or {}).get("evidence_digest")),
                     ("verdict_seq", verdict_record.seq if verdict_record is not None else None)]
    model_component: dict[str, Any] = {
        "type": "machine-learning-model", "bom-ref": model_ref, "name": name, "version": version or run_id,
        "description": f"{TASKS.get(task, task)} model trained by assay run {run_id}",
        "properties": _props([("run_id", run_id), ("model_ref", model.get("ref")), ("family", family),
                              ("metric", evidence.get("metric")), ("artifact", model.get("artifact")),
                              ("predictions_hash", model.get("predictions_hash")), *verdict_props]),
        "modelCard": model_card,
    }
    artifact = _hex(model.get("artifact"))
    if artifact:
        model_component["hashes"] = [{"alg": "SHA-256", "content": artifact}]
    imported = model.get("imported")
    if isinstance(imported, Mapping):
        model_component["properties"] += _props((f"imported_{k}", v) for k, v in sorted(imported.items())
                                                if isinstance(v, (str, int, float)))

    dependencies = [{"ref": model_ref, "dependsOn": [*(c["bom-ref"] for c in data_components if c["bom-ref"] != "data:source"),
                                                     *runtime, *(p["bom-ref"] for p in platform)]}]
    dependencies += [{"ref": c["bom-ref"], "dependsOn": ["data:source"]} for c in data_components
                     if c["bom-ref"] != "data:source"]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        # Derived from the evidence record: the same run's BOM has the same serial number.
        "serialNumber": f"urn:uuid:{uuid.uuid5(BOM_NAMESPACE, f'{run_id}:{record.hash}')}",
        "version": 1,
        "metadata": {
            "timestamp": record.time,
            "lifecycles": [{"phase": "build"}],
            "tools": {"components": [{"type": "application", "name": "assay", "version": __version__}]},
            "properties": _props([("run_id", run_id), ("project", started.get("project")),
                                  ("spec_hash", started.get("spec_hash")), ("evidence_seq", record.seq),
                                  ("evidence_record_hash", record.hash), ("evidence_key_id", record.key_id),
                                  *verdict_props]),
        },
        "components": [model_component, *data_components, *platform, *libraries],
        "dependencies": dependencies,
    }


# --------------------------------------------------------------------------- JSF


def _canonical(document: Any) -> bytes:
    from assay.audit.canonical import canonical

    return canonical(document)


def public_jwk(public_raw: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_raw)}


def sign_bom(bom: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """``bom`` with a JSF Ed25519 signature (an existing ``signature`` is replaced)."""
    if len(key.public_raw) != 32 or not hasattr(key.private, "sign"):
        raise BadInput(f"signing key {key.key_id} is not an Ed25519 key; the BOM is signed with the ledger key")
    document = {k: v for k, v in bom.items() if k != "signature"}
    document["signature"] = {"algorithm": "Ed25519", "keyId": key.key_id, "publicKey": public_jwk(key.public_raw)}
    signature = key.sign(_canonical(document))
    document["signature"] = {**document["signature"], "value": b64url(signature)}
    return document


def verify_signature(document: Mapping[str, Any], public_raw: bytes | None = None) -> str:
    """Check a JSF Ed25519 signature; return the signing key's id (Finding when it does not verify).

    :param public_raw: the key that must have signed (else the embedded ``publicKey`` is used,
        which proves integrity only: whether that key is trusted is the caller's decision).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from assay.audit.format import key_id_of

    signature = document.get("signature")
    if not isinstance(signature, Mapping) or signature.get("algorithm") != "Ed25519":
        raise Finding("the BOM carries no JSF Ed25519 signature")
    jwk = signature.get("publicKey") or {}
    embedded = _b64url_decode(str(jwk.get("x", ""))) if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" else b""
    key = public_raw if public_raw is not None else embedded
    if public_raw is not None and embedded and embedded != public_raw:
        raise Finding("the BOM's signature names another public key than the one given")
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    unsigned["signature"] = {k: v for k, v in signature.items() if k != "value"}
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(_b64url_decode(str(signature.get("value", ""))),
                                                       _canonical(unsigned))
    except (InvalidSignature, ValueError):
        raise Finding("the BOM's JSF signature does not verify: the document was changed after signing") from None
    return key_id_of(key)


def write_bom(settings: Any, run_ref: str) -> tuple[dict[str, Any], str]:
    """The signed BOM of a run (from a ledger that verifies in full) and the run id it resolved to."""
    from assay.audit.keys import KeyStore
    from assay.storage.signed import SignedLedger

    signed = SignedLedger.open(settings)
    run_id = signed.resolve_run(run_ref)
    bom = build_bom(signed, run_id)
    return sign_bom(bom, KeyStore(settings.home).active(create=False)), run_id


def save_bom(settings: Any, run_ref: str, target: Any) -> str:
    """Write the signed BOM of a run to ``target``; return the line to show the user."""
    bom, run_id = write_bom(settings, run_ref)
    text = json.dumps(bom, indent=2, ensure_ascii=False) + "\n"
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--output {target}: cannot write the BOM: {exc.strerror or exc}") from None
    decision = next((p["value"] for p in bom["metadata"]["properties"] if p["name"] == "assay:verdict"), "no verdict")
    return (f"wrote {target} (CycloneDX {SPEC_VERSION} ML-BOM of run {run_id}, verdict {decision}; "
            f"signed by key {bom['signature']['keyId']})")
