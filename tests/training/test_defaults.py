"""Training defaults scaled to the data: the rules, the spec's "not given", and what a run records.

The rules are tested on :func:`scaled_defaults` directly (no fit needed to know what 569 or
200,000 rows get); two CLI runs on scikit-learn's bundled breast-cancer table show that a run
uses and records them, and that a budget the spec gives wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.errors import BadInput
from assay.kernel.spec import TrainSpec, load_spec
from assay.plugins.training import BUDGETS, SMALL_ROWS, TRAIN_SCORE_ROWS, scaled_defaults
from tests.training.conftest import assay

AUTO = TrainSpec()


def values(rows: int, counts: tuple[int, ...] = (), train: TrainSpec = AUTO, task: str = "binary") -> dict[str, Any]:
    return {name: s.value for name, s in scaled_defaults(train, task, rows, counts).items()}


def test_a_small_table_gets_each_familys_defaults_in_one_process_on_one_thread() -> None:
    # breast cancer: 455 training rows, 170 malignant / 285 benign
    chosen = scaled_defaults(AUTO, "binary", 455, (285, 170))
    assert {k: s.value for k, s in chosen.items()} == {"budget": 1, "n_jobs": 1, "threads": 1,
                                                        "class_weight": "none", "train_scores": True}
    assert not any(s.given for s in chosen.values())
    assert "455 training rows" in chosen["budget"].reason and "defaults" in chosen["budget"].reason
    assert chosen["budget"].as_json() == {"value": 1, "source": "auto", "reason": chosen["budget"].reason}


def test_a_large_table_gets_a_short_search_on_every_core_without_training_scores() -> None:
    chosen = values(160_000, (112_000, 48_000))
    assert chosen == {"budget": 3, "n_jobs": -1, "threads": None, "class_weight": "none", "train_scores": False}


@pytest.mark.parametrize(("rows", "budget"), [
    (SMALL_ROWS - 1, 1), (SMALL_ROWS, 3), (9_999, 3), (10_000, 9), (39_073, 9), (99_999, 9), (100_000, 3),
    (10_000_000, 3),
])
def test_the_budget_follows_the_training_rows(rows: int, budget: int) -> None:
    assert values(rows)["budget"] == budget


def test_budgets_are_powers_of_three_so_halving_wastes_no_round() -> None:
    assert {b for _, b in BUDGETS} <= {1, 3, 9, 27}


def test_train_scores_stop_above_their_row_bound() -> None:
    assert values(TRAIN_SCORE_ROWS)["train_scores"] is True
    assert values(TRAIN_SCORE_ROWS + 1)["train_scores"] is False


@pytest.mark.parametrize(("counts", "weight"), [
    ((900, 100), "balanced"), ((760, 240), "balanced"), ((2378, 822), "balanced"), ((700, 300), "none"),
    ((500, 500), "none"),
    ((500, 400, 40), "balanced"), ((300, 300, 290), "none"),
])
def test_classes_are_balanced_only_when_one_is_rare(counts: tuple[int, ...], weight: str) -> None:
    chosen = scaled_defaults(AUTO, "binary" if len(counts) == 2 else "multiclass", sum(counts), counts)
    assert chosen["class_weight"].value == weight
    assert "rarest class" in chosen["class_weight"].reason


def test_regression_has_no_classes_to_weight() -> None:
    assert values(5_000, (), task="regression")["class_weight"] == "none"


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(min_value=2, max_value=10_000_000), budget=st.integers(min_value=1, max_value=10_000),
       n_jobs=st.integers(min_value=-1, max_value=64), weight=st.sampled_from(["balanced", "none"]),
       rare=st.booleans())
def test_a_value_the_spec_gives_always_wins(rows: int, budget: int, n_jobs: int, weight: str, rare: bool) -> None:
    train = TrainSpec(budget=budget, n_jobs=n_jobs, class_weight=weight)
    counts = (rows, max(1, rows // 10)) if rare else (rows, rows)
    chosen = scaled_defaults(train, "binary", rows, counts)
    assert chosen["budget"].value == budget and chosen["budget"].given
    assert chosen["n_jobs"].value == (n_jobs or 1) and chosen["n_jobs"].given
    assert chosen["class_weight"].value == weight and chosen["class_weight"].given
    assert chosen["budget"].as_json()["source"] == "spec"


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(min_value=2, max_value=10_000_000))
def test_left_out_values_are_always_usable(rows: int) -> None:
    chosen = values(rows, (rows, rows))
    assert chosen["budget"] in {b for _, b in BUDGETS} and chosen["n_jobs"] in (1, -1)
    assert chosen["threads"] in (1, None) and (chosen["threads"] == 1) == (rows < SMALL_ROWS)


SPEC = """\
[project]
name = "cancer"

[data]
source = "cancer.csv"
target = "target"
task = "binary"

[train]
budget = 7
n_jobs = 2
class_weight = "balanced"
"""


def test_the_spec_tells_not_given_from_given_and_auto_resets_a_given_value(tmp_path: Path) -> None:
    (tmp_path / "assay.toml").write_text(SPEC, encoding="utf-8")
    given_spec, _ = load_spec(tmp_path / "assay.toml")
    assert (given_spec.train.budget, given_spec.train.n_jobs, given_spec.train.class_weight) == (7, 2, "balanced")
    reset, _ = load_spec(tmp_path / "assay.toml", ["train.budget=auto", "train.n_jobs=auto", "train.class_weight=auto"])
    assert (reset.train.budget, reset.train.n_jobs, reset.train.class_weight) == (None, None, None)
    assert TrainSpec().budget is None and TrainSpec().model_dump()["budget"] is None
    with pytest.raises(BadInput, match=r"train\.budget"):
        load_spec(tmp_path / "assay.toml", ["train.budget=0"])


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's bundled breast-cancer table (569 rows × 30) with a spec that leaves [train] out."""
    from sklearn.datasets import load_breast_cancer

    directory = tmp_path_factory.mktemp("cancer")
    load_breast_cancer(as_frame=True).frame.to_csv(directory / "cancer.csv", index=False)
    (directory / "assay.toml").write_text(SPEC.split("[train]")[0], encoding="utf-8")
    return directory


def run_search(directory: Path, home: Path, *sets: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``assay run`` through the CLI; its JSON and the evidence's ``model`` section."""
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    args = [a for s in sets for a in ("--set", s)]
    result = assay("run", str(directory / "assay.toml"), "--json", "-q", *args, home=home)
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    evidence = RunStore(Settings.resolve(home)).get_run(out["run_id"]).evidence or {}
    return out, evidence["model"]


def test_a_default_run_records_the_settings_it_used_and_why(cancer: Path, tmp_path: Path) -> None:
    out, model = run_search(cancer, tmp_path / "home")
    assert out["status"] in ("passed", "blocked")
    used = model["search"]["settings"]
    assert used["budget"]["value"] == 1 and used["budget"]["source"] == "auto"
    assert "455 training rows" in used["budget"]["reason"]
    assert used["n_jobs"] == {"value": 1, "source": "auto", "reason": used["n_jobs"]["reason"]}
    assert used["class_weight"]["value"] == "none"
    assert model["search"]["budget"] == 1 and model["search"]["tuner"] == "halving_random"
    assert {c["family"] for c in model["candidates"]} == {"logistic_regression", "hist_gradient_boosting",
                                                          "random_forest"}
    assert all(c["n_candidates"] == 1 and c["params"] == {} for c in model["candidates"])  # each family's defaults


def test_a_budget_the_spec_gives_wins_over_the_scaled_default(cancer: Path, tmp_path: Path) -> None:
    _, model = run_search(cancer, tmp_path / "home", "train.candidates=['logistic_regression']", "train.budget=3",
                          "train.class_weight='balanced'")
    used = model["search"]["settings"]
    assert used["budget"] == {"value": 3, "source": "spec", "reason": "train.budget"}
    assert used["class_weight"]["source"] == "spec" and used["n_jobs"]["source"] == "auto"
    assert model["search"]["budget"] == 3 and model["candidates"][0]["n_candidates"] == 3
