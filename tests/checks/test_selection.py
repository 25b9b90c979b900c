"""Selection leakage a ledger can see: ten runs on one holdout, counted, bounded and blocked; seed
siblings; a reusable holdout (Thresholdout) whose budget is spent as the signed ledger says.

The runs are shared where tests look at the same thing: one home of ten runs on one holdout (the
count, the bound, the strict gate, and last the attack that hides a record of it), one home of
seed series, one home of reusable-holdout evaluations.
"""

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
        assert "reusable" not in holdout  # split.holdout = "plain", the default
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

    from assay.kit import bootstrap_replicates as replicates
    from assay.plugins.selection import bootstrap_interval
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


@pytest.fixture(scope="module")
def seed_series(adult_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One home: ``run --seeds 3`` (seeds 42, 43, 44), then three runs under another spec
    (``evaluate.bootstrap = 100``) that differ only in seed or budget."""
    home = tmp_path_factory.mktemp("seeds") / "home"
    res = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", "--seeds", "3", *FAST, home=home)
    assert res.returncode in (0, 1), res.stderr
    ids = []
    for seed, budget in ((1, 2), (2, 2), (3, 3)):
        run = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST, "--set", "evaluate.bootstrap=100",
                        "--set", f"split.seed={seed}", "--set", f"train.budget={budget}", home=home)
        assert run.returncode in (0, 1), run.stderr
        ids.append(run.json["run_id"])
    return {"home": home, "seeds": res.json, "series": ids}


def test_seed_siblings_are_ranked_and_a_lucky_seed_is_measured(seed_series: dict[str, Any]) -> None:
    """Runs that differ only in seed (or budget) are each other's siblings; other specs are not
    (the three ``--seeds`` runs before them differ in ``evaluate.bootstrap``)."""
    home, ids = seed_series["home"], seed_series["series"]
    other = [s["run_id"] for s in seed_series["seeds"]["seeds"]]  # another spec: not siblings
    third = _signed_evidence(home, ids[2])
    siblings = third["selection"]["siblings"]
    assert [r["run_id"] for r in siblings["runs"]] == ids[:2]
    assert [r["seed"] for r in siblings["runs"]] == [1, 2]
    values = [_signed_evidence(home, i)["metrics"]["test"]["roc_auc"] for i in ids]
    assert [r["value"] for r in siblings["runs"]] == pytest.approx(values[:2])
    assert siblings["rank"] == 1 + sum(v > values[2] for v in values[:2]) and siblings["of"] == 3
    sd = float(np.std(values[:2], ddof=1))
    assert siblings["z"] == pytest.approx((values[2] - np.mean(values[:2])) / sd)
    assert not set(other) & {r["run_id"] for r in siblings["runs"]}
    first = _signed_evidence(home, ids[0])["selection"]["siblings"]
    assert first["count"] == 0 and "z" not in first  # three earlier runs on the same data, none a sibling


def test_run_seeds_trains_under_each_seed_and_a_policy_can_require_it(adult_small: Path, seed_series: dict[str, Any],
                                                                        tmp_path: Path, assay_home: Path) -> None:
    home = seed_series["home"]
    out = seed_series["seeds"]
    assert [s["seed"] for s in out["seeds"]] == [42, 43, 44]
    ids = [s["run_id"] for s in out["seeds"]]
    assert [r["run_id"] for r in out["runs"]] == ids and len(set(ids)) == 3
    values = [_signed_evidence(home, i)["metrics"]["test"]["roc_auc"] for i in ids]
    assert [s["value"] for s in out["seeds"]] == pytest.approx(values)
    assert out["mean"] == pytest.approx(np.mean(values)) and out["sd"] == pytest.approx(np.std(values, ddof=1))
    last = _signed_evidence(home, ids[-1])["selection"]["siblings"]
    assert [r["seed"] for r in last["runs"]] == [42, 43] and last["of"] == 3
    policy = tmp_path / "robust.toml"
    policy.write_text('[[rules]]\nid = "seed-robustness"\npath = "selection.siblings.count"\nop = ">="\n'
                      'threshold = 2\n', encoding="utf-8")
    gated = [run_assay("gate", i, "--policy", str(policy), "--format", "json", home=home) for i in ids]
    assert [g.returncode for g in gated] == [1, 1, 0], [g.stderr for g in gated]
    # the lineage of the middle seed's model lists both other seeds, the later one too, and its rank
    lineage = run_assay("lineage", "adult-small@2", "--json", home=home)
    assert lineage.returncode == 0, lineage.stderr
    family = lineage.json["history"]["siblings"]
    assert [r["run_id"] for r in family["runs"]] == [ids[0], ids[2]] and family["seed"] == 43
    assert family["rank"] == 1 + sum(v > values[1] for v in (values[0], values[2])) and family["of"] == 3
    text = run_assay("lineage", "adult-small@2", home=home).stdout
    assert f"ranks {family['rank']} of 3" in text and ids[2] in text
    bad = run_assay("run", str(adult_small / "assay.toml"), "--seeds", "0", home=assay_home)
    assert bad.returncode == 2 and "--seeds" in bad.stderr and "Traceback" not in bad.stderr


def test_a_record_hidden_while_the_run_counted_cannot_lower_the_count_that_decides(
        adult_small: Path, ten_runs: tuple[Path, list[str]]) -> None:
    """Attack: with write access to the database only, alter an earlier run's split record while a new
    run counts the evaluations of its holdout, then restore it. The ledger verifies again, but every
    deciding command recomputes the count from the verified records and refuses the run.

    Last of the tests on the ten runs' home: it adds an eleventh run to it."""
    from assay.storage.settings import Settings
    from tests.audit.tamper_tools import Raw

    home, ids = ten_runs
    raw = Raw(Settings.resolve(home).db_url)
    raw.drop_triggers()
    [(seq, body)] = raw.rows("SELECT seq, body FROM ledger_records WHERE kind = 'split' AND run_id = ?", (ids[0],))
    fingerprint = json.loads(body)["payload"]["test"]["fingerprint"]
    raw.set(seq, body=bytes(body).replace(fingerprint.encode(), ("sha256:" + "0" * 64).encode()))
    third = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", *FAST, home=home)
    assert third.returncode in (0, 1), third.stderr
    raw.drop_triggers()  # the run put them back
    raw.set(seq, body=body)  # restored: the ledger is whole again
    assert run_assay("audit", "verify", home=home).returncode == 0
    lowered = _signed_evidence_unchecked(home, third.json["run_id"])["selection"]["holdout"]
    assert lowered["evaluations"] == 10  # what the run saw: the first of the ten hidden
    gate = run_assay("gate", third.json["run_id"], "--format", "json", home=home)
    assert gate.returncode == 1
    assert "selection.holdout.evaluations: evidence 10, ledger 11" in gate.stderr + gate.stdout
    honest = run_assay("gate", ids[1], "--format", "json", home=home)
    assert honest.returncode in (0, 1) and honest.json["verdict"]["decision"] in ("pass", "block")


# --------------------------------------------------------------------------- reusable holdout (Thresholdout)

#: a threshold and noise scale for which the decisions below are far from chance: on this holdout the
#: linear model's training AUC is ~0.03 above its holdout AUC, a random forest's ~0.09
REUSABLE = ("--set", 'split.holdout="reusable"', "--set", "split.holdout_budget=1",
            "--set", "split.holdout_threshold=0.06", "--set", "split.holdout_sigma=0.001")
FOREST = ("--set", 'train.candidates=["random_forest"]')


def _run(spec: Path, home: Path, *extra: str) -> str:
    res = run_assay("run", str(spec), "--json", "-q", *FAST, *REUSABLE, *extra, home=home)
    assert res.returncode in (0, 1), res.stderr
    return str(res.json["run_id"])


@pytest.fixture(scope="module")
def reusable_runs(adult_small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One reusable holdout with a budget of one detection: a linear model twice (it does not
    overfit), a random forest (it does: the one unit is spent), then the linear model again."""
    home = tmp_path_factory.mktemp("reusable") / "home"
    spec = adult_small / "assay.toml"
    return home, [_run(spec, home), _run(spec, home), _run(spec, home, *FOREST), _run(spec, home)]


def _reusable(home: Path, run_id: str) -> dict[str, Any]:
    return dict(_signed_evidence(home, run_id)["selection"]["holdout"]["reusable"])


def test_a_model_within_the_threshold_is_answered_with_its_training_metric(
        reusable_runs: tuple[Path, list[str]]) -> None:
    home, ids = reusable_runs
    for run_id in ids[:2]:
        evidence = _signed_evidence(home, run_id)
        r = evidence["selection"]["holdout"]["reusable"]
        assert r["detected"] is False and r["spent"] == 0 and r["remaining"] == 1 and r["budget"] == 1
        assert r["answer"] == evidence["metrics"]["train"]["roc_auc"] == r["train"]
        raw = evidence["selection"]["holdout"]["metric"]["value"]
        assert raw == pytest.approx(evidence["metrics"]["test"]["roc_auc"])
        assert abs(r["train"] - raw) < r["threshold"] + r["noise"]["threshold"] + r["noise"]["comparison"]
        assert (r["threshold"], r["sigma"], r["metric"], r["raw_withheld"]) == (0.06, 0.001, "roc_auc", False)
        assert evidence["checks"]["selection"]["holdout_budget"]["status"] == "pass"
    assert _reusable(home, ids[0])["seed"] != _reusable(home, ids[1])["seed"]


def test_an_overfit_model_spends_budget_and_is_answered_with_the_noisy_holdout(
        reusable_runs: tuple[Path, list[str]]) -> None:
    """The noise is recomputed from the seed the evidence records (the documented streams)."""
    home, ids = reusable_runs
    evidence = _signed_evidence(home, ids[2])
    r = evidence["selection"]["holdout"]["reusable"]
    raw = evidence["selection"]["holdout"]["metric"]["value"]
    assert r["train"] - raw > 0.06  # the forest fits its training rows far better
    assert r["detected"] is True and r["spent_before"] == 0 and r["spent"] == 1 and r["remaining"] == 0
    xi = np.random.default_rng([r["seed"], 3]).laplace(0.0, 0.001)
    assert r["noise"]["answer"] == pytest.approx(xi) and r["answer"] == pytest.approx(raw + xi)
    assert r["noise"]["comparison"] == pytest.approx(np.random.default_rng([r["seed"], 2]).laplace(0.0, 0.004))
    # the threshold's noise was drawn when the holdout's first reusable evaluation opened the period
    assert r["threshold_seed"] == _reusable(home, ids[0])["seed"]
    assert r["noise"]["threshold"] == pytest.approx(_reusable(home, ids[0])["noise"]["threshold"])
    check = evidence["checks"]["selection"]["holdout_budget"]
    assert check["status"] == "warn" and "one unit of budget spent (0 of 1 left)" in check["message"]
    gate = run_assay("gate", ids[2], "--policy", "assay:strict", "--format", "json", home=home)
    assert gate.returncode in (0, 1) and _rule(gate.json["verdict"], "holdout-budget")["outcome"] == "pass"


def test_an_exhausted_budget_blocks_under_strict_and_warns_under_standard(
        reusable_runs: tuple[Path, list[str]]) -> None:
    home, ids = reusable_runs
    evidence = _signed_evidence(home, ids[3])
    r = evidence["selection"]["holdout"]["reusable"]
    assert r["answer"] is None and r["detected"] is False and r["spent"] == 1 and r["remaining"] == 0
    assert r["reusable_earlier"] == ids[:3] and r["plain_earlier"] == 0
    check = evidence["checks"]["selection"]["holdout_budget"]
    assert check["status"] == "fail" and "budget of 1 overfitting detections is spent" in check["message"]
    strict = run_assay("gate", ids[3], "--policy", "assay:strict", "--format", "json", home=home)
    assert strict.returncode == 1 and _rule(strict.json["verdict"], "holdout-budget")["outcome"] == "block"
    standard = run_assay("gate", ids[3], "--policy", "assay:standard", "--format", "json", home=home)
    assert _rule(standard.json["verdict"], "holdout-budget")["outcome"] == "warn"
    plain = run_assay("gate", ids[0], "--policy", "assay:strict", "--format", "json", home=home)
    assert _rule(plain.json["verdict"], "holdout-budget")["outcome"] == "pass"


def test_an_edited_table_or_a_larger_budget_in_the_spec_refunds_nothing(
        adult_small: Path, reusable_runs: tuple[Path, list[str]]) -> None:
    """Attack: rewrite the runs table so that the forest's evaluation spent nothing, and ask for a
    budget of 5 in the next spec. The budget is the signed ledger's: still spent, still blocked."""
    from assay.storage.settings import Settings
    from tests.audit.tamper_tools import Raw

    home, ids = reusable_runs
    raw = Raw(Settings.resolve(home).db_url)
    [(stored,)] = raw.rows("SELECT evidence_json FROM runs WHERE run_id = ?", (ids[2],))
    edited = json.loads(stored)
    edited["selection"]["holdout"]["reusable"].update(detected=False, spent=0, remaining=1)
    raw.exec("UPDATE runs SET evidence_json = ? WHERE run_id = ?", (json.dumps(edited), ids[2]))
    run_id = _run(adult_small / "assay.toml", home, "--set", "split.holdout_budget=5")
    r = _reusable(home, run_id)
    assert (r["budget"], r["asked"], r["spent_before"], r["answer"]) == (1, 5, 1, None)
    gate = run_assay("gate", run_id, "--policy", "assay:strict", "--format", "json", home=home)
    assert gate.returncode == 1 and _rule(gate.json["verdict"], "holdout-budget")["outcome"] == "block"
    # the edited row itself is caught when anything decides from that run
    tampered = run_assay("gate", ids[2], "--format", "json", home=home)
    assert tampered.returncode == 1, tampered.stdout


def test_a_detection_hidden_while_the_run_read_the_ledger_cannot_refund_budget(
        adult_small: Path, reusable_runs: tuple[Path, list[str]]) -> None:
    """Attack: alter the forest's signed evidence record (detection erased) while a new run reads the
    ledger, then restore it. The run saw budget left, but every deciding command recomputes it."""
    from assay.storage.settings import Settings
    from tests.audit.tamper_tools import Raw

    home, ids = reusable_runs
    raw = Raw(Settings.resolve(home).db_url)
    raw.drop_triggers()
    [(seq, body)] = raw.rows("SELECT seq, body FROM ledger_records WHERE kind = 'evidence' AND run_id = ?", (ids[2],))
    at = bytes(body).index(b'"detected":true', bytes(body).index(b'"reusable":'))
    raw.set(seq, body=bytes(body)[:at] + b'"detected":false' + bytes(body)[at + len(b'"detected":true'):])
    run_id = _run(adult_small / "assay.toml", home)
    raw.drop_triggers()
    raw.set(seq, body=body)
    assert run_assay("audit", "verify", home=home).returncode == 0
    seen = _signed_evidence_unchecked(home, run_id)["selection"]["holdout"]["reusable"]
    assert seen["spent_before"] == 0 and seen["answer"] is not None  # what the run saw
    gate = run_assay("gate", run_id, "--format", "json", home=home)
    assert gate.returncode == 1
    assert "selection.holdout.reusable.spent_before: evidence 0, ledger 1" in gate.stderr + gate.stdout


def test_a_bad_holdout_mode_is_refused_before_anything_is_recorded(adult_small: Path, assay_home: Path) -> None:
    res = run_assay("run", str(adult_small / "assay.toml"), "--set", 'split.holdout="resuable"', home=assay_home)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "split.holdout" in res.stderr and "'plain' or 'reusable'" in res.stderr and "resuable" in res.stderr
    assert not (assay_home / "assay.db").exists()  # the ledger is untouched


def _signed_evidence_unchecked(home: Path, run_id: str) -> dict[str, Any]:
    from assay.audit.canonical import decode_special
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

    return decode_special(SignedLedger.open(Settings.resolve(home)).last(run_id, "evidence").payload)  # type: ignore[union-attr]
