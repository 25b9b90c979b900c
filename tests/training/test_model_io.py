"""What saving a model and hashing its predictions cost a run, and that neither changes what is recorded.

* ``skops.io`` is imported with dask and pytest held back (its type discovery would import both,
  needing neither): its trusted-type lists, which decide what a model may contain, come out the same.
* The model predicts the holdout once per run: the predictions hash is taken from the predictions
  the evaluation scores with, and equals :func:`predictions_hash` on the reloaded model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assay.storage.modelio import hash_predictions, load_model, predictions_hash
from assay.storage.settings import Settings
from assay.storage.store import ArtifactStore, RunStore
from tests.training.conftest import Trained, assay_run, install_plugin

TRUSTED_LISTS = """
import json, sys
import numpy, scipy.special, sklearn.ensemble, sklearn.pipeline
if sys.argv[1] == "assay":
    from assay.storage.modelio import skops_io
    skops_io()
else:
    import skops.io
from skops.io import _trusted_types as t
lists = {name: sorted(getattr(t, name)) for name in dir(t) if name.endswith("_TYPE_NAMES")}
print(json.dumps({"lists": lists, "loaded": sorted(m for m in ("dask", "pytest") if m in sys.modules)}))
"""


def _trusted_lists(how: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", TRUSTED_LISTS, how], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def test_skops_trusts_the_same_types_when_its_optional_imports_are_held_back() -> None:
    plain, held = _trusted_lists("skops"), _trusted_lists("assay")
    assert held["lists"] == plain["lists"]
    lists = held["lists"]
    assert isinstance(lists, dict)
    assert "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier" in \
        lists["SKLEARN_ESTIMATOR_TYPE_NAMES"]
    assert held["loaded"] == []  # neither was imported for it ...
    assert plain["loaded"] == ["dask", "pytest"]  # ... where plain skops imports both (installed here)


def test_what_was_held_back_imports_normally_afterwards() -> None:
    code = ("import sys\nfrom assay.storage.modelio import skops_io\nskops_io()\n"
            "assert 'pytest' not in sys.modules and 'dask' not in sys.modules\n"
            "import pytest, dask\nprint(pytest.__name__, dask.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pytest", "dask"]


def test_hash_predictions_is_predictions_hash_of_predictions_already_made() -> None:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LinearRegression, LogisticRegression

    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    classifier = LogisticRegression().fit(X, y)
    assert hash_predictions(classifier.predict_proba(X), "proba") == predictions_hash(classifier, X)
    assert hash_predictions(classifier.predict(X), "proba") != predictions_hash(classifier, X)
    regressor = LinearRegression().fit(X, y.astype(float))
    assert hash_predictions(regressor.predict(X), "pred") == predictions_hash(regressor, X)
    assert hash_predictions(np.array(["a", "b"]), "pred") != hash_predictions(np.array(["b", "a"]), "pred")
    with pytest.raises(ValueError, match="kind"):
        hash_predictions(regressor.predict(X), "scores")


COUNTING_PLUGIN = '''
import json
import os
import sys

from sklearn.pipeline import Pipeline

from assay.kernel.hookspecs import hookimpl

CALLS = []
_proba = Pipeline.predict_proba


def counted_proba(self, X, **params):
    frame, callers = sys._getframe(1), []
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("assay.") and name not in callers:
            callers.append(name)
        frame = frame.f_back
    CALLS.append({"rows": len(X), "callers": callers})
    return _proba(self, X, **params)


Pipeline.predict_proba = counted_proba


@hookimpl
def run_finished(run, evidence):
    with open(os.environ["PREDICT_CALLS"], "w") as out:
        json.dump({"calls": CALLS, "test_rows": evidence["split"]["test"]["rows"],
                   "train_rows": evidence["split"]["train"]["rows"]}, out)
'''


def test_the_model_predicts_the_holdout_once_and_its_hash_is_what_the_reloaded_model_gives(
        trained: Trained, tmp_path: Path) -> None:
    calls = tmp_path / "calls.json"
    env = {**install_plugin(tmp_path / "site", "predict_counter", COUNTING_PLUGIN), "PREDICT_CALLS": str(calls)}
    home = tmp_path / "home"
    out = assay_run(trained.directory, home, "train.tuning='none'", "train.candidates=['logistic_regression']",
                    env=env)
    seen = json.loads(calls.read_text(encoding="utf-8"))
    # what the runner (and the predictions hash) had the model predict: one pass over the holdout
    # and the scored training rows (all of them, under 20,000), never the holdout alone again
    by_core = [c["rows"] for c in seen["calls"]
               if {"assay.kernel.runner", "assay.storage.modelio"} & set(c["callers"])
               and not any(n.startswith("assay.plugins.") for n in c["callers"])]
    assert by_core == [seen["test_rows"] + seen["train_rows"]]

    evidence = RunStore(Settings.resolve(home)).get_run(out["run_id"]).evidence
    assert evidence is not None
    model = load_model(ArtifactStore(home), evidence["model"]["artifact"])
    assert evidence["model"]["predictions_hash"] == predictions_hash(model, _holdout(trained))


def _holdout(trained: Trained) -> Any:
    """The run's holdout rows, rebuilt through the real split hook (the spec's seed decides them)."""
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec

    spec, _ = load_spec(trained.directory / "assay.toml")
    runner = Runner(make_plugin_manager(), Settings.resolve(trained.home), spec, trained.directory / "assay.toml")
    run, dataset, _ = runner.prepare()
    return runner.pm.hook.split_data(run=run, dataset=dataset).X("test")
