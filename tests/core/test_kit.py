"""The public kit: ``from assay import ...``, ``assay.kit``, and ``assay.testing``'s tuner and check kits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import assay
import assay.plugins.tuners
from assay import Check, Evidence, SearchRequest, Tuner, hookimpl
from assay.testing import (
    CheckPluginFailed,
    Prepared,
    TunerCheckFailed,
    check_plugin,
    check_tuner,
    prepare,
    registered_tuners,
    run_hook,
)
from tests.conftest import EXAMPLES

PUBLIC = ("hookimpl", "Trainer", "Tuner", "SearchRequest", "Check", "Evidence", "Dataset", "Splits", "FittedModel",
          "RuleOutcome", "Verdict", "Event", "Run", "Scores", "Predictions", "Baseline", "SampleWeights",
          "StageSummary", "MonitorContext", "BadInput", "Finding", "InternalError", "AssayError")


def test_the_public_names_import_from_assay_without_the_ml_stack() -> None:
    code = ("import sys; from assay import " + ", ".join(PUBLIC) + "; import assay.kit; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'numpy', 'pandas', 'scipy')); "
            "print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert set(PUBLIC) <= set(assay.__all__)
    for name in assay.__all__:
        assert getattr(assay, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Trainr'"):
        assay.Trainr  # noqa: B018


def test_every_kit_name_resolves_and_the_heavy_ones_load_on_first_use() -> None:
    code = ("import sys, assay.kit as kit; print(sorted(m for m in ('sklearn', 'pydantic', 'assay.rankers') "
            "if m in sys.modules)); from assay.kit import PointwiseRanker, RunSpec; "
            "print(PointwiseRanker.__module__, RunSpec.__module__, 'sklearn' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "assay.rankers assay.kernel.spec True"]
    import assay.kit

    for name in assay.kit.__all__:
        assert getattr(assay.kit, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'guardd'"):
        assay.kit.guardd  # type: ignore[attr-defined]  # noqa: B018


def test_bundled_plugins_reach_shared_code_through_the_kit_only() -> None:
    """No bundled plugin module imports the metrics, search or pipeline helpers from another plugin."""
    root = Path(assay.__file__).resolve().parents[1] / "plugins"
    offenders = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for moved in ("assay.plugins.metrics import", "from assay.plugins import metrics",
                      "assay.plugins.training import _as_str", "trusted_types()"):
            if moved in text:
                offenders.append(f"{path.name}: {moved}")
    assert offenders == []
    assert not (root / "metrics.py").exists()  # no re-export left to import the kit's names through


# --------------------------------------------------------------------------- tuners


@pytest.mark.parametrize("tuner", registered_tuners(assay.plugins.tuners), ids=lambda t: t.name)
def test_bundled_tuners_conform(tuner: Tuner) -> None:
    results = check_tuner(tuner)
    assert [r.name for r in results if not r.passed] == []
    assert len(results) == 7


def _own_split(request: SearchRequest) -> Any:
    from sklearn.model_selection import GridSearchCV

    return GridSearchCV(request.estimator, [{}], cv=3, scoring=request.scoring)


def _whole_space(request: SearchRequest) -> Any:
    from sklearn.model_selection import GridSearchCV

    return GridSearchCV(request.estimator, {k: list(v) for k, v in request.space.items()}, cv=request.cv,
                        scoring=request.scoring)


def _unseeded(request: SearchRequest) -> Any:
    from sklearn.model_selection import RandomizedSearchCV

    return RandomizedSearchCV(request.estimator, request.space, n_iter=request.budget, cv=request.cv,
                              scoring=request.scoring, random_state=None)


@pytest.mark.parametrize(("make_search", "failing", "reason"), [
    (_own_split, "check_uses_the_folds", "never asked request.cv"),
    (_whole_space, "check_budget", "10 candidate settings tried for a budget of 4"),
    (_unseeded, "check_tuner_deterministic", "draw them from request.seed"),
], ids=["splits-itself", "ignores-budget", "unseeded"])
def test_a_broken_tuner_fails_the_check_that_names_its_fault(make_search: Any, failing: str, reason: str) -> None:
    with pytest.raises(TunerCheckFailed) as caught:
        check_tuner(Tuner("broken", make_search))
    assert failing in caught.value.failures, caught.value.failures
    assert reason in caught.value.failures[failing]
    assert "check_search_results" not in caught.value.failures  # each is a real search otherwise


# --------------------------------------------------------------------------- check plugins


@pytest.fixture(scope="module")
def travel(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    directory = tmp_path_factory.mktemp("kit") / "travel"
    shutil.copytree(EXAMPLES / "travel_mode_choice", directory, ignore=shutil.ignore_patterns(".assay"))
    return prepare(directory / "assay.toml", ["train.budget=1"], home=directory / "home")


def test_bundled_check_plugins_conform(travel: Prepared) -> None:
    from assay.plugins import datachecks, fairness, generalization, leakage

    model = travel.fit(["pairwise_logistic"])
    for plugin in (datachecks, leakage, generalization, fairness):
        results = check_plugin(plugin, travel, model)
        assert results and all(r.passed for r in results), plugin.__name__
    names = {r.name for r in check_plugin(datachecks, travel, model)}
    assert names == {"check_validate_data_results", "check_check_split_results"}


def test_run_hook_calls_one_plugin_alone_with_the_runners_arguments(travel: Prepared) -> None:
    from assay.plugins import datachecks

    results = run_hook(datachecks, "validate_data", travel)
    checks = [r for r in results if isinstance(r, Check)]
    assert checks and {c.group for c in checks} == {"data"}
    assert {c.name for c in checks} >= {"schema", "missing_values"}
    with pytest.raises(ValueError, match="needs the fitted model"):
        run_hook(datachecks, "evaluate", travel)


class NaNValue:
    @hookimpl
    def validate_data(self, dataset: Any) -> Any:
        return [Check("custom", "ratio", "pass", float("nan"))]


class UnknownStatus:
    @hookimpl
    def validate_data(self, dataset: Any) -> Any:
        return [Check("custom", "rows", "ok", dataset.rows)]


class MutatesData:
    @hookimpl
    def check_split(self, splits: Any) -> Any:
        splits.dataset.frame.iloc[0, 0] = -1  # a check must never touch the data it judges
        return [Check("custom", "touched", "pass", 1)]


class Unseeded:
    @hookimpl
    def validate_data(self, dataset: Any) -> Any:
        return [Check("custom", "noise", "pass", float(np.random.default_rng().random()))]


class ReturnsADict:
    @hookimpl
    def validate_data(self, dataset: Any) -> Any:
        return [{"status": "pass"}]


class NoValueNoReason:
    @hookimpl
    def validate_data(self, dataset: Any) -> Any:
        return [Check("custom", "score", "warn", None), Evidence("custom", {"ok": True})]


@pytest.mark.parametrize(("plugin", "failing", "reason"), [
    (NaNValue(), "check_validate_data_results", "is not finite; use None and say why"),
    (UnknownStatus(), "check_validate_data_results", "status 'ok' is not one of"),
    (MutatesData(), "check_check_split_results", "check_split changed the dataset it was given"),
    (Unseeded(), "check_validate_data_results", "a second call on the same data returned different results"),
    (ReturnsADict(), "check_validate_data_results", "returned a dict; return Check and Evidence values"),
    (NoValueNoReason(), "check_validate_data_results", "no value and no detail or message saying why"),
], ids=["nan", "unknown-status", "mutates-data", "unseeded", "dict", "no-reason"])
def test_a_broken_check_plugin_is_named_with_its_fault(tmp_path: Path, plugin: Any, failing: str,
                                                       reason: str) -> None:
    directory = tmp_path / "travel"
    shutil.copytree(EXAMPLES / "travel_mode_choice", directory, ignore=shutil.ignore_patterns(".assay"))
    prepared = prepare(directory / "assay.toml", home=tmp_path / "home")  # its own copy: one test mutates it
    with pytest.raises(CheckPluginFailed) as caught:
        check_plugin(plugin, prepared)
    assert set(caught.value.failures) == {failing}
    assert reason in caught.value.failures[failing]
