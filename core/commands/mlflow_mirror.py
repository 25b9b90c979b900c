"""Mirror each finished run into an MLflow tracking server (``[plugins.mlflow]`` in the spec).

```toml
[plugins.mlflow]
tracking_uri = "http://127.0.0.1:5000"   # required; a plain path is taken relative to the spec file
experiment = ""                          # default: the project name
```

What arrives in MLflow: the run's parameters (model family and hyper-parameters, data and
split settings), its metrics per stage (``train.*``, ``cv.*``, ``test.*`` with ``*_ci_low`` /
``*_ci_high``, ``baseline.*``, ``gap.*``, ``fairness.*``), the signed evidence, the verdict,
the HTML report and the signed CycloneDX ML-BOM as artifacts under ``assay/``, the model as
an MLflow LoggedModel (sklearn flavour, with assay's exact skops file at ``assay/model.skops``
beside it), and tags with the verdict,
the policy and its digest, the ledger sequence numbers and the artifact's sha256.

The ledger stays the source of truth: everything mirrored is read from the signed records
after the run has finished, and a mirror that fails (server down, bad URI, refused write)
prints a warning and changes neither the verdict nor the exit code. mlflow is imported only
when a spec has a ``[plugins.mlflow]`` table (install it with ``pip install 'assay[mlflow]'``).

The mirror is registered through the ``assay`` entry-point group as the ``mlflow`` plugin, like
the bundled plugins, and ``-p no:mlflow`` blocks it; it lives with the commands because what it
sends is theirs: the report (:mod:`assay.commands.report`) and the BOM (:mod:`assay.commands.bom`)
built from the verified ledger, and the model as the artifact store holds it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from assay.kernel.hookspecs import hookimpl
from assay.storage.settings import redact_url

NAME = "mlflow"
TAG_PREFIX = "assay."


class MlflowSettings(BaseModel):
    """The ``[plugins.mlflow]`` table."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(min_length=1)
    experiment: str = ""
    #: also log the model as an MLflow LoggedModel (sklearn flavour, skops format)
    log_model: bool = True
    #: per HTTP request to the tracking server, and how often a failed request is retried
    timeout_s: float = Field(30.0, gt=0, le=600)
    retries: int = Field(1, ge=0, le=10)


# The spec's [plugins.mlflow] table is validated with this model (assay.kernel.spec.check_plugin_sections).
ASSAY_SPEC_SECTION = MlflowSettings


def _warn(message: str) -> None:
    print(f"warning: {redact_url(message)}", file=sys.stderr)


@hookimpl
def run_finished(run: Any, verdict: Any, evidence: dict[str, Any]) -> None:
    table = run.spec.plugins.get(NAME)
    if table is None:
        return
    try:
        settings = MlflowSettings.model_validate(table)
        # MLflow prints links to the run on stdout, which belongs to `assay run --json`.
        with contextlib.redirect_stdout(io.StringIO()):
            mlflow_run_id = mirror_run(run, settings)
    except ImportError as exc:
        _warn(f"MLflow mirror of run {run.run_id} skipped: mlflow is not installed ({exc}); "
              "install it with: pip install 'assay[mlflow]'")
    except Exception as exc:
        _warn(f"MLflow mirror of run {run.run_id} failed ({type(exc).__name__}: {_short(exc)}); "
              "the run, its verdict and its ledger records are unaffected")
    else:
        print(f"mirrored run {run.run_id} to MLflow run {mlflow_run_id} at {redact_url(settings.tracking_uri)}",
              file=sys.stderr)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 400 else text[:400] + "…"


# --------------------------------------------------------------------------- what is mirrored


def metric_key(*parts: Any) -> str:
    """An MLflow metric/param key: only the characters MLflow accepts (others become ``_``)."""
    key = ".".join(str(p) for p in parts if str(p) != "")
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:250]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def metrics_of(evidence: Mapping[str, Any]) -> dict[str, float]:
    """The evidence's numbers as flat MLflow metrics, per stage."""
    out: dict[str, float] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            low, high = _number(value[0]), _number(value[1])
            if low is not None and high is not None:
                base = key.removesuffix("_ci")
                out[metric_key(base + "_ci_low")] = low
                out[metric_key(base + "_ci_high")] = high
            return
        number = _number(value)
        if number is not None:
            out[metric_key(key)] = number

    metrics = evidence.get("metrics") or {}
    for stage in ("train", "test"):
        for name, value in (metrics.get(stage) or {}).items():
            add(f"{stage}.{name}", value)
    for name, summary in (metrics.get("cv") or {}).items():
        for part, value in (summary or {}).items() if isinstance(summary, Mapping) else ():
            add(f"cv.{name}.{part}", value)
    baseline = evidence.get("baseline") or {}
    for name, value in (baseline.get("test") or {}).items():
        add(f"baseline.test.{name}", value)
    for name, value in (evidence.get("gap") or {}).items():
        add(f"gap.{name}", value)
    for feature, info in (evidence.get("fairness") or {}).items():
        for name, value in (info or {}).items() if isinstance(info, Mapping) else ():
            if name == "by_group" and isinstance(value, Mapping):
                for group, values in value.items():
                    for metric, number in (values or {}).items() if isinstance(values, Mapping) else ():
                        add(f"fairness.{feature}.{group}.{metric}", number)
            else:
                add(f"fairness.{feature}.{name}", value)
    for key in ("wall_s", "cpu_s", "peak_mb"):
        add(f"cost.{key}", (evidence.get("cost") or {}).get(key))
    return out


def params_of(evidence: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, str]:
    model, data, split = evidence.get("model") or {}, evidence.get("data") or {}, evidence.get("split") or {}
    out: dict[str, Any] = {"model.family": model.get("family"), "task": evidence.get("task"),
                           "metric": evidence.get("metric"), "data.source": data.get("source"),
                           "data.target": data.get("target"), "data.rows": data.get("rows"),
                           "data.fingerprint": data.get("fingerprint"), "split.strategy": split.get("strategy"),
                           "split.seed": split.get("seed"), "split.cv_folds": split.get("cv_folds"),
                           "split.test_size": (spec.get("split") or {}).get("test_size"),
                           "train.tuning": (spec.get("train") or {}).get("tuning"),
                           "evaluate.baseline": (evidence.get("baseline") or {}).get("name"),
                           "data.sensitive": ",".join(map(str, data.get("sensitive") or [])) or None}
    for name, value in (model.get("params") or {}).items():
        out[f"model.{name}"] = value if isinstance(value, str) else json.dumps(value)
    return {metric_key(k): str(v)[:6000] for k, v in out.items() if v is not None and v != ""}


def tags_of(run_id: str, evidence: Mapping[str, Any], verdict: Mapping[str, Any] | None, seqs: Mapping[str, int],
            status: str) -> dict[str, str]:
    model = evidence.get("model") or {}
    tags: dict[str, Any] = {
        "run_id": run_id, "status": status, "project": evidence.get("project"),
        "verdict": (verdict or {}).get("decision"), "policy": (verdict or {}).get("policy"),
        "policy_digest": (verdict or {}).get("policy_hash"),
        "evidence_digest": (verdict or {}).get("evidence_digest"),
        "model_ref": model.get("ref"), "artifact_sha256": model.get("artifact"),
        **{f"ledger_seq.{kind}": seq for kind, seq in seqs.items()},
    }
    imported = model.get("imported")
    if isinstance(imported, Mapping) and imported.get("mlflow_run_id"):
        tags["imported_from_mlflow_run"] = imported["mlflow_run_id"]
    out = {TAG_PREFIX + k: str(v) for k, v in tags.items() if v is not None and v != ""}
    reasons = (verdict or {}).get("reasons") or []
    out["mlflow.note.content"] = (f"assay verdict: **{(verdict or {}).get('decision')}** under "
                                  f"{(verdict or {}).get('policy')}\n\n" + "\n".join(f"- {r}" for r in reasons))[:5000]
    return out


# --------------------------------------------------------------------------- talking to MLflow


@contextlib.contextmanager
def _http_limits(settings: MlflowSettings) -> Iterator[None]:
    """Bound MLflow's HTTP timeouts and retries (its defaults back off for minutes on a dead server)."""
    wanted = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(settings.timeout_s)),
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.retries),
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    # assay does not report usage on its users' behalf; a user who wants MLflow's telemetry sets this
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if before[k] is None})
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)


def tracking_uri(value: str, base_dir: Path) -> str:
    """A plain path (no scheme) is relative to the spec file; URIs pass through."""
    if ":" in value:
        return value
    return str((base_dir / value).resolve())


def _quiet_mlflow() -> None:
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def mirror_run(run: Any, settings: MlflowSettings) -> str:
    """Mirror ``run`` (finished, recorded) into MLflow; return the MLflow run id."""
    from assay.storage.signed import SignedLedger

    signed = SignedLedger.open(run.settings)
    with _http_limits(settings):
        import mlflow  # noqa: F401  (imported here only: a spec without [plugins.mlflow] never loads it)
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()
        evidence, evidence_record = signed.evidence(run.run_id)
        verdict_record = signed.last(run.run_id, "verdict")
        verdict = dict(verdict_record.payload) if verdict_record is not None else None
        started = signed.started(run.run_id)
        finished = signed.last(run.run_id, "run_finished")
        status = str(finished.payload.get("status")) if finished is not None else "unknown"
        seqs = {"evidence": evidence_record.seq, **({"verdict": verdict_record.seq} if verdict_record else {}),
                **({"run_finished": finished.seq} if finished else {})}

        client = MlflowClient(tracking_uri=tracking_uri(settings.tracking_uri, Path(run.spec_path).parent))
        name = settings.experiment or str(evidence.get("project") or run.spec.project.name)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        model = evidence.get("model") or {}
        tags = tags_of(run.run_id, evidence, verdict, seqs, status)
        created = client.create_run(experiment_id, run_name=str(model.get("ref") or run.run_id), tags=tags)
        mlflow_run_id = created.info.run_id
        try:
            params = [Param(k, v) for k, v in params_of(evidence, started.get("spec") or {}).items()]
            now = int(1000 * time.time())
            metrics = [Metric(k, v, now, 0) for k, v in metrics_of(evidence).items()]
            for i in range(0, len(params), 100):
                client.log_batch(mlflow_run_id, params=params[i:i + 100])
            for i in range(0, len(metrics), 1000):
                client.log_batch(mlflow_run_id, metrics=metrics[i:i + 1000])
            with tempfile.TemporaryDirectory(prefix="assay-mlflow-") as tmp:
                folder = Path(tmp) / "assay"
                folder.mkdir()
                _write_artifacts(run, signed, evidence, verdict, folder)
                client.log_artifacts(mlflow_run_id, str(folder), "assay")
                if settings.log_model and model.get("artifact"):
                    model_id = _log_model(client, run, experiment_id, mlflow_run_id, evidence, tags, Path(tmp))
                    client.log_outputs(mlflow_run_id, [LoggedModelOutput(model_id, 0)])
                    client.set_tag(mlflow_run_id, TAG_PREFIX + "logged_model_id", model_id)
                    test = {k: v for k, v in metrics_of(evidence).items() if k.startswith("test.")}
                    if test:
                        client.log_batch(mlflow_run_id, metrics=[Metric(k, v, now, 0, model_id=model_id)
                                                                 for k, v in test.items()])
                    client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(mlflow_run_id, "FAILED")
            raise
        client.set_tag(mlflow_run_id, "mlflow.runName", str(model.get("ref") or run.run_id))
        client.set_terminated(mlflow_run_id, "FINISHED")
        return str(mlflow_run_id)


def _write_artifacts(run: Any, signed: Any, evidence: Mapping[str, Any], verdict: Mapping[str, Any] | None,
                     folder: Path) -> None:
    (folder / "evidence.json").write_text(json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=False),
                                          encoding="utf-8")
    if verdict is not None:
        (folder / "verdict.json").write_text(json.dumps(verdict, indent=2, sort_keys=True, ensure_ascii=False),
                                             encoding="utf-8")
    try:
        from assay.commands.report import render

        row = signed.run_row(run.run_id)
        html = render(row, dict(evidence), dict(verdict) if verdict is not None else None, signed.run_records(run.run_id),
                      {"ok": True, "summary": signed.report.summary()})
        (folder / "report.html").write_text(html, encoding="utf-8")
    except Exception as exc:  # the other artifacts still go
        _warn(f"MLflow mirror: the HTML report of run {run.run_id} was not written ({type(exc).__name__}: {_short(exc)})")
    try:
        from assay.audit.keys import KeyStore
        from assay.commands.bom import build_bom, sign_bom

        bom = sign_bom(build_bom(signed, run.run_id), KeyStore(run.settings.home).active(create=False))
        (folder / "bom.cdx.json").write_text(json.dumps(bom, indent=2, ensure_ascii=False), encoding="utf-8")
    except Exception as exc:
        _warn(f"MLflow mirror: the CycloneDX BOM of run {run.run_id} was not written ({type(exc).__name__}: {_short(exc)})")


def _log_model(client: Any, run: Any, experiment_id: str, mlflow_run_id: str, evidence: Mapping[str, Any],
               tags: Mapping[str, str], tmp: Path) -> str:
    """The model as a LoggedModel of the MLflow run: sklearn flavour in skops format, plus assay's own file."""
    import importlib.metadata as md

    import mlflow.sklearn
    import skops.io as sio

    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore

    model = evidence.get("model") or {}
    store = ArtifactStore(run.settings.home)
    estimator = load_model(store, str(model["artifact"]))  # checks the bytes against the recorded sha256
    data = store.get_bytes(str(model["artifact"]))
    params = {k: v for k, v in params_of(evidence, {}).items() if k.startswith("model.")}
    logged = client.create_logged_model(experiment_id, name=str(model.get("name") or "model"),
                                        source_run_id=mlflow_run_id, tags=dict(tags), params=params,
                                        model_type="scikit-learn")
    try:
        target = tmp / "mlflow-model"
        requirements = [f"{name}=={md.version(name)}" for name in ("scikit-learn", "skops", "numpy", "pandas")]
        mlflow.sklearn.save_model(estimator, str(target), serialization_format="skops",
                                  skops_trusted_types=sorted(sio.get_untrusted_types(data=data)),
                                  pip_requirements=requirements)
        (target / "assay").mkdir()
        (target / "assay" / "model.skops").write_bytes(data)
        client.log_model_artifacts(logged.model_id, str(target))
    except BaseException:
        with contextlib.suppress(Exception):
            client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    return str(logged.model_id)
