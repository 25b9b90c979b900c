"""Build a real Run, Dataset and Splits from a spec (the bundled loader and splitter), to call checks directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.settings import Settings
from assay.spec import load_spec
from assay.types import Dataset, Run, Splits


@dataclass
class Prepared:
    run: Run
    dataset: Dataset
    splits: Splits


def prepare(spec_path: Path, overrides: list[str] | None = None, home: Path | None = None) -> Prepared:
    from assay.plugins import loaders, splitting

    spec, base_dir = load_spec(spec_path, overrides or [])
    settings = Settings.resolve(home or base_dir / ".assay")
    run = Run(run_id="test", spec=spec, spec_path=str(spec_path), settings=settings)
    dataset = loaders.load_data(spec=spec, source=spec.data.source, base_dir=str(base_dir))
    splits = splitting.split_data(run=run, dataset=dataset)
    return Prepared(run, dataset, splits)


def by_name(results: Any) -> dict[str, Any]:
    """``{name: Check}`` of the checks in a hook result (Evidence items are skipped)."""
    from assay.types import Check

    return {c.name: c for c in results if isinstance(c, Check)}


def fit(prepared: Prepared, candidates: tuple[str, ...] = ("logistic_regression",), tuning: str = "none") -> Any:
    """Fit with the bundled trainers, tuners and fit_model (facts land in ``prepared.run.facts``)."""
    from assay.plugins import trainers, training, tuners

    found: dict[str, Any] = {}
    trainers.register_trainers(register=lambda t: found.__setitem__(t.name, t))
    searches: dict[str, Any] = {}
    tuners.register_tuners(register=lambda t: searches.__setitem__(t.name, t))
    prepared.run.trainers = found
    prepared.run.tuners = searches
    return training.fit_model(run=prepared.run, splits=prepared.splits, trainers=[found[c] for c in candidates],
                              tuner=searches[tuning])
