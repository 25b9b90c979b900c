"""Every task end to end through the real CLI, on (subsampled) real example data.

Each test copies an example's own ``assay.toml`` next to a sample of its data, runs
``assay run SPEC --json -q`` in a fresh interpreter, and asserts the exit code, the
JSON status and that the model beats the baseline on the primary metric (also as the
gate's ``beats-baseline`` rule). Whether the rest of the standard gate passes depends
on other rules (gap, leakage); a blocked run still has to beat its baseline.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from tests.conftest import EXAMPLES
from tests.tasks.conftest import cli_run

QUICK = ("train.tuning=none", "split.cv_folds=3")


def example(tmp_path: Path, name: str, sample: dict[str, Any]) -> Path:
    """A copy of ``examples/NAME/assay.toml`` with its data files replaced by samples."""
    directory = tmp_path / name
    (directory / "data").mkdir(parents=True)
    shutil.copy(EXAMPLES / name / "assay.toml", directory / "assay.toml")
    for file, rows in sample.items():
        frame = pd.read_csv(EXAMPLES / name / "data" / file)
        if rows and rows < len(frame):
            frame = frame.sample(rows, random_state=0).sort_index()  # time order kept where there is one
        frame.to_csv(directory / "data" / file, index=False)
    return directory / "assay.toml"


def evidence(home: Path, run_id: str) -> dict[str, Any]:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    return RunStore(Settings.resolve(home)).get_run(run_id).evidence


def beats_baseline(out: dict[str, Any], greater: bool = True) -> None:
    metric = out["metric"]
    model, base = out["metrics"]["test"][metric], out["baseline"]["test"][metric]
    assert model is not None and base is not None, out
    assert (model > base) if greater else (model < base), f"{metric}: model {model} vs baseline {base}"
    rule = next(r for r in out["verdict"]["rules"] if r["id"] == "beats-baseline")
    assert rule["outcome"] == "pass", rule


def finished(code: int, out: dict[str, Any], stderr: str) -> None:
    assert out["status"] in ("passed", "blocked"), out.get("error") or stderr[-2000:]
    assert code == (0 if out["status"] == "passed" else 1)
    assert out["model"]["artifact"].startswith("sha256:")


def test_multiclass_hpc_jobs(tmp_path: Path) -> None:
    spec = example(tmp_path, "hpc_jobs", {"hpc_jobs.csv": 1500})
    code, out, err = cli_run(spec, tmp_path / "home", *QUICK)
    finished(code, out, err)
    assert out["metric"] == "f1_macro" and out["model"]["family"] in ("hist_gradient_boosting", "logistic_regression")
    beats_baseline(out)
    assert out["metrics"]["test"]["f1_macro"] > 0.6
    assert set(out["metrics"]["test"]) >= {"accuracy", "balanced_accuracy", "roc_auc_ovr", "log_loss"}


def test_regression_diamonds(tmp_path: Path) -> None:
    spec = example(tmp_path, "diamonds", {"diamonds.csv": 1500})
    code, out, err = cli_run(spec, tmp_path / "home", *QUICK)
    finished(code, out, err)
    beats_baseline(out)
    assert out["metrics"]["test"]["r2"] > 0.9
    assert out["metrics"]["test"]["rmse"] < out["baseline"]["test"]["rmse"]


def test_text_fine_food_reviews(tmp_path: Path) -> None:
    spec = example(tmp_path, "fine_food_reviews", {"reviews.csv": 1200})
    code, out, err = cli_run(spec, tmp_path / "home", *QUICK, 'train.candidates=["tfidf_logistic"]')
    finished(code, out, err)
    assert out["model"]["family"] == "tfidf_logistic"
    beats_baseline(out)
    assert out["metrics"]["test"]["roc_auc"] > 0.75
    ev = evidence(tmp_path / "home", out["run_id"])
    assert ev["data"]["columns"]["text"] == "text" and ev["data"]["columns"]["product_id"] == "drop"


def test_binary_time_split_nyc_flights(tmp_path: Path) -> None:
    spec = example(tmp_path, "nyc_flights_2013", {"flights.csv": 4000})
    code, out, err = cli_run(spec, tmp_path / "home", *QUICK)
    finished(code, out, err)
    beats_baseline(out)
    assert out["metrics"]["test"]["expected_cost"] <= out["baseline"]["test"]["expected_cost"]
    ev = evidence(tmp_path / "home", out["run_id"])
    assert ev["data"]["columns"]["scheduled_departure"] == "drop"  # orders the split, not a feature
    split = ev["split"]
    assert split["strategy"] == "time" and split["time"]["train_end"] < split["time"]["test_start"]
    assert split["train"]["rows_sha256"].startswith("sha256:") and split["train"]["fingerprint"].startswith("sha256:")
    assert ev["business_cost"]["probabilities"].startswith("prior-corrected")


def test_ranking_travel_mode_choice(tmp_path: Path) -> None:
    spec = example(tmp_path, "travel_mode_choice", {"travel_mode_choice.csv": 0})
    code, out, err = cli_run(spec, tmp_path / "home", *QUICK)
    finished(code, out, err)
    assert out["metric"] == "ndcg@10"
    beats_baseline(out)
    assert out["baseline"]["name"] == "popularity"
    assert out["metrics"]["test"]["ndcg@10"] > out["baseline"]["random"]["test"]["ndcg@10"]
    assert set(out["metrics"]["test"]) >= {"ndcg@10", "ndcg@3", "map", "mrr"}
    ev = evidence(tmp_path / "home", out["run_id"])
    assert ev["split"]["strategy"] == "group" and ev["split"]["group"]["column"] == "query_id"
    assert ev["checks"]["leakage"]["entity_overlap"]["value"] == 0


def test_domain_shift_earnings_cps_to_psid(tmp_path: Path) -> None:
    spec = example(tmp_path, "earnings_cps_psid", {"source.csv": 4000, "target.csv": 0})
    code, out, err = cli_run(spec, tmp_path / "home", *QUICK)
    finished(code, out, err)
    beats_baseline(out)
    domain = evidence(tmp_path / "home", out["run_id"])["domain"]
    assert domain["adversarial_auc"] > 0.8  # CPS and PSID are far apart
    top = [f["feature"] for f in domain["shifted_features"]]
    assert len(top) == 5 and {"earnings_1974", "earnings_1975"} & set(top[:2])
    assert all(f["importance"] >= 0 for f in domain["shifted_features"][:2])
    target = domain["target"]
    assert target["rows"] == 2490 and target["fingerprint"].startswith("sha256:")
    assert set(target["metrics"]) == {"r2", "rmse", "mae"} and set(domain["source"]["metrics"]) == {"r2", "rmse", "mae"}
    assert target["metrics"]["r2"] > target["baseline"]["metrics"]["r2"]
    weighting = domain["weighting"]
    assert weighting["enabled"] and 0 < weighting["effective_sample_size"] < weighting["rows"]
    assert weighting["rows"] == 3200  # the training part: the holdout is left out of the weighting
    facts = evidence(tmp_path / "home", out["run_id"])["facts"]
    assert facts["sample_weight"]["rows"] == 4000  # a summary of the weights (aligned with rows), not 4,000 numbers
