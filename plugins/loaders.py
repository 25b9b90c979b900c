"""Data loaders (``load_data``): CSV, Parquet, and SQL queries through a SQLAlchemy URL.

``read_table`` reads the raw table; ``prepare_frame`` turns it into a :class:`Dataset`:
unique, stripped column names and a fresh 0..n-1 index (row positions are the identity
the split and the CV folds use); ISO-8601 text columns parsed as datetimes, so a table
has the same fingerprint whether it came from CSV, Parquet or SQL; ``data.roles``
overrides applied to the values; rows without a target dropped (and counted); the task
inferred when the spec leaves it empty; every column given a role.

Reading the raw table (:func:`assay.kit.read_table`), parsing a time column
(:func:`assay.kit.parse_datetime`), the roles and the fingerprint are the public kit's, so any
plugin or command that needs a table reads it the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import hookimpl
from assay.errors import BadInput
from assay.kit import (
    FILE_SUFFIXES,
    ISO_DATETIME,
    fingerprint_frame,
    infer_roles,
    infer_task,
    is_url,
    parse_datetime,
    read_table,
    redact_url,
)

if TYPE_CHECKING:
    import pandas as pd

    from assay import Check, Dataset, Evidence, Run
    from assay.kit import RunSpec

_DATETIME_SAMPLE = 200
# frame.attrs key: rows dropped because the target was missing (reported by validate_data).
DROPPED_ATTR = "assay.rows_without_target"
# frame.attrs key: rows dropped by data.dedupe as repeats of an earlier row.
DEDUPED_ATTR = "assay.rows_repeated"


def parse_iso_datetimes(frame: pd.DataFrame, skip: set[str]) -> None:
    """Turn text columns whose values are all ISO-8601 dates/times into datetimes, in place."""
    import pandas as pd

    for col in frame.columns:
        s = frame[col]
        if col in skip or not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
            continue
        sample = s.dropna().head(_DATETIME_SAMPLE)
        if sample.empty or not all(isinstance(v, str) and ISO_DATETIME.match(v) for v in sample):
            continue
        try:
            frame[col] = parse_datetime(s)
        except (ValueError, TypeError):
            continue  # looked like dates at the top, is not throughout: leave it as text


def _apply_role_overrides(frame: pd.DataFrame, spec: RunSpec, source: str) -> None:
    import pandas as pd

    d = spec.data
    wanted: dict[str, str] = dict(d.roles)
    if d.time_column and not pd.api.types.is_numeric_dtype(frame[d.time_column].dtype):
        wanted.setdefault(d.time_column, "datetime")  # numeric times (years, epochs) order as they are
    if d.text_column:
        wanted.setdefault(d.text_column, "text")
    for col, role in wanted.items():
        if col not in frame.columns or col == d.target:  # a missing column is named by the runner
            continue
        s = frame[col]
        if role == "datetime" and not pd.api.types.is_datetime64_any_dtype(s.dtype):
            try:
                frame[col] = parse_datetime(s)
            except (ValueError, TypeError) as exc:
                key = "data.time_column" if col == d.time_column else f"data.roles.{col}"
                raise BadInput(f"{key}: column {col!r} of {source} is not a date/time: {exc}") from exc
        elif role == "numeric" and not pd.api.types.is_numeric_dtype(s.dtype):
            try:
                frame[col] = pd.to_numeric(s)
            except (ValueError, TypeError) as exc:
                raise BadInput(f"data.roles.{col}: column {col!r} of {source} is not numeric: {exc}") from exc
        elif role == "text":
            frame[col] = s.astype(object).where(s.notna(), "")  # an empty document, not a missing one


def _check_target(frame: pd.DataFrame, spec: RunSpec, source: str, task: str) -> None:
    import pandas as pd

    d = spec.data
    y = frame[d.target]
    if task in ("binary", "multiclass", "text") and y.nunique() < 2:
        raise BadInput(f"data.target: column {d.target!r} of {source} has a single class; nothing to learn")
    if task == "binary" and y.nunique() > 2:
        raise BadInput(f"data.task: 'binary' but {d.target!r} has {y.nunique()} classes; use task = 'multiclass'")
    if task in ("regression", "ranking") and not pd.api.types.is_numeric_dtype(y.dtype):
        raise BadInput(f"data.task: {task!r} needs a numeric target; {d.target!r} of {source} is {y.dtype}")
    if task == "ranking":
        if (y < 0).any():
            raise BadInput(f"data.target: ranking relevance {d.target!r} of {source} must be >= 0 "
                           f"(found {y.min()})")
        if frame[d.group_column].isna().any():
            raise BadInput(f"data.group_column: {int(frame[d.group_column].isna().sum())} rows of {source} "
                           f"have no query id in {d.group_column!r}; fill or drop them")
    if task == "text" and d.text_column in frame.columns and not (
            frame[d.text_column].dtype == object or isinstance(frame[d.text_column].dtype, pd.StringDtype)):
        raise BadInput(f"data.text_column: {d.text_column!r} of {source} holds {frame[d.text_column].dtype}, not text")


def drop_repeated_rows(frame: pd.DataFrame, roles: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    """``frame`` without the rows equal to an earlier row in every column but ids, and how many those were.

    ``data.dedupe``: the first of each set of equal rows stays. Equal means equal as read (the
    duplicates check also counts copies that differ only in case, spacing or float noise, and
    names them by row).
    """
    record = [c for c in frame.columns if roles.get(str(c)) != "id"]
    repeated = frame.duplicated(subset=record, keep="first").to_numpy()
    return frame[~repeated].reset_index(drop=True), int(repeated.sum())


def prepare_frame(frame: pd.DataFrame, spec: RunSpec, source: str, name: str = "data") -> Dataset:
    """Turn a raw table into a fingerprinted :class:`Dataset` with roles and a task."""
    from assay import Dataset

    frame = frame.copy(deep=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise BadInput(f"data.source: {source} has duplicate column names: {', '.join(duplicated)}")
    frame = frame.reset_index(drop=True)
    d = spec.data
    # Columns the spec declares as text-like keep their strings; any other ISO column is parsed
    # (a dropped time column still orders a time split).
    declared = ({d.text_column} | {c for c, r in d.roles.items() if r in ("text", "categorical", "id", "group")}) - {""}
    parse_iso_datetimes(frame, skip=declared | {d.target})
    _apply_role_overrides(frame, spec, source)
    if d.target not in frame.columns:  # the runner names the missing column (check_columns)
        return Dataset(frame, d.target, d.task or "binary", {}, fingerprint_frame(frame), source, name)
    missing_target = int(frame[d.target].isna().sum())
    if missing_target == len(frame):
        raise BadInput(f"data.target: column {d.target!r} of {source} has no values")
    if missing_target:
        frame = frame[frame[d.target].notna()].reset_index(drop=True)
    if frame[d.target].dtype == object:
        frame[d.target] = frame[d.target].astype(str).str.strip()
    task = d.task or infer_task(frame[d.target])
    _check_target(frame, spec, source, task)
    roles = infer_roles(frame, spec)
    deduped = d.dedupe and name == "data"
    if deduped:
        frame, repeated = drop_repeated_rows(frame, roles)
        if repeated:
            roles = infer_roles(frame, spec)
    frame.attrs[DROPPED_ATTR] = missing_target
    if deduped:
        frame.attrs[DEDUPED_ATTR] = repeated
    return Dataset(frame, d.target, task, roles, fingerprint_frame(frame), source, name)


def load_table(spec: RunSpec, source: str, base_dir: str, field: str = "data.source", name: str = "data") -> Dataset:
    """Read and prepare ``source`` as the run's loader would (for a second table).

    The dataset's ``source`` (what evidence and messages show) is the URL without its password.
    """
    return prepare_frame(read_table(source, base_dir, spec.data.query, field, spec.data.sep), spec,
                         redact_url(source), name)


@hookimpl
def load_data(spec: RunSpec, source: str, base_dir: str) -> Dataset | None:
    if not is_url(source) and not source.lower().endswith(FILE_SUFFIXES):
        return None
    is_target = bool(spec.data.target_domain) and source == spec.data.target_domain
    field = "data.target_domain" if is_target else "data.source"
    return load_table(spec, source, base_dir, field, "target_domain" if is_target else "data")


@hookimpl
def validate_data(run: Run, dataset: Dataset) -> list[Check | Evidence]:
    """Record what loading did to the table: rows dropped for a missing target, and by ``data.dedupe``."""
    from assay import Evidence

    dropped: Any = dataset.frame.attrs.get(DROPPED_ATTR, 0)
    done: dict[str, Any] = {"rows_without_target": int(dropped)}
    if DEDUPED_ATTR in dataset.frame.attrs:  # data.dedupe was on for this table
        done["deduplicated"] = {"rows_dropped": int(dataset.frame.attrs[DEDUPED_ATTR]),
                                "compared": "rows equal to an earlier row in every column but ids"}
    return [Evidence("data", done)]
