"""Splitters (``split_data``): a seeded holdout plus CV folds inside the training part.

random · stratified · group (no entity on both sides) · time (train strictly before
test, and each CV fold validates on rows strictly after its training rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import hookimpl
from assay.errors import BadInput

if TYPE_CHECKING:
    import numpy as np

    from assay import Dataset, Evidence, Run, Splits


def _time_cut(times: np.ndarray, test_size: float) -> int:
    """Position in sorted ``times`` where the test part starts, moved to a time boundary."""
    import numpy as np

    n = len(times)
    cut = int(np.floor(n * (1 - test_size)))
    return int(np.searchsorted(times, times[cut], side="left"))  # keep equal timestamps together


def time_folds(times: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over time-sorted positions; validation strictly after training.

    The sorted rows are cut into ``k + 1`` blocks; fold ``i`` trains on blocks ``0..i`` and
    validates on block ``i + 1``. Each block start moves back to the first row with its
    timestamp, so equal timestamps never straddle a fold's train/validation boundary; a
    fold left empty by that (heavily tied times) is dropped.
    """
    import itertools

    import numpy as np

    n = len(times)
    folds = []
    edges = np.linspace(0, n, k + 2).astype(int)[1:]
    for start, stop in itertools.pairwise(edges):
        start = int(np.searchsorted(times, times[min(start, n - 1)], side="left"))
        if start == 0 or start >= stop:
            continue
        folds.append((np.arange(0, start), np.arange(start, stop)))
    return folds


def _time_split(run: Run, dataset: Dataset) -> Splits:
    import numpy as np
    import pandas as pd

    from assay import Splits

    spec, d = run.spec.split, run.spec.data
    if not d.time_column:
        raise BadInput(f"{run.spec_path}: split.strategy = 'time' needs data.time_column")
    column = dataset.frame[d.time_column]
    if column.isna().any():
        raise BadInput(f"{run.spec_path}: data.time_column: {int(column.isna().sum())} rows have no "
                       f"{d.time_column!r} value; a time split cannot place them (fill or drop them)")
    times = column.to_numpy()
    if not (pd.api.types.is_datetime64_any_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype)):
        raise BadInput(f"{run.spec_path}: data.time_column: {d.time_column!r} is {column.dtype}, not a date/time")
    order = np.argsort(times, kind="stable")
    cut = _time_cut(times[order], spec.test_size)
    if cut == 0 or cut >= len(order):
        raise BadInput(f"{run.spec_path}: split.test_size: {d.time_column!r} has too few distinct times to split")
    train, test = order[:cut], order[cut:]
    folds = time_folds(times[train], spec.cv_folds)
    if not folds:
        raise BadInput(f"{run.spec_path}: split.cv_folds: the training part's {d.time_column!r} values are too "
                       "tied to make any time-ordered CV fold")
    return Splits(dataset, "time", train, test, folds, spec.seed)


def _group_split(run: Run, dataset: Dataset) -> Splits:
    import numpy as np
    from sklearn.model_selection import GroupKFold, GroupShuffleSplit

    from assay import Splits

    spec, d = run.spec.split, run.spec.data
    key = d.group_column or d.id_column
    if not key:
        raise BadInput(f"{run.spec_path}: split.strategy = 'group' needs data.group_column or data.id_column")
    # Missing keys form one group of their own ("nan"), so they cannot straddle the split either.
    groups_all = dataset.frame[key].astype(str).to_numpy()
    positions = np.arange(len(groups_all))
    n_groups = len(np.unique(groups_all))
    if n_groups < spec.cv_folds + 1:
        raise BadInput(f"{run.spec_path}: split.cv_folds: {key!r} has {n_groups} groups; a holdout and "
                       f"{spec.cv_folds} folds need at least {spec.cv_folds + 1}")
    gss = GroupShuffleSplit(n_splits=1, test_size=spec.test_size, random_state=spec.seed)
    train, test = next(gss.split(positions, groups=groups_all))
    train_groups = groups_all[train]
    if len(np.unique(train_groups)) < spec.cv_folds:
        raise BadInput(f"{run.spec_path}: split.cv_folds: the training part has {len(np.unique(train_groups))} "
                       f"{key!r} groups, fewer than cv_folds = {spec.cv_folds}; lower cv_folds or test_size")
    cv = GroupKFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.seed)
    folds = list(cv.split(train, groups=train_groups))
    return Splits(dataset, "group", train, test, folds, spec.seed, groups=train_groups)


def _row_split(run: Run, dataset: Dataset, strategy: str) -> Splits:
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    from assay import Splits

    spec = run.spec.split
    y = dataset.frame[dataset.target].to_numpy()
    positions = np.arange(len(y))
    classification = dataset.task in ("binary", "multiclass", "text")
    stratify = None
    if strategy == "stratified":
        # Regression targets are stratified by quantile bins, so both parts span the range.
        stratify = y if classification else pd.qcut(pd.Series(y), q=min(10, max(2, len(y) // 50)),
                                                   labels=False, duplicates="drop").to_numpy()
    try:
        train, test = train_test_split(positions, test_size=spec.test_size, random_state=spec.seed,
                                       shuffle=True, stratify=stratify)
    except ValueError as exc:
        raise BadInput(f"{run.spec_path}: split: cannot split the data: {exc}") from exc
    cv: StratifiedKFold | KFold
    if strategy == "stratified" and classification:
        cv = StratifiedKFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.seed)
        folds = list(cv.split(train, y[train]))
    else:
        cv = KFold(n_splits=spec.cv_folds, shuffle=True, random_state=spec.seed)
        folds = list(cv.split(train))
    return Splits(dataset, strategy, train, test, folds, spec.seed)


@hookimpl
def split_data(run: Run, dataset: Dataset) -> Splits:
    strategy = run.spec.split.strategy
    if dataset.task == "ranking":
        if strategy == "time":
            raise BadInput(f"{run.spec_path}: split.strategy: ranking splits by query (data.group_column); "
                           "'time' would cut queries apart")
        strategy = "group"  # a query's items must stay together
    if strategy == "time":
        return _time_split(run, dataset)
    if strategy == "group":
        return _group_split(run, dataset)
    return _row_split(run, dataset, strategy)


@hookimpl
def check_split(run: Run, splits: Splits) -> list[Evidence]:
    """Record which rows went where, by position (the runner records their content fingerprints)."""
    import hashlib

    from assay import Evidence
    from assay.kit import rows_digest

    folds = hashlib.sha256()
    for tr, va in splits.folds:
        folds.update(rows_digest(splits.train[tr]).encode() + rows_digest(splits.train[va]).encode())
    data: dict[str, Any] = {
        "train": {"rows_sha256": rows_digest(splits.train)},
        "test": {"rows_sha256": rows_digest(splits.test)},
        "folds_sha256": "sha256:" + folds.hexdigest(),
    }
    d = run.spec.data
    if splits.strategy == "group":
        key = d.group_column or d.id_column
        keys = splits.dataset.frame[key].astype(str)
        data["group"] = {"column": key, "train_groups": int(keys.iloc[splits.train].nunique()),
                         "test_groups": int(keys.iloc[splits.test].nunique())}
    if splits.strategy == "time":
        times = splits.dataset.frame[d.time_column]
        data["time"] = {"column": d.time_column, "train_end": times.iloc[splits.train].max(),
                        "test_start": times.iloc[splits.test].min()}
    return [Evidence("split", data)]
