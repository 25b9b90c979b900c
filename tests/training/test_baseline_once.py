"""The baseline is fitted (dummy) or loaded (a registered version) exactly once per run.

A real installed plugin counts every ``DummyClassifier.fit`` and every model load in the
``assay run`` process and writes the counts when the run finishes; every bundled evaluate
plugin (metrics, generalization, fairness, curves, business cost) reads the runner's Scores.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.training.conftest import Trained, assay_run, install_plugin

COUNTING_PLUGIN = '''
import json
import os

from sklearn.dummy import DummyClassifier

import assay.storage.modelio
from assay.kernel.hookspecs import hookimpl

COUNTS = {"dummy_fits": 0, "model_loads": 0}
_fit, _load = DummyClassifier.fit, assay.storage.modelio.load_model


def counted_fit(self, *args, **kwargs):
    COUNTS["dummy_fits"] += 1
    return _fit(self, *args, **kwargs)


def counted_load(*args, **kwargs):
    COUNTS["model_loads"] += 1
    return _load(*args, **kwargs)


DummyClassifier.fit = counted_fit
assay.storage.modelio.load_model = counted_load


@hookimpl
def run_finished(run):
    with open(os.environ["BASELINE_COUNTS"], "w") as out:
        json.dump(COUNTS, out)
'''


def counted_run(trained: Trained, tmp_path: Path, *sets: str) -> tuple[dict[str, object], dict[str, int]]:
    counts = tmp_path / "counts.json"
    env = {**install_plugin(tmp_path / "site", "baseline_counter", COUNTING_PLUGIN), "BASELINE_COUNTS": str(counts)}
    out = assay_run(trained.directory, trained.home, "train.tuning='none'", "train.candidates=['logistic_regression']",
                    *sets, env=env)
    return out, json.loads(counts.read_text(encoding="utf-8"))


def test_the_dummy_baseline_is_fitted_once(trained: Trained, tmp_path: Path) -> None:
    out, counts = counted_run(trained, tmp_path)
    assert out["baseline"]["name"] == "dummy"
    assert counts == {"dummy_fits": 1, "model_loads": 0}


def test_a_registered_baseline_is_loaded_once(trained: Trained, tmp_path: Path) -> None:
    out, counts = counted_run(trained, tmp_path, "evaluate.baseline='adult-3k@1'")
    assert out["baseline"]["name"] == "adult-3k@1"
    assert counts == {"dummy_fits": 0, "model_loads": 1}
