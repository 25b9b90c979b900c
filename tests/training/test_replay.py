"""``assay replay`` and ``assay diff`` through the real CLI on the Adult sample."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from assay.storage.settings import Settings
from assay.storage.store import RunStore
from tests.training.conftest import Trained, assay, assay_run, install_plugin, project

UNSEEDED_TRAINER = '''
from assay.kernel.hookspecs import hookimpl
from assay.kernel.types import Trainer


def build(task, run=None):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=15, max_depth=6)  # no random_state: every fit differs


@hookimpl
def register_trainers(register):
    register(Trainer("unseeded_forest", frozenset({"binary"}), build, preprocessing="ordinal"))
'''


def ledger(home: Path, run_id: str) -> list[dict[str, Any]]:
    result = assay("audit", "log", "--run", run_id, "--json", home=home)
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = result.json["records"]
    return records


def test_replaying_a_finished_run_reproduces_it(trained: Trained) -> None:
    original = trained.result["run_id"]
    result = assay("replay", original, "--json", home=trained.home)
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.json
    assert report["reproduced"] is True and report["outcome"] == "reproduced"
    assert report["run_id"] == original and report["replay_run_id"] not in (None, original)
    assert report["predictions_hash"]["recorded"] == report["predictions_hash"]["replay"]
    assert report["predictions_hash"]["recorded"].startswith("sha256:")
    assert report["metrics"] == {} and report["model"] == {} and report["environment"] == {}

    # the replay is a recorded run of its own, linked to the original in its evidence and in the ledger
    replay_id = report["replay_run_id"]
    row = RunStore(Settings.resolve(trained.home)).get_run(replay_id)
    assert row.status in ("passed", "blocked") and row.evidence is not None
    assert row.evidence["facts"]["replay_of"] == original
    kinds = [r["kind"] for r in ledger(trained.home, replay_id)]
    assert kinds[0] == "run_started" and kinds[-1] == "replay"
    replay_record = ledger(trained.home, replay_id)[-1]["payload"]
    assert replay_record["replay_of"] == original and replay_record["replay_run_id"] == replay_id
    assert replay_record["outcome"] == "reproduced"

    # and diff finds nothing that matters between the two
    diff = assay("diff", original, replay_id, "--json", home=trained.home)
    assert diff.returncode == 0, diff.stderr
    changes = diff.json
    assert changes["spec"] == {} and changes["data"] == {} and changes["params"] == {}
    assert changes["metrics"] == {} and changes["environment"] == {}
    assert "predictions_hash" not in changes["model"]

    text = assay("replay", original, home=trained.home)
    assert text.returncode == 0
    assert f"replay of {original}: reproduced" in text.stdout


def test_replay_after_changing_one_row_says_the_data_changed(tmp_path: Path, adult_3k_csv: Path) -> None:
    directory = project(tmp_path / "project", adult_3k_csv)
    home = tmp_path / "home"
    original = assay_run(directory, home)["run_id"]
    runs_before = len(RunStore(Settings.resolve(home)).list_runs())

    frame = pd.read_csv(directory / "adult.csv")
    frame.loc[17, "hours_per_week"] += 1
    frame.to_csv(directory / "adult.csv", index=False)

    result = assay("replay", original, "--json", home=home)
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.json
    assert report["outcome"] == "data_changed" and report["reproduced"] is False
    assert report["replay_run_id"] is None
    assert report["reasons"][0].startswith("data changed: adult.csv no longer matches the recorded fingerprint")
    assert report["data"]["fingerprint"][0] != report["data"]["fingerprint"][1]
    # detected before retraining: no new run
    assert len(RunStore(Settings.resolve(home)).list_runs()) == runs_before
    assert ledger(home, original)[-1]["kind"] == "replay"
    assert ledger(home, original)[-1]["payload"]["outcome"] == "data_changed"

    text = assay("replay", original, home=home)
    assert text.returncode == 1
    assert "NOT reproduced (data changed)" in text.stdout and "data changed:" in text.stdout

    # a row removed: the summary says how
    frame.drop(index=[3, 4]).to_csv(directory / "adult.csv", index=False)
    report = assay("replay", original, "--json", home=home).json
    assert report["data"]["rows"] == [3000, 2998]


def test_replay_names_nondeterminism_then_a_changed_environment(tmp_path: Path, adult_3k_csv: Path) -> None:
    env = install_plugin(tmp_path / "site", "unseeded_forest", UNSEEDED_TRAINER)
    directory = project(tmp_path / "project", adult_3k_csv)
    home = tmp_path / "home"
    original = assay_run(directory, home, "train.candidates=['unseeded_forest']", "train.tuning='none'",
                         env=env)["run_id"]

    result = assay("replay", original, "--json", home=home, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.json
    assert report["outcome"] == "nondeterministic"
    assert report["reasons"][0].startswith("nondeterminism: same data and environment, different results")
    assert any(r.startswith("holdout predictions differ") for r in report["reasons"])
    assert report["environment"] == {}

    # the recorded environment is signed: editing the runs table to fake another one is a finding
    store = RunStore(Settings.resolve(home))
    evidence = store.get_run(original).evidence
    assert evidence is not None
    installed = evidence["environment"]["packages"]["scikit-learn"]
    evidence["environment"]["packages"]["scikit-learn"] = "1.0.2"
    store.update_run(original, evidence_json=json.dumps(evidence))
    faked = assay("replay", original, "--json", home=home, env=env)
    assert faked.returncode == 1 and "runs table disagrees with the signed evidence" in faked.stderr
    assert "environment.packages.scikit-learn: ledger" in faked.stderr
    evidence["environment"]["packages"]["scikit-learn"] = installed
    store.update_run(original, evidence_json=json.dumps(evidence))

    # the same mismatch, replayed where another scikit-learn is installed: the environment is named
    other = tmp_path / "other-sklearn"
    dist = other / "scikit_learn-1.0.2.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 1.0.2\n", encoding="utf-8")
    shadowed = {"PYTHONPATH": f"{other}{os.pathsep}{env['PYTHONPATH']}"}  # found first: its version is reported
    report = assay("replay", original, "--json", home=home, env=shadowed).json
    assert report["outcome"] == "environment_changed"
    assert report["environment"]["packages"] == {"scikit-learn": [installed, "1.0.2"]}
    assert f"packages.scikit-learn: {installed} → 1.0.2" in report["reasons"][0]


def test_replay_of_an_unknown_or_unfinished_run_is_bad_input(trained: Trained) -> None:
    missing = assay("replay", "01NOSUCHRUN0000000000000000", home=trained.home)
    assert missing.returncode == 2
    assert "not found" in missing.stderr


def test_diff_shows_spec_params_and_metrics_that_changed(trained: Trained) -> None:
    second = assay_run(trained.directory, trained.home, "split.seed=12", "train.budget=2")
    result = assay("diff", trained.result["run_id"], second["run_id"], "--json", home=trained.home)
    assert result.returncode == 0, result.stderr
    changes = result.json
    assert changes["identical"] is False
    assert changes["spec"] == {"split.seed": [11, 12], "train.budget": [3, 2]}
    assert changes["data"]["train.fingerprint"][0] != changes["data"]["train.fingerprint"][1]
    assert "fingerprint" not in changes["data"]  # same table, different split
    assert changes["environment"] == {}
    test_auc = changes["metrics"]["metrics.test.roc_auc"]
    assert test_auc["delta"] == test_auc["b"] - test_auc["a"]
    assert changes["params"]  # another seed draws other candidates

    text = assay("diff", trained.result["run_id"], second["run_id"], home=trained.home)
    assert text.returncode == 0
    assert "  split.seed: 11 → 12" in text.stdout and "  train.budget: 3 → 2" in text.stdout
    assert "metrics.test.roc_auc" in text.stdout
