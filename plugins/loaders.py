"""Data loaders (``load_data``): CSV, Parquet, and SQL queries through a SQLAlchemy URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from assay.errors import BadInput
from assay.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd

    from assay.spec import RunSpec
    from assay.types import Dataset

FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")


def infer_task(y: pd.Series) -> str:
    import pandas as pd

    n = y.nunique(dropna=True)
    if n <= 2:
        return "binary"
    if pd.api.types.is_float_dtype(y.dtype) or (pd.api.types.is_integer_dtype(y.dtype) and n > 20):
        return "regression"
    return "multiclass"


def read_table(source: str, base_dir: str, query: str = "", field: str = "data.source") -> pd.DataFrame:
    """Read a CSV/Parquet file (relative to ``base_dir``) or a SQL query; BadInput on failure."""
    import pandas as pd

    if "://" in source:
        if not query:
            raise BadInput(f"{field}: a database URL needs data.query = 'SELECT ...'")
        from sqlalchemy import create_engine, text

        try:
            engine = create_engine(source)
            with engine.connect() as conn:
                return pd.read_sql(text(query), conn)
        except Exception as exc:
            raise BadInput(f"{field}: cannot run data.query against {source}: {exc}") from exc
    path = Path(base_dir) / source
    if not path.exists():
        raise BadInput(f"{field}: data file {path} not found")
    try:
        if path.name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path, na_values=["?"], skipinitialspace=True, low_memory=False)
    except Exception as exc:
        raise BadInput(f"{field}: cannot read {path}: {exc}") from exc


def prepare_frame(frame: pd.DataFrame, spec: RunSpec, source: str, name: str = "data") -> Dataset:
    """Turn a raw table into a fingerprinted :class:`Dataset` with roles and a task."""
    import pandas as pd

    from assay.dataset import fingerprint_frame, infer_roles
    from assay.types import Dataset

    frame.columns = [str(c).strip() for c in frame.columns]
    d = spec.data
    if d.target not in frame.columns:
        return Dataset(frame, d.target, d.task or "binary", {}, fingerprint_frame(frame), source, name)  # type: ignore[arg-type]
    if d.time_column and d.time_column in frame.columns:
        try:
            frame[d.time_column] = pd.to_datetime(frame[d.time_column])
        except (ValueError, TypeError) as exc:
            raise BadInput(f"data.time_column: column {d.time_column!r} of {source} is not a date/time: {exc}") from exc
    n_missing_target = int(frame[d.target].isna().sum())
    if n_missing_target == len(frame):
        raise BadInput(f"data.target: column {d.target!r} of {source} has no values")
    if n_missing_target:
        frame = frame[frame[d.target].notna()].reset_index(drop=True)
    if frame[d.target].dtype == object:
        frame[d.target] = frame[d.target].astype(str).str.strip().str.rstrip(".")
    task = d.task or infer_task(frame[d.target])
    if task in ("binary", "multiclass", "text") and frame[d.target].nunique() < 2:
        raise BadInput(f"data.target: column {d.target!r} of {source} has a single class; nothing to learn")
    if task == "binary" and frame[d.target].nunique() > 2:
        raise BadInput(f"data.task: 'binary' but {d.target!r} has {frame[d.target].nunique()} classes; "
                       "use task = 'multiclass'")
    if task == "regression" and not pd.api.types.is_numeric_dtype(frame[d.target].dtype):
        raise BadInput(f"data.task: 'regression' needs a numeric target; {d.target!r} is {frame[d.target].dtype}")
    roles = infer_roles(frame, spec)
    return Dataset(frame, d.target, task, roles, fingerprint_frame(frame), source, name)  # type: ignore[arg-type]


@hookimpl
def load_data(spec: RunSpec, source: str, base_dir: str) -> Dataset | None:
    if "://" not in source and not source.lower().endswith(FILE_SUFFIXES):
        return None
    field = "data.target_domain" if source == spec.data.target_domain else "data.source"
    frame = read_table(source, base_dir, spec.data.query, field)
    return prepare_frame(frame, spec, source)
