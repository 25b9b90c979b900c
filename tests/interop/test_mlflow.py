"""MLflow both ways, against a real ``mlflow server`` (SQLite backend, artifacts in tmp, loopback port).

The mirror (``[plugins.mlflow]``) and ``assay import-mlflow`` are checked through MLflow's own
client: what arrived there, and what assay's ledger recorded about what came from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_assay
from tests.interop.conftest import Project

MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port; its URL. Stopped (whole process group) afterwards."""
    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, **MLFLOW_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (base / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
         "--artifacts-destination", str(base / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}: {(base / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer on {url}: {(base / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def client(mlflow_server: str) -> Any:
    os.environ.update(MLFLOW_ENV)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server)


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def signed_records(proj: Project, run_id: str) -> list[dict[str, Any]]:
    result = run_assay("audit", "log", "--run", run_id, "--json", home=proj.home)
    assert result.returncode == 0, result.stderr
    return list(result.json["records"])


# --------------------------------------------------------------------------- the mirror


def test_mirror_sends_the_run_to_mlflow(project: Project, mlflow_server: str, client: Any, tmp_path: Path) -> None:
    run = project.run(extra=f'\n[plugins.mlflow]\ntracking_uri = "{mlflow_server}"\n')
    assert "warning" not in run["_stderr"], run["_stderr"]
    experiment = client.get_experiment_by_name("adult-interop")
    [mirrored] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`assay.run_id` = '{run['run_id']}'")
    assert f"MLflow run {mirrored.info.run_id}" in run["_stderr"]
    assert mirrored.info.status == "FINISHED"

    tags = mirrored.data.tags
    records = signed_records(project, run["run_id"])
    seq = {r["kind"]: r["seq"] for r in records}
    assert tags["assay.verdict"] == run["verdict"]["decision"]
    assert tags["assay.status"] == run["status"]
    assert tags["assay.policy"] == run["verdict"]["policy"]
    assert tags["assay.policy_digest"] == run["verdict"]["policy_hash"]
    assert tags["assay.artifact_sha256"] == run["model"]["artifact"]
    assert int(tags["assay.ledger_seq.verdict"]) == seq["verdict"]
    assert int(tags["assay.ledger_seq.evidence"]) == seq["evidence"]

    params, metrics = mirrored.data.params, mirrored.data.metrics
    assert params["model.family"] == "logistic_regression" and params["split.seed"] == "7"
    assert metrics["test.roc_auc"] == pytest.approx(run["metrics"]["test"]["roc_auc"])
    low, high = run["metrics"]["test"]["roc_auc_ci"]
    assert (metrics["test.roc_auc_ci_low"], metrics["test.roc_auc_ci_high"]) == pytest.approx((low, high))
    assert metrics["train.roc_auc"] == pytest.approx(run["metrics"]["train"]["roc_auc"])
    assert metrics["cv.roc_auc.mean"] == pytest.approx(run["metrics"]["cv"]["roc_auc"]["mean"])
    assert metrics["baseline.test.roc_auc"] == pytest.approx(run["baseline"]["test"]["roc_auc"])
    assert "fairness.sex.selection_rate_ratio" in metrics and "fairness.sex.Female.selection_rate" in metrics

    artifacts = {a.path for a in client.list_artifacts(mirrored.info.run_id, "assay")}
    assert artifacts == {"assay/evidence.json", "assay/verdict.json", "assay/report.html", "assay/bom.cdx.json"}
    local = Path(client.download_artifacts(mirrored.info.run_id, "assay", str(tmp_path)))
    [evidence_record] = [r for r in records if r["kind"] == "evidence"]
    assert json.loads((local / "evidence.json").read_text())["metrics"] == evidence_record["payload"]["metrics"]
    assert run["run_id"] in (local / "report.html").read_text()
    bom = json.loads((local / "bom.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["signature"]["algorithm"] == "Ed25519"

    # the model as a LoggedModel of that run, carrying assay's exact artifact
    [model_id] = [o.model_id for o in mirrored.outputs.model_outputs]
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == mirrored.info.run_id and str(logged.status) in ("READY", "LoggedModelStatus.READY")
    assert logged.tags["assay.artifact_sha256"] == run["model"]["artifact"]
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(mlflow_server)
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path / "model")))
    assert sha256_file(model_dir / "assay" / "model.skops") == run["model"]["artifact"]
    estimator = mlflow.sklearn.load_model(f"models:/{model_id}")
    import pandas as pd

    frame = pd.read_csv(project.directory / "adult.csv").head(50)
    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore

    ours = load_model(ArtifactStore(project.home), run["model"]["artifact"])
    features = [c for c in frame.columns if c not in ("income", "fnlwgt", "split", "sex", "race")]
    assert (estimator.predict_proba(frame[features]) == ours.predict_proba(frame[features])).all()


def test_failed_mirror_is_a_warning_and_changes_nothing(project: Project, trained: tuple[Project, dict]) -> None:
    _, reference = trained
    dead = f"http://127.0.0.1:{free_port()}"
    run = project.run(extra=f'\n[plugins.mlflow]\ntracking_uri = "{dead}"\ntimeout_s = 5\nretries = 0\n')
    assert "warning: MLflow mirror of run" in run["_stderr"] and "unaffected" in run["_stderr"]
    assert run["status"] == reference["status"]
    assert run["verdict"]["decision"] == reference["verdict"]["decision"]
    assert [(r["id"], r["outcome"]) for r in run["verdict"]["rules"]] == \
        [(r["id"], r["outcome"]) for r in reference["verdict"]["rules"]]
    assert run_assay("audit", "verify", home=project.home).returncode == 0


def test_plugin_tables_are_validated_by_their_plugin(project: Project) -> None:
    project.write_spec('\n[plugins.mlfow]\ntracking_uri = "http://127.0.0.1:1"\n')
    typo = run_assay("run", str(project.spec), "-q", home=project.home)
    assert typo.returncode == 2, typo.stderr
    assert str(project.spec) in typo.stderr and "'plugins.mlfow'" in typo.stderr and "'plugins.mlflow'" in typo.stderr
    assert "Traceback" not in typo.stderr

    project.write_spec('\n[plugins.mlflow]\ntracking_url = "http://127.0.0.1:1"\n')
    key = run_assay("run", str(project.spec), "-q", home=project.home)
    assert key.returncode == 2, key.stderr
    assert "unknown key 'plugins.mlflow.tracking_url'; did you mean 'plugins.mlflow.tracking_uri'?" in key.stderr
    assert "missing required key" not in key.stderr  # the typo explains it: one problem, not two

    project.write_spec('\n[plugins.mlflow]\ntracking_uri = "http://127.0.0.1:1"\n')
    blocked = run_assay("-p", "no:mlflow", "run", str(project.spec), "-q", home=project.home)
    assert blocked.returncode == 2 and "blocked" in blocked.stderr
    # nothing was recorded by the refused runs
    assert not (project.home / "assay.db").exists() or \
        run_assay("audit", "log", "--json", home=project.home).json["count"] == 0


def test_runs_without_the_table_never_import_mlflow(project: Project) -> None:
    project.write_spec()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "assay", "--home", str(project.home), "run",
                           str(project.spec), "-q", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "mlflow" not in imported and not any(m.startswith("mlflow.") for m in imported)
    assert "sklearn" in imported  # the measurement works: the run did import its own heavy libraries


# --------------------------------------------------------------------------- import-mlflow

LOG_SCRIPT = """
import json, os, sys
import mlflow, mlflow.sklearn, pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

uri, csv, folder, how, fmt = sys.argv[1:6]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("external-team")
frame = pd.read_csv(csv).drop(columns=["fnlwgt", "split"])
train, evaluation = train_test_split(frame, test_size=0.4, random_state=0, stratify=frame["income"])
X, y = train.drop(columns=["income"]), train["income"]
numeric = [c for c in X if X[c].dtype.kind in "if"]
model = make_pipeline(make_column_transformer((StandardScaler(), numeric),
                                              (OneHotEncoder(handle_unknown="ignore"), [c for c in X if c not in numeric])),
                      LogisticRegression(max_iter=500))
model.fit(X, y)
path = os.path.join(folder, "evaluation.csv")
evaluation.to_csv(path, index=False)
with mlflow.start_run(run_name="census-lr") as run:
    mlflow.log_param("max_iter", 500)
    if how == "dataset":
        mlflow.log_input(mlflow.data.from_pandas(evaluation, source=path, targets="income", name="census-eval"),
                         context="evaluation")
    else:
        mlflow.log_artifact(path, "data")
    mlflow.log_input(mlflow.data.from_pandas(train, targets="income", name="census-train"), context="training")
    info = mlflow.sklearn.log_model(model, name="census-model", signature=infer_signature(X, y),
                                    serialization_format=fmt)
print(json.dumps({"run_id": run.info.run_id, "model_id": info.model_id}))
"""


def log_mlflow_run(mlflow_server: str, csv: Path, folder: Path, how: str, fmt: str = "skops") -> dict[str, str]:
    """A scikit-learn model and its evaluation data logged the way an MLflow user would."""
    script = folder / "log_run.py"
    script.write_text(LOG_SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), mlflow_server, str(csv), str(folder), how, fmt],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **MLFLOW_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("how", ["artifact", "dataset"])
def test_import_gates_an_mlflow_model_on_its_evaluation_data(
        how: str, project: Project, mlflow_server: str, tmp_path: Path) -> None:
    logged = log_mlflow_run(mlflow_server, project.directory / "adult.csv", tmp_path, how)
    result = run_assay("import-mlflow", logged["run_id"], "--tracking-uri", mlflow_server, "--sensitive", "sex",
                       "--json", "-q", home=project.home)
    assert result.returncode in (0, 1), result.stderr
    out = result.json
    assert out["imported"]["mlflow_run_id"] == logged["run_id"]
    assert out["imported"]["model_uri"] == f"models:/{logged['model_id']}"
    assert out["imported"]["data"]["from"] == ("mlflow run artifact" if how == "artifact" else "mlflow dataset input")
    assert out["model"]["name"] == "census-model" and out["model"]["family"] == "logistic_regression"

    # the ledger says where the model came from, and verifies
    records = signed_records(project, out["run_id"])
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "run_started" and "evidence" in kinds and "verdict" in kinds
    [started] = [r for r in records if r["kind"] == "run_started"]
    [model] = [r for r in records if r["kind"] == "model"]
    assert started["payload"]["imported"]["mlflow_run_id"] == logged["run_id"]
    assert model["payload"]["imported"]["model_id"] == logged["model_id"]
    assert run_assay("audit", "verify", home=project.home).returncode == 0

    # checks and gate ran on the evaluation data: metrics, fairness for sex, leakage checks
    [evidence] = [r["payload"] for r in records if r["kind"] == "evidence"]
    assert evidence["data"]["rows"] == 800 and "sex" in evidence["fairness"]
    assert evidence["metrics"]["test"]["roc_auc"] > 0.8
    rules = {r["id"]: r for r in out["verdict"]["rules"]}
    assert rules["beats-baseline"]["outcome"] == "pass"
    # how the model was trained is not known to assay: those leakage facts fail closed
    assert rules["no-leakage[holdout_used_in_tuning]"]["outcome"] == "block"
    assert out["status"] == "blocked" and result.returncode == 1

    # the stored model is the MLflow model: same predictions on the evaluation rows
    os.environ.update(MLFLOW_ENV)
    import mlflow
    import mlflow.sklearn
    import pandas as pd

    from assay.storage.modelio import load_model
    from assay.storage.store import ArtifactStore

    mlflow.set_tracking_uri(mlflow_server)
    theirs = mlflow.sklearn.load_model(f"models:/{logged['model_id']}")
    ours = load_model(ArtifactStore(project.home), out["model"]["artifact"])
    frame = pd.read_csv(tmp_path / "evaluation.csv").drop(columns=["income"])
    assert (theirs.predict_proba(frame) == ours.predict_proba(frame)).all()

    # and it can be re-gated from the ledger like any run
    gate = run_assay("gate", out["run_id"], "--format", "json", home=project.home)
    assert gate.returncode == 1 and gate.json["verdict"]["decision"] == "block"


def test_import_refuses_what_it_cannot_load_safely(project: Project, mlflow_server: str, tmp_path: Path) -> None:
    pickled = log_mlflow_run(mlflow_server, project.directory / "adult.csv", tmp_path, "artifact", fmt="cloudpickle")
    refused = run_assay("import-mlflow", pickled["run_id"], "--tracking-uri", mlflow_server, "-q", home=project.home)
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr and "Traceback" not in refused.stderr

    missing = run_assay("import-mlflow", "0" * 32, "--tracking-uri", mlflow_server, "-q", home=project.home)
    assert missing.returncode == 2 and "not found" in missing.stderr

    dead = run_assay("import-mlflow", pickled["run_id"], "--tracking-uri", f"http://127.0.0.1:{free_port()}", "-q",
                     home=project.home, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    assert dead.returncode == 2 and "cannot reach the MLflow tracking server" in dead.stderr

    none = run_assay("import-mlflow", pickled["run_id"], "-q", home=project.home, env={"MLFLOW_TRACKING_URI": ""})
    assert none.returncode == 2 and "--tracking-uri" in none.stderr
    assert not (project.home / "assay.db").exists() or \
        run_assay("audit", "log", "--json", home=project.home).json["count"] == 0
