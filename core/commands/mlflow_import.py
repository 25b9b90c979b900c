"""``assay import-mlflow RUN_ID``: bring an MLflow-logged scikit-learn model under assay's gate.

The MLflow run's logged model (an MLflow 3 LoggedModel of the run, or a run artifact with an
``MLmodel`` file) and its logged evaluation data (a dataset input with context
``evaluation``/``eval``/``test``/``validation``, or a CSV/Parquet run artifact named like one,
or ``--data F``) go through the same runner as ``assay run``: data checks, the split, leakage
checks, evaluation against the baseline, fairness, the policy gate and the signed ledger. The
train stage records the imported model (saved with skops, content-addressed) instead of fitting
one, and the run's records name the MLflow run id, experiment, model URI and tracking server.

The evaluation data is split as the spec's ``[split]`` says: the first part stands in for the
training part (it fits the baseline and gives the "train" metrics), the holdout is scored; the
model was fitted elsewhere, so the evidence's ``model.imported`` says where from, and there are no
cross-validation results. A model stored with pickle or cloudpickle runs code when loaded: it is
refused unless ``--trust-pickle`` is given; skops-stored models (MLflow's default) load safely.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from assay.errors import BadInput
from assay.storage.settings import redact_url

EVALUATION_CONTEXTS = ("evaluation", "eval", "test", "testing", "validation", "holdout")
DATA_SUFFIXES = (".csv", ".parquet", ".pq")


@contextlib.contextmanager
def _mlflow_env(timeout_s: int = 30, retries: int = 1) -> Iterator[None]:
    wanted = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if before[k] is None})
    try:
        # MLflow prints links and progress on stdout, which belongs to --json.
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)


def final_step(estimator: Any) -> Any:
    """The model at the end of a scikit-learn ``Pipeline`` (the estimator itself when it is none)."""
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def family_of(estimator: Any) -> str:
    """``LogisticRegression`` → ``logistic_regression``; ``HistGradientBoostingClassifier`` → ``hist_gradient_boosting``."""
    name = type(final_step(estimator)).__name__
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return re.sub(r"_(classifier|regressor)$", "", snake)


def _params(estimator: Any) -> dict[str, Any]:
    try:
        params = final_step(estimator).get_params(deep=False)
    except Exception:
        return {}
    return {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool)) or v is None}


class Source:
    """What was found in the MLflow run, and where it came from."""

    def __init__(self, client: Any, uri: str, run: Any) -> None:
        self.client, self.uri, self.run = client, uri, run
        self.run_id = run.info.run_id

    # ----------------------------------------------------------------- the model
    def model_uri(self, wanted: str | None) -> tuple[str, str | None]:
        """``models:/<id>`` of the run's LoggedModel (or ``runs:/<id>/<path>``), and the model id."""
        found: list[Any] = []
        with contextlib.suppress(Exception):
            found = list(self.client.search_logged_models(
                experiment_ids=[self.run.info.experiment_id], filter_string=f"source_run_id = '{self.run_id}'"))
        outputs = [o.model_id for o in getattr(getattr(self.run, "outputs", None), "model_outputs", None) or []]
        for model_id in outputs:
            if all(m.model_id != model_id for m in found):
                with contextlib.suppress(Exception):
                    found.append(self.client.get_logged_model(model_id))
        if wanted:
            chosen = [m for m in found if wanted in (m.model_id, m.name)]
            if not chosen:
                known = ", ".join(f"{m.name} ({m.model_id})" for m in found) or "none"
                raise BadInput(f"--model {wanted}: MLflow run {self.run_id} has no logged model of that id or name "
                               f"(its models: {known})")
            found = chosen
        if len(found) > 1:
            listed = ", ".join(f"{m.name} ({m.model_id})" for m in found)
            raise BadInput(f"MLflow run {self.run_id} logged {len(found)} models ({listed}); name one with --model")
        if found:
            return f"models:/{found[0].model_id}", str(found[0].model_id)
        for path in self._artifact_paths(depth=2):
            if path.endswith("/MLmodel") or path == "MLmodel":
                folder = path.rpartition("/")[0]
                return f"runs:/{self.run_id}/{folder}", None
        raise BadInput(f"MLflow run {self.run_id} has no logged model (log one with mlflow.sklearn.log_model)")

    def _artifact_paths(self, depth: int) -> list[str]:
        out: list[str] = []

        def walk(path: str | None, level: int) -> None:
            for item in self.client.list_artifacts(self.run_id, path):
                out.append(item.path)
                if item.is_dir and level < depth:
                    walk(item.path, level + 1)

        with contextlib.suppress(Exception):
            walk(None, 1)
        return out

    # ----------------------------------------------------------------- the data
    def evaluation_data(self, folder: Path) -> tuple[Path, dict[str, Any]]:
        """Download the run's evaluation data into ``folder``; return its path and a description."""
        import mlflow.data

        inputs = list(getattr(getattr(self.run, "inputs", None), "dataset_inputs", None) or [])

        def context(item: Any) -> str:
            return next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")

        chosen = [d for d in inputs if context(d).lower() in EVALUATION_CONTEXTS]
        unloadable: list[str] = []
        for item in chosen:
            dataset = item.dataset
            try:
                load: Any = mlflow.data.get_source(item).load  # artifact and HTTP sources take dst_path
                try:
                    local = Path(load(dst_path=str(folder / "download")))
                except TypeError:
                    local = Path(load())
            except Exception as exc:
                unloadable.append(f"dataset {dataset.name!r} ({dataset.source_type} source: "
                                  f"{type(exc).__name__})")
                continue
            if local.is_dir():
                files = sorted(p for p in local.rglob("*") if p.suffix.lower() in DATA_SUFFIXES)
                if len(files) != 1:
                    continue
                local = files[0]
            return _copy(local, folder), {"from": "mlflow dataset input", "name": dataset.name,
                                          "digest": dataset.digest, "context": context(item),
                                          "source_type": dataset.source_type,
                                          "source": redact_url(str(dataset.source))}
        for path in self._artifact_paths(depth=2):
            name = path.rpartition("/")[2].lower()
            if name.endswith(DATA_SUFFIXES) and any(word in name for word in EVALUATION_CONTEXTS):
                local = Path(self.client.download_artifacts(self.run_id, path, str(folder / "download")))
                return _copy(local, folder), {"from": "mlflow run artifact", "artifact": path}
        contexts = ", ".join(sorted({context(d) or "(none)" for d in inputs})) or "no dataset inputs"
        why = f"; cannot load its {', '.join(unloadable)}" if unloadable else ""
        raise BadInput(f"MLflow run {self.run_id} logged no loadable evaluation data (dataset contexts: {contexts}{why}); "
                       "log it with mlflow.log_input(dataset, context='evaluation') from a file or URL source, "
                       "or as a run artifact named evaluation.csv, or pass --data F --target T")


def _copy(path: Path, folder: Path) -> Path:
    target = folder / ("evaluation" + path.suffix.lower())
    shutil.copyfile(path, target)
    shutil.rmtree(folder / "download", ignore_errors=True)
    return target


def _target_from_signature(model_uri: str) -> str | None:
    with contextlib.suppress(Exception):
        from mlflow.models import get_model_info

        outputs = get_model_info(model_uri).signature.outputs
        names = [c.name for c in outputs.inputs if getattr(c, "name", None)] if outputs is not None else []
        if len(names) == 1:
            return str(names[0])
    return None


def _spec_text(name: str, source: str, target: str, sensitive: tuple[str, ...], features: list[str],
               policy: str | None, description: str) -> str:
    q = json.dumps
    lines = ["[project]", f"name = {q(name)}", f"description = {q(description)}", "",
             "[data]", f"source = {q(source)}", f"target = {q(target)}", f"sensitive = {q(list(sensitive))}"]
    if features:
        lines.append(f"features = {q(features)}")
    lines += ["", "[split]", "test_size = 0.5", "cv_folds = 2", "", "[train]", 'tuning = "none"', ""]
    if policy:
        lines += ["[gate]", f"policy = {q(policy)}", ""]
    return "\n".join(lines)


def _project_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")
    return cleaned or "mlflow-import"


@click.command("import-mlflow")
@click.argument("mlflow_run_id")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server (default $MLFLOW_TRACKING_URI).")
@click.option("--model", "model_ref", help="The run's logged model to import (id or name), when it logged several.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), help="Evaluation data (CSV or Parquet) instead of the run's.")
@click.option("--target", help="Target column (default: the model signature's output column).")
@click.option("--sensitive", multiple=True, metavar="COLUMN", help="A column for the fairness checks (repeatable).")
@click.option("--policy", help="Policy file or bundled pack (default assay:standard).")
@click.option("--name", "project", help="Model name in assay's registry (default: the logged model's name).")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickle/cloudpickle model (loading it runs its code).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_obj
def import_mlflow(state: Any, mlflow_run_id: str, tracking_uri: str | None, model_ref: str | None,
                  data_path: str | None, target: str | None, sensitive: tuple[str, ...], policy: str | None,
                  project: str | None, trust_pickle: bool, as_json: bool, quiet: bool) -> None:
    """Gate the scikit-learn model of MLflow run MLFLOW_RUN_ID on its logged evaluation data."""
    if not tracking_uri:
        raise BadInput("no MLflow tracking server: pass --tracking-uri URI or set MLFLOW_TRACKING_URI")
    if data_path and not Path(data_path).is_file():
        raise BadInput(f"--data {data_path}: file not found")
    folder = Path(state.home) / "imports" / re.sub(r"[^A-Za-z0-9_-]", "_", mlflow_run_id)
    with _mlflow_env():
        try:
            import mlflow
            import mlflow.sklearn
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise BadInput(f"mlflow is not installed ({exc}); install it with: pip install 'assay[mlflow]'") from None
        import logging

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        shown_uri = redact_url(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri)
        try:
            mlrun = client.get_run(mlflow_run_id)
        except MlflowException as exc:
            said = " ".join(str(exc.message).split())[:300]
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise BadInput(f"MLflow run {mlflow_run_id} not found at {shown_uri}: {said}") from None
            raise BadInput(f"--tracking-uri {shown_uri}: cannot reach the MLflow tracking server, or it refused "
                           f"the request ({said}); check the address and that the server is running") from None
        except Exception as exc:
            raise BadInput(f"--tracking-uri {shown_uri}: cannot reach the MLflow tracking server "
                           f"({type(exc).__name__}); check the address and that the server is running") from None
        source = Source(client, tracking_uri, mlrun)
        model_uri, model_id = source.model_uri(model_ref)
        mlflow.set_tracking_uri(tracking_uri)
        from mlflow.models import get_model_info

        try:
            info = get_model_info(model_uri)
        except Exception as exc:
            raise BadInput(f"MLflow model {model_uri}: cannot read its MLmodel file ({type(exc).__name__}: {exc})") from None
        flavors = dict(info.flavors or {})
        if "sklearn" not in flavors:
            raise BadInput(f"MLflow model {model_uri} is not a scikit-learn model (its flavors: "
                           f"{', '.join(sorted(flavors)) or 'none'}); assay imports mlflow.sklearn models")
        serialization = str(flavors["sklearn"].get("serialization_format") or "cloudpickle")
        if serialization != "skops" and not trust_pickle:
            raise BadInput(f"MLflow model {model_uri} is stored with {serialization}: loading it runs code from the "
                           "file. Log it with serialization_format='skops', or pass --trust-pickle if you trust it")
        try:
            estimator = mlflow.sklearn.load_model(model_uri)
        except Exception as exc:
            raise BadInput(f"MLflow model {model_uri} cannot be loaded ({type(exc).__name__}: {exc})") from None
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if data_path:
            data_file, data_info = _copy_given(Path(data_path), folder), {"from": "--data", "path": str(Path(data_path).resolve())}
        else:
            data_file, data_info = source.evaluation_data(folder)
        target = target or _target_from_signature(model_uri)
        if not target:
            raise BadInput(f"MLflow model {model_uri} has no output column in its signature: pass --target COLUMN")
        logged = next((m for m in [_logged(client, model_id)] if m is not None), None)
    features = [str(c) for c in getattr(estimator, "feature_names_in_", [])]
    name = _project_name(project or (logged.name if logged is not None else "") or mlrun.info.run_name or "mlflow-import")
    provenance = {"source": "mlflow", "mlflow_run_id": mlflow_run_id, "mlflow_run_name": mlrun.info.run_name,
                  "experiment_id": mlrun.info.experiment_id, "tracking_uri": shown_uri, "model_uri": model_uri,
                  "model_id": model_id, "serialization_format": serialization,
                  "data": {k: v for k, v in data_info.items() if v is not None}}
    spec_path = folder / "assay.toml"
    spec_path.write_text(_spec_text(name, data_file.name, target, sensitive, features, policy,
                                    f"imported from MLflow run {mlflow_run_id} ({shown_uri})"), encoding="utf-8")
    _run_imported(state, spec_path, estimator, provenance, as_json, quiet)


def _copy_given(path: Path, folder: Path) -> Path:
    target = folder / ("evaluation" + path.suffix.lower())
    shutil.copyfile(path, target)
    return target


def _logged(client: Any, model_id: str | None) -> Any:
    if model_id is None:
        return None
    with contextlib.suppress(Exception):
        return client.get_logged_model(model_id)
    return None


def _run_imported(state: Any, spec_path: Path, estimator: Any, provenance: dict[str, Any], as_json: bool,
                  quiet: bool) -> None:
    from assay.commands.terminal import make_console
    from assay.kernel.runner import ImportedModel, Runner
    from assay.kernel.spec import load_spec

    spec, _ = load_spec(spec_path)
    extra: tuple[tuple[str, object], ...] = ()
    if not quiet and (not as_json or sys.stderr.isatty()):
        from assay.commands.terminal import TerminalReporter

        extra = (("terminal", TerminalReporter(make_console(stderr=True))),)
    pm = state.plugin_manager(extra)
    imported = ImportedModel(estimator, family_of(estimator), _params(estimator), provenance)
    result = Runner(pm, state, spec, spec_path, imported=imported).execute()
    if as_json:
        click.echo(json.dumps({**result.to_json(), "imported": provenance}, sort_keys=True))
    else:
        from assay.commands.cli import _print_result

        _print_result(result)
        click.echo(f"imported MLflow run {provenance['mlflow_run_id']} ({provenance['model_uri']}) as run {result.run_id}",
                   err=True)
    sys.exit(result.exit_code)
