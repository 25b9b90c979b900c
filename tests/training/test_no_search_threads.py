"""A run without a search fits its folds in one process on the libraries' threads, as plain CV does.

Worker processes pay off over a search; for k folds of one setting their start-up (each imports
numpy, pandas and scikit-learn) and the uneven last round cost more than they save.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assay.kernel.manager import make_plugin_manager
from assay.kernel.runner import Runner
from assay.kernel.spec import TrainSpec, load_spec
from assay.plugins.training import SMALL_ROWS, scaled_defaults
from assay.storage.modelio import load_model
from assay.storage.settings import Settings
from assay.storage.store import ArtifactStore
from tests.checks import datasets as ds


@pytest.mark.parametrize("train", [TrainSpec(tuning="none"), TrainSpec(budget=1)])
def test_no_search_on_large_data_runs_in_one_process_on_every_thread(train: TrainSpec) -> None:
    chosen = scaled_defaults(train, "binary", 160_000, (112_000, 48_000))
    assert (chosen["n_jobs"].value, chosen["threads"].value, chosen["n_jobs"].given) == (1, None, False)
    assert "no search" in chosen["n_jobs"].reason


def test_a_search_still_gets_a_worker_per_core_and_a_given_n_jobs_wins() -> None:
    assert scaled_defaults(TrainSpec(), "binary", 160_000, (112_000, 48_000))["n_jobs"].value == -1
    given = scaled_defaults(TrainSpec(tuning="none", n_jobs=2), "binary", 160_000, (112_000, 48_000))["n_jobs"]
    assert (given.value, given.given) == (2, True)
    small = scaled_defaults(TrainSpec(tuning="none"), "binary", SMALL_ROWS - 1, (1000, 999))
    assert (small["n_jobs"].value, small["threads"].value) == (1, 1)


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ds.write(tmp_path_factory.mktemp("no-search"), ds.adult_fair(3000), ds.adult_spec("no-search"))


def _forest(spec_path: Path, home: Path, *sets: str) -> tuple[dict[str, Any], Any]:
    spec, _ = load_spec(spec_path, ["train.tuning=none", 'train.candidates=["random_forest"]', *sets])
    settings = Settings.resolve(home)
    result = Runner(make_plugin_manager(), settings, spec, spec_path).execute()
    assert result.status in ("passed", "blocked"), result.error
    model = result.evidence["model"]
    pipeline = load_model(ArtifactStore(settings.home), model["artifact"])
    return model["search"]["settings"]["n_jobs"], pipeline.named_steps["model"]


def test_a_forest_fitted_in_one_process_grows_its_trees_on_every_core(spec_path: Path, tmp_path: Path) -> None:
    used, forest = _forest(spec_path, tmp_path / "home", "train.n_jobs=auto")  # the test spec gives 1
    assert used["value"] == 1 and used["source"] == "auto"
    assert forest.n_jobs == -1  # the trainer's n_jobs=1 is for worker processes; here there are none


def test_a_given_n_jobs_leaves_the_forest_as_its_trainer_built_it(spec_path: Path, tmp_path: Path) -> None:
    used, forest = _forest(spec_path, tmp_path / "home", "train.n_jobs=1")
    assert used == {"value": 1, "source": "spec", "reason": "train.n_jobs"}
    assert forest.n_jobs == 1
