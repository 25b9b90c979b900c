"""The model registry and artifacts: list/show, registered baselines, tampered bytes, untrusted types."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from assay.errors import Finding
from assay.storage.modelio import load_model, predictions_hash, save_model
from assay.storage.settings import Settings
from assay.storage.store import ArtifactStore, RunStore
from tests.training.conftest import Trained, assay, assay_run


def test_models_list_and_show(trained: Trained) -> None:
    listed = assay("models", "list", "--json", home=trained.home)
    assert listed.returncode == 0, listed.stderr
    first = next(m for m in listed.json["models"] if m["ref"] == "adult-3k@1")
    assert first["run_id"] == trained.result["run_id"]
    assert first["artifact"] == trained.result["model"]["artifact"]
    assert first["family"] == trained.result["model"]["family"] and first["stage"] == "none"

    shown = assay("models", "show", "adult-3k@1", "--json", home=trained.home)
    assert shown.returncode == 0, shown.stderr
    data = shown.json
    assert data["run_id"] == trained.result["run_id"] and data["version"] == 1
    assert data["metrics"]["test"]["roc_auc"] == trained.result["metrics"]["test"]["roc_auc"]
    assert data["params"] and data["data"]["rows"] == 3000

    text = assay("models", "show", "adult-3k@1", home=trained.home)
    assert text.returncode == 0 and trained.result["run_id"] in text.stdout

    unknown = assay("models", "show", "adult-3k@99", "--json", home=trained.home)
    assert unknown.returncode == 2
    assert "no such version" in unknown.stderr


def test_a_registered_version_is_the_baseline_on_the_same_holdout(trained: Trained) -> None:
    first = trained.result
    pinned = assay_run(trained.directory, trained.home, "evaluate.baseline='adult-3k@1'")
    assert pinned["baseline"]["name"] == "adult-3k@1"
    # same data, split and seed: the baseline (run 1's model) scores exactly what run 1 scored
    assert pinned["baseline"]["test"]["roc_auc"] == first["metrics"]["test"]["roc_auc"]
    assert pinned["baseline"]["test"]["log_loss"] == first["metrics"]["test"]["log_loss"]


def test_the_latest_version_baseline_is_the_model_before_this_run(trained: Trained) -> None:
    before = RunStore(Settings.resolve(trained.home)).resolve_model("adult-3k@latest")
    run = assay_run(trained.directory, trained.home, "evaluate.baseline='adult-3k@latest'")
    assert run["model"]["ref"] != before.ref
    assert run["baseline"]["name"] == before.ref
    baseline_run = RunStore(Settings.resolve(trained.home)).get_run(before.run_id).evidence
    assert baseline_run is not None
    assert run["baseline"]["test"]["roc_auc"] == baseline_run["metrics"]["test"]["roc_auc"]


def test_a_baseline_whose_bytes_were_changed_is_refused(trained: Trained, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained.home, home)
    artifact = trained.result["model"]["artifact"]
    path = ArtifactStore(home).path(artifact)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(Finding, match="was altered"):
        load_model(ArtifactStore(home), artifact)

    result = assay("run", str(trained.directory / "assay.toml"), "--json", "-q",
                   "--set", "evaluate.baseline='adult-3k@1'", home=home)
    assert result.returncode == 1, result.stderr
    assert result.json["status"] == "errored"
    assert "was altered" in result.json["error"] and artifact.removeprefix("sha256:") in result.json["error"]


class Smuggled:
    """A class no allow-list knows: loading it could run arbitrary code."""

    def __init__(self) -> None:
        self.payload = "anything"

    def predict(self, X: Any) -> Any:
        return [0] * len(X)


def test_an_artifact_with_an_untrusted_type_is_refused(trained: Trained, tmp_path: Path) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    store = ArtifactStore(tmp_path)
    good = load_model(ArtifactStore(trained.home), trained.result["model"]["artifact"])
    assert predictions_hash(good, _holdout(trained)) == _recorded_predictions_hash(trained)

    smuggled = Pipeline([("hook", FunctionTransformer(shutil.rmtree)), ("model", good)])
    digest = save_model(store, smuggled)
    with pytest.raises(Finding, match=r"not trusted: .*shutil.rmtree"):
        load_model(store, digest)
    with pytest.raises(Finding, match=r"not trusted: .*test_registry.Smuggled"):
        load_model(store, save_model(store, Smuggled()))


def _holdout(trained: Trained) -> Any:
    """The recorded run's holdout rows, rebuilt through the real split hook."""
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec

    spec, _ = load_spec(trained.directory / "assay.toml")
    runner = Runner(make_plugin_manager(), Settings.resolve(trained.home), spec, trained.directory / "assay.toml")
    run, dataset, _ = runner.prepare()
    return runner.pm.hook.split_data(run=run, dataset=dataset).X("test")


def _recorded_predictions_hash(trained: Trained) -> str:
    evidence = RunStore(Settings.resolve(trained.home)).get_run(trained.result["run_id"]).evidence
    assert evidence is not None
    return str(evidence["model"]["predictions_hash"])
