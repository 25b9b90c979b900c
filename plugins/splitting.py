"""Splitters (``split_data``): a seeded holdout plus CV folds inside the training part.

random · stratified · group (no entity on both sides) · time (train strictly before
test, and each CV fold validates on rows strictly after its training rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay.errors import BadInput
from assay.hookspecs import hookimpl

if TYPE_CHECKING:
    import numpy as np

    from assay.types import Dataset, Run, Splits


def _time_cut(times: np.ndarray, test_size: float) -> int:
    """Position in sorted ``times`` where the test part starts, moved to a time boundary."""
    import numpy as np

    n = len(times)
    cut = int(np.floor(n * (1 - test_size)))
    value = times[cut]
    cut = int(np.searchsorted(times, value, side="left"))  # keep equal timestamps together
    return cut


def time_folds(times: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over time-sorted positions; validation strictly after training."""
    import numpy as np

    n = len(times)
    folds = []
    edges = np.linspace(0, n, k + 2).astype(int)[1:]
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        start = int(np.searchsorted(times, times[min(start, n - 1)], side="left"))
        if start == 0 or start >= stop:
            continue
        folds.append((np.arange(0, start), np.arange(start, stop)))
    return folds


@hookimpl
def split_data(run: Run, dataset: Dataset) -> Splits:
    import numpy as np
    from sklearn.model_selection import (
        GroupKFold,
        GroupShuffleSplit,
        KFold,
        StratifiedKFold,
        train_test_split,
    )

    from assay.types import Splits

    spec = run.spec.split
    d = run.spec.data
    frame = dataset.frame
    y = frame[dataset.target].to_numpy()
    positions = np.arange(len(frame))
    strategy = spec.strategy
    classification = dataset.task in ("binary", "multiclass", "text")
    if dataset.task == "ranking" and strategy != "time":
        strategy = "group"
    groups_all = None

    if strategy == "time":
        if not d.time_column:
            raise BadInput(f"{run.spec_path}: split.strategy = 'time' needs data.time_column")
        times = frame[d.time_column].to_numpy()
        order = np.argsort(times, kind="stable")
        cut = _time_cut(times[order], spec.test_size)
        if cut == 0 or cut >= len(order):
            raise BadInput(f"{run.spec_path}: split.test_size: {d.time_column!r} has too few distinct times to split")
        train, test = order[:cut], order[cut:]
        folds = time_folds(times[train], spec.cv_folds)
        return Splits(dataset, "time", train, test, folds, spec.seed)

    if strategy == "group":
        key = d.group_column or d.id_column
        if not key:
            raise BadInput(f"{run.spec_path}: split.strategy = 'group' needs data.group_column or data.id_column")
        groups_all = frame[key].astype(str).to_numpy()
        if len(set(groups_all)) < spec.cv_folds + 1:
            raise BadInput(f"{run.spec_path}: split.cv_folds: {key!r} has only {len(set(groups_all))} groups")
        gss = GroupShuffleSplit(n_splits=1, test_size=spec.test_size, random_state=spec.seed)
        train, test = next(gss.split(positions, groups=groups_all))
        cv = GroupKFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.seed)
        folds = list(cv.split(train, groups=groups_all[train]))
        return Splits(dataset, "group", train, test, folds, spec.seed, groups=groups_all[train])

    stratify = y if (strategy == "stratified" and classification) else None
    if strategy == "stratified" and not classification:
        import pandas as pd

        bins = pd.qcut(pd.Series(y), q=min(10, max(2, len(y) // 50)), labels=False, duplicates="drop")
        stratify = bins.to_numpy()
    try:
        train, test = train_test_split(positions, test_size=spec.test_size, random_state=spec.seed,
                                       shuffle=True, stratify=stratify)
    except ValueError as exc:
        raise BadInput(f"{run.spec_path}: split: cannot split the data: {exc}") from exc
    if strategy == "stratified" and classification:
        cv_s: StratifiedKFold | KFold = StratifiedKFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.seed)
        folds = list(cv_s.split(train, y[train]))
    else:
        cv_s = KFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.seed)
        folds = list(cv_s.split(train))
    return Splits(dataset, strategy, train, test, folds, spec.seed)
