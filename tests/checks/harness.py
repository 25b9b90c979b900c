"""Build a real Run, Dataset and Splits from a spec (the bundled loader and splitter), to call checks directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.settings import Settings
from assay.spec import load_spec
from assay.types import Dataset, Run, Scores, Splits


@dataclass
class Prepared:
    run: Run
    dataset: Dataset
    splits: Splits


def prepare(spec_path: Path, overrides: list[str] | None = None, home: Path | None = None) -> Prepared:
    from assay.plugins import loaders, splitting

    spec, base_dir = load_spec(spec_path, overrides or [])
    settings = Settings.resolve(home or base_dir / ".assay")
    run = Run(run_id="test", spec=spec, spec_path=str(spec_path), settings=settings, trainers=_trainers(),
              tuners=_tuners())
    dataset = loaders.load_data(spec=spec, source=spec.data.source, base_dir=str(base_dir))
    splits = splitting.split_data(run=run, dataset=dataset)
    return Prepared(run, dataset, splits)


def by_name(results: Any) -> dict[str, Any]:
    """``{name: Check}`` of the checks in a hook result (Evidence items are skipped)."""
    from assay.types import Check

    return {c.name: c for c in results if isinstance(c, Check)}


def _trainers() -> dict[str, Any]:
    from assay.plugins import trainers

    found: dict[str, Any] = {}
    trainers.register_trainers(register=lambda t: found.__setitem__(t.name, t))
    return found


def _tuners() -> dict[str, Any]:
    from assay.plugins import tuners

    found: dict[str, Any] = {}
    tuners.register_tuners(register=lambda t: found.__setitem__(t.name, t))
    return found


def fit(prepared: Prepared, candidates: tuple[str, ...] = ("logistic_regression",), tuning: str = "none") -> Any:
    """Fit with the bundled trainers, tuners and fit_model (its conduct facts are on the returned model)."""
    from assay.plugins import training

    run = prepared.run
    return training.fit_model(run=run, splits=prepared.splits, trainers=[run.trainers[c] for c in candidates],
                              tuner=run.tuners[tuning])


def scores(run: Run, model: Any, splits: Splits) -> Scores:
    """What the runner hands ``evaluate``: the bundled baseline and both models' predictions, made once."""
    from assay.plugins.evaluation import fit_baseline
    from assay.runner import score_splits

    return score_splits(model, fit_baseline(run=run, splits=splits), splits)
