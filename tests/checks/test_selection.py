"""Selection leakage a ledger can see: ten runs on one holdout, counted, bounded and blocked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_assay

FAST = ("--set", "train.tuning=none", "--set", 'train.candidates=["logistic_regression"]',
        "--set", "gate.policy=assay:strict")


def _signed_evidence(home: Path, run_id: str) -> dict[str, Any]:
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    evidence, _ = SignedLedger.open(Settings.resolve(home)).evidence(run_id)
    return evidence


def _rule(verdict: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in verdict["rules"] if r["id"] == rule_id)


@pytest.fixture(scope="module")
def ten_runs(adult_small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Ten runs on the same holdout of real Adult data; two configurations (2 or 3 CV folds)."""
    home = tmp_path_factory.mktemp("selection") / "home"
    ids = []
    for i in range(10):
        res = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST,
                        "--set", f"split.cv_folds={2 + i % 2}", home=home)
        assert res.returncode in (0, 1), res.stderr
        ids.append(res.json["run_id"])
    return home, ids


def test_each_run_counts_the_earlier_evaluations_of_its_holdout(ten_runs: tuple[Path, list[str]]) -> None:
    home, ids = ten_runs
    for k, run_id in enumerate(ids, start=1):
        holdout = _signed_evidence(home, run_id)["selection"]["holdout"]
        assert holdout["evaluations"] == k
        assert [e["run_id"] for e in holdout["earlier"]] == ids[: k - 1]
        assert holdout["configurations"] == min(k, 2)
        seqs = [e["seq"] for e in holdout["earlier"]]
        assert seqs == sorted(seqs)
    last = _signed_evidence(home, ids[-1])["checks"]["selection"]["holdout_reuse"]
    assert last["status"] == "warn" and last["value"] == 10
    assert "evaluated 10 times (2 distinct configurations)" in last["message"]
    assert ids[-2] in last["message"]


def test_the_strict_policy_blocks_the_tenth_evaluation_and_names_why(ten_runs: tuple[Path, list[str]]) -> None:
    home, ids = ten_runs
    ninth = run_assay("gate", ids[-2], "--format", "json", home=home)
    tenth = run_assay("gate", ids[-1], "--format", "json", home=home)
    assert ninth.returncode in (0, 1) and tenth.returncode == 1, tenth.stderr
    assert _rule(ninth.json["verdict"], "holdout-reuse")["outcome"] == "pass"
    rule = _rule(tenth.json["verdict"], "holdout-reuse")
    assert rule["outcome"] == "block"
    assert "10" in rule["reason"]
    text = run_assay("gate", ids[-1], "--only", "all", home=home)
    assert "holdout-reuse" in text.stdout


def test_the_adjusted_bound_is_below_the_raw_one(ten_runs: tuple[Path, list[str]]) -> None:
    home, ids = ten_runs
    first = _signed_evidence(home, ids[0])["selection"]["holdout"]["metric"]
    tenth = _signed_evidence(home, ids[-1])["selection"]["holdout"]["metric"]
    assert first["ci_adjusted"] == first["ci"]  # K = 1: nothing to adjust
    assert tenth["level_adjusted"] == pytest.approx(0.995)
    assert tenth["lower_adjusted"] < tenth["ci"][0] < tenth["value"]
    assert tenth["ci_adjusted"][1] > tenth["ci"][1]
    gain = tenth["improvement"]
    assert gain["over"] == "dummy" and gain["value"] > 0
    assert gain["lower_adjusted"] < gain["ci"][0] < gain["value"]
    assert _rule(run_assay("gate", ids[-1], "--format", "json", home=home).json["verdict"],
                 "beats-baseline-adjusted")["outcome"] == "pass"


def test_the_adjusted_interval_matches_an_independent_computation() -> None:
    """The documented resampling scheme, recomputed with scikit-learn's ROC AUC on real data."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from assay.plugins.selection import bootstrap_interval, replicates
    from tests.conftest import EXAMPLES

    frame = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv", nrows=3000)
    X = frame[["age", "education_num", "hours_per_week", "capital_gain"]].to_numpy(dtype=float)
    y = frame["income"].to_numpy()
    model = LogisticRegression(max_iter=500).fit(X[:2000], y[:2000])
    proba, classes = model.predict_proba(X[2000:]), model.classes_
    held = y[2000:]
    k, resamples, seed = 7, 400, 3
    ours = bootstrap_interval(replicates("roc_auc", held, model.predict(X[2000:]), proba, classes, resamples, seed),
                              1 - 0.05 / k)
    rows = np.random.default_rng(seed).integers(0, len(held), size=(resamples, len(held)))
    theirs = np.quantile([roc_auc_score(held[r] == classes[1], proba[r, 1]) for r in rows],
                         [0.025 / k, 1 - 0.025 / k])
    assert ours == pytest.approx(list(theirs), abs=1e-12)
    raw = bootstrap_interval(replicates("roc_auc", held, model.predict(X[2000:]), proba, classes, resamples, seed),
                             0.95)
    assert ours is not None and raw is not None and ours[0] < raw[0] and ours[1] > raw[1]


def test_seed_siblings_are_ranked_and_a_lucky_seed_is_measured(adult_small: Path, assay_home: Path) -> None:
    """Runs that differ only in seed (or budget) are each other's siblings; other specs are not."""
    ids = []
    for seed, budget in ((1, 2), (2, 2), (3, 3)):
        res = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST,
                        "--set", f"split.seed={seed}", "--set", f"train.budget={budget}", home=assay_home)
        assert res.returncode in (0, 1), res.stderr
        ids.append(res.json["run_id"])
    other = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST, "--set", "split.seed=4",
                      "--set", "evaluate.bootstrap=100", home=assay_home)  # another spec: not a sibling
    assert other.returncode in (0, 1), other.stderr
    third = _signed_evidence(assay_home, ids[2])
    siblings = third["selection"]["siblings"]
    assert [r["run_id"] for r in siblings["runs"]] == ids[:2]
    assert [r["seed"] for r in siblings["runs"]] == [1, 2]
    values = [_signed_evidence(assay_home, i)["metrics"]["test"]["roc_auc"] for i in ids]
    assert [r["value"] for r in siblings["runs"]] == pytest.approx(values[:2])
    assert siblings["rank"] == 1 + sum(v > values[2] for v in values[:2]) and siblings["of"] == 3
    sd = float(np.std(values[:2], ddof=1))
    assert siblings["z"] == pytest.approx((values[2] - np.mean(values[:2])) / sd)
    assert _signed_evidence(assay_home, other.json["run_id"])["selection"]["siblings"]["count"] == 0
    first = _signed_evidence(assay_home, ids[0])["selection"]["siblings"]
    assert first["count"] == 0 and "z" not in first


def test_run_seeds_trains_under_each_seed_and_a_policy_can_require_it(adult_small: Path, assay_home: Path,
                                                                        tmp_path: Path) -> None:
    res = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", "--seeds", "3", *FAST, home=assay_home)
    assert res.returncode in (0, 1), res.stderr
    out = res.json
    assert [s["seed"] for s in out["seeds"]] == [42, 43, 44]
    ids = [s["run_id"] for s in out["seeds"]]
    assert [r["run_id"] for r in out["runs"]] == ids and len(set(ids)) == 3
    values = [_signed_evidence(assay_home, i)["metrics"]["test"]["roc_auc"] for i in ids]
    assert [s["value"] for s in out["seeds"]] == pytest.approx(values)
    assert out["mean"] == pytest.approx(np.mean(values)) and out["sd"] == pytest.approx(np.std(values, ddof=1))
    last = _signed_evidence(assay_home, ids[-1])["selection"]["siblings"]
    assert [r["seed"] for r in last["runs"]] == [42, 43] and last["of"] == 3
    policy = tmp_path / "robust.toml"
    policy.write_text('[[rules]]\nid = "seed-robustness"\npath = "selection.siblings.count"\nop = ">="\n'
                      'threshold = 2\n', encoding="utf-8")
    gated = [run_assay("gate", i, "--policy", str(policy), "--format", "json", home=assay_home) for i in ids]
    assert [g.returncode for g in gated] == [1, 1, 0], [g.stderr for g in gated]
    # the lineage of the middle seed's model lists both other seeds, the later one too, and its rank
    lineage = run_assay("lineage", "adult-small@2", "--json", home=assay_home)
    assert lineage.returncode == 0, lineage.stderr
    family = lineage.json["history"]["siblings"]
    assert [r["run_id"] for r in family["runs"]] == [ids[0], ids[2]] and family["seed"] == 43
    assert family["rank"] == 1 + sum(v > values[1] for v in (values[0], values[2])) and family["of"] == 3
    text = run_assay("lineage", "adult-small@2", home=assay_home).stdout
    assert f"ranks {family['rank']} of 3" in text and ids[2] in text
    bad = run_assay("run", str(adult_small / "assay.toml"), "--seeds", "0", home=assay_home)
    assert bad.returncode == 2 and "--seeds" in bad.stderr and "Traceback" not in bad.stderr


def test_a_record_hidden_while_the_run_counted_cannot_lower_the_count_that_decides(adult_small: Path,
                                                                                   assay_home: Path) -> None:
    """Attack: with write access to the database only, alter an earlier run's split record while a new
    run counts the evaluations of its holdout, then restore it. The ledger verifies again, but every
    deciding command recomputes the count from the verified records and refuses the run."""
    from assay.storage.settings import Settings
    from tests.audit.tamper_tools import Raw

    ids = []
    for _ in range(2):
        res = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST, home=assay_home)
        assert res.returncode in (0, 1), res.stderr
        ids.append(res.json["run_id"])
    raw = Raw(Settings.resolve(assay_home).db_url)
    raw.drop_triggers()
    [(seq, body)] = raw.rows("SELECT seq, body FROM ledger_records WHERE kind = 'split' AND run_id = ?", (ids[0],))
    fingerprint = json.loads(body)["payload"]["test"]["fingerprint"]
    raw.set(seq, body=bytes(body).replace(fingerprint.encode(), ("sha256:" + "0" * 64).encode()))
    third = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST, home=assay_home)
    assert third.returncode in (0, 1), third.stderr
    raw.drop_triggers()  # the run put them back
    raw.set(seq, body=body)  # restored: the ledger is whole again
    assert run_assay("audit", "verify", home=assay_home).returncode == 0
    lowered = _signed_evidence_unchecked(assay_home, third.json["run_id"])["selection"]["holdout"]
    assert lowered["evaluations"] == 2  # what the run saw
    gate = run_assay("gate", third.json["run_id"], "--format", "json", home=assay_home)
    assert gate.returncode == 1
    assert "selection.holdout.evaluations: evidence 2, ledger 3" in gate.stderr + gate.stdout
    honest = run_assay("gate", ids[1], "--format", "json", home=assay_home)
    assert honest.returncode in (0, 1) and honest.json["verdict"]["decision"] in ("pass", "block")


def _signed_evidence_unchecked(home: Path, run_id: str) -> dict[str, Any]:
    from assay.audit.canonical import decode_special
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    return decode_special(SignedLedger.open(Settings.resolve(home)).last(run_id, "evidence").payload)  # type: ignore[union-attr]
