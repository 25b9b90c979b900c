"""Training shows its work: ``stage_progress`` counts CV fits through ``run.progress``, the search results are
the same as an unwatched search's, and the terminal reporter draws a bar on a terminal and plain lines elsewhere."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from assay.commands.terminal import TerminalReporter
from assay.kernel.hookspecs import hookimpl
from assay.kernel.manager import make_plugin_manager
from assay.kernel.runner import Runner
from assay.kernel.spec import load_spec
from assay.storage.settings import Settings
from tests.checks import datasets as ds


class Recorder:
    """A third-party reporter: what a progress display would receive."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, str]] = []

    @hookimpl
    def stage_progress(self, run: Any, stage: str, done: int, total: int, label: str) -> None:
        self.events.append((stage, done, total, label))


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ds.write(tmp_path_factory.mktemp("progress"), ds.adult_fair(1200), ds.adult_spec("progress"))


def _run(spec_path: Path, home: Path, *overrides: str, plugins: tuple[tuple[str, object], ...] = ()) -> Any:
    spec, _ = load_spec(spec_path, list(overrides))
    return Runner(make_plugin_manager(extra_plugins=plugins), Settings.resolve(home), spec, spec_path).execute()


def test_training_reports_fits_done_of_total_per_family_and_halving_iteration(spec_path: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    result = _run(spec_path, tmp_path / "home", 'train.candidates=["logistic_regression", "random_forest"]',
                  "train.tuning=halving_random", "train.budget=6", plugins=(("recorder", recorder),))
    assert result.status in ("passed", "blocked"), result.error
    events = [e for e in recorder.events if e[0] == "train"]
    assert events, recorder.events
    done = [d for _, d, _, _ in events]
    assert done == sorted(done), "progress never goes back"
    assert all(d <= t for _, d, t, _ in events)
    assert events[-1][1] == events[-1][2], "the stage ends at done == total"
    labels = [label for *_, label in events]
    for family in ("logistic_regression", "random_forest"):
        assert any(label.startswith(f"{family}: iteration 1 of ") for label in labels), labels
        assert any(label.startswith(family) and "candidates × 3 folds" in label for label in labels)
    assert any("iteration 2 of" in label for label in labels), "halving reports each iteration"
    # the fits counted are the fits the searches made (plus one refit per family)
    fits = sum(c["n_candidates"] for c in result.evidence["model"]["candidates"])
    assert events[-1][2] >= fits * 3


def test_the_none_tuner_counts_its_folds_and_the_refit(spec_path: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    result = _run(spec_path, tmp_path / "home", "train.tuning=none", plugins=(("recorder", recorder),))
    assert result.status in ("passed", "blocked"), result.error
    train = [e for e in recorder.events if e[0] == "train"]
    assert train[-1][1:3] == (4, 4)  # one candidate × 3 folds, and the refit


class Opaque:
    """A plugin tuner's search that is no scikit-learn search: it only has fit and the results."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def fit(self, X: Any, y: Any, **params: Any) -> Opaque:
        self.inner.fit(X, y, **params)
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class OpaqueTuner:
    @hookimpl
    def register_tuners(self, register: Any) -> None:
        from assay.kernel.types import Tuner
        from assay.plugins.tuners import BUILTIN_TUNERS

        none = next(t for t in BUILTIN_TUNERS if t.name == "none")
        register(Tuner("opaque", lambda *args: Opaque(none.make_search(*args))))


def test_a_search_the_core_cannot_look_into_counts_as_one_unit(spec_path: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    result = _run(spec_path, tmp_path / "home", "train.tuning=opaque",
                  plugins=(("recorder", recorder), ("opaque", OpaqueTuner())))
    assert result.status in ("passed", "blocked"), result.error
    train = [e for e in recorder.events if e[0] == "train"]
    assert train[0][1:] == (0, 1, "logistic_regression: searching")
    assert train[-1][1:3] == (1, 1)


@pytest.mark.parametrize("tuning", ["random", "halving_random", "grid"])
def test_watched_searches_find_what_unwatched_ones_find(tuning: str) -> None:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from assay.kernel.types import SearchRequest, Trainer
    from assay.kit import TrainProgress
    from assay.plugins.tuners import BUILTIN_TUNERS

    X, y = make_classification(n_samples=600, n_features=8, random_state=0)
    trainer = Trainer("lr", frozenset({"binary"}), lambda task, run: LogisticRegression(max_iter=500),
                      grid={"C": [0.01, 0.1, 1.0, 10.0]},
                      distributions={"C": [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]})
    tuner = next(t for t in BUILTIN_TUNERS if t.name == tuning)

    def search() -> Any:
        from sklearn.pipeline import Pipeline

        cv = StratifiedKFold(3, shuffle=True, random_state=0)
        return tuner.make_search(SearchRequest(Pipeline([("model", LogisticRegression(max_iter=500))]), trainer, cv,
                                               "roc_auc", budget=8, seed=7, n_jobs=1))

    class FakeRun:
        def __init__(self) -> None:
            self.reports: list[tuple[int, int, str]] = []

        def progress(self, stage: str, done: int, total: int, label: str = "") -> None:
            self.reports.append((done, total, label))

    plain = search().fit(X, y)
    watched_search = search()
    run = FakeRun()
    progress = TrainProgress(run, [("lr", watched_search)], 3)  # type: ignore[arg-type]
    with progress.family("lr", watched_search):
        watched_search.fit(X, y)
    assert "_run_search" not in vars(watched_search), "the search is left as it was"
    assert watched_search.best_params_ == plain.best_params_
    assert np.allclose(watched_search.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])
    assert list(watched_search.cv_results_["params"]) == list(plain.cv_results_["params"])
    assert len(run.reports) > 3 and run.reports[-1][0] == run.reports[-1][1]


def _reported(spec_path: Path, home: Path, console: Console) -> None:
    result = _run(spec_path, home, "train.tuning=random", "train.budget=3",
                  plugins=(("terminal", TerminalReporter(console)),))
    assert result.status in ("passed", "blocked"), result.error


def test_on_a_terminal_the_reporter_draws_a_progress_bar_with_the_family_and_times(spec_path: Path,
                                                                                     tmp_path: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    _reported(spec_path, tmp_path / "home", console)
    screen = buffer.getvalue()
    assert "fits" in screen and "logistic_regression: " in screen and "ETA" in screen
    assert "━" in screen, "a bar, not only a spinner"
    assert "✓ train" in screen


def test_off_a_terminal_the_reporter_prints_one_line_per_finished_stage(spec_path: Path, tmp_path: Path) -> None:
    buffer = io.StringIO()
    _reported(spec_path, tmp_path / "home", Console(file=buffer, force_terminal=False, width=80))
    lines = buffer.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["✓", s] for s in ("data", "split", "train", "evaluate", "gate")]
    assert max(len(line) for line in lines) > 80, "a long fingerprint stays on its line, whole"


def test_a_watched_search_still_runs_its_fits_in_worker_processes() -> None:
    """scikit-learn hands the search to each worker with its fits: the progress callback must not go along."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    from assay.kit import TrainProgress

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise TypeError("the run must stay in this process")

        def progress(self, stage: str, done: int, total: int, label: str = "") -> None:
            self.last = (done, total)

    X, y = make_classification(n_samples=300, random_state=0)
    search = GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2)
    run = Unpicklable()
    progress = TrainProgress(run, [("lr", search)], 3)  # type: ignore[arg-type]
    with progress.family("lr", search):
        search.fit(X, y)
    assert run.last == (10, 10)
