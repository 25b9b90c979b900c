"""Tables as assay sees them: column roles and content fingerprints.

The fingerprint hashes values, not files: the same table read from CSV or Parquet, or
with its columns in another order, has the same fingerprint. Each column is hashed from
a canonical byte form (little-endian int64/float64 with one NaN pattern, Arrow UTF-8
buffers for text) and the per-column digests are combined in column-name order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from assay.spec import RunSpec
    from assay.types import Role


def _column_bytes(series: pd.Series) -> list[bytes | memoryview]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    s = series
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return [b"b", s.to_numpy(dtype=np.uint8).tobytes()]
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return [b"n", s.to_numpy(dtype="<f8").tobytes()]
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        values = s.to_numpy(dtype="<f8", na_value=np.nan)
        values = np.where(np.isnan(values), np.nan, values)  # one NaN bit pattern
        values = values + 0.0  # -0.0 -> 0.0
        return [b"n", values.tobytes()]
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        values = s.dt.tz_convert("UTC") if getattr(s.dt, "tz", None) is not None else s
        return [b"t", values.to_numpy(dtype="datetime64[ns]").view("<i8").tobytes()]
    arr = pa.array(s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v)),
                   type=pa.large_string())
    parts: list[bytes | memoryview] = [b"s"]
    validity = arr.buffers()[0]
    if validity is not None:
        parts.append(np.asarray(arr.is_null()).astype(np.uint8).tobytes())
    parts.append(memoryview(arr.buffers()[1]))
    parts.append(memoryview(arr.buffers()[2]) if arr.buffers()[2] is not None else b"")
    return parts


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """``sha256:HEX`` over the table's content, independent of column order and file format."""
    outer = hashlib.sha256(b"assay.dataset.v1\x00")
    outer.update(len(frame).to_bytes(8, "little"))
    for name in sorted(map(str, frame.columns)):
        inner = hashlib.sha256(name.encode() + b"\x00")
        for chunk in _column_bytes(frame[name]):
            inner.update(chunk)
        outer.update(inner.digest())
    return "sha256:" + outer.hexdigest()


def infer_roles(frame: pd.DataFrame, spec: RunSpec) -> dict[str, Role]:
    """Assign every column a role from the spec, falling back to its dtype and cardinality."""
    import pandas as pd

    d = spec.data
    roles: dict[str, Role] = {}
    listed = set(d.features)
    for col in frame.columns:
        name = str(col)
        s = frame[col]
        role: Role
        if name == d.target:
            role = "target"
        elif name in d.roles:
            role = d.roles[name]
        elif name in d.drop:
            role = "drop"
        elif name == d.id_column:
            role = "id"
        elif name == d.group_column:
            role = "group"
        elif name in d.sensitive and name not in listed:
            role = "sensitive"
        elif name == d.text_column:
            role = "text"
        elif name == d.time_column:
            role = "datetime"
        elif listed and name not in listed:
            role = "drop"
        elif pd.api.types.is_bool_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype):
            role = "categorical"
        elif pd.api.types.is_numeric_dtype(s.dtype):
            role = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            role = "datetime"
        else:
            nunique = s.nunique(dropna=True)
            mean_len = s.dropna().astype(str).str.len().mean() if nunique else 0.0
            role = "text" if (mean_len or 0) > 40 and nunique > 0.5 * max(len(s), 1) else "categorical"
        roles[name] = role
    return roles


def summarize(frame: pd.DataFrame, roles: Mapping[str, str], target: str) -> dict[str, object]:
    """Schema, missing values and label distribution, for the evidence."""
    from assay.types import to_jsonable

    y = frame[target]
    labels: dict[str, float]
    if roles.get(target) == "target" and (y.dtype == object or y.nunique() <= 50):
        labels = {str(k): int(v) for k, v in y.value_counts(dropna=False).items()}
    else:
        labels = {"mean": float(y.mean()), "std": float(y.std()), "min": float(y.min()), "max": float(y.max())}
    missing = {str(c): int(n) for c, n in frame.isna().sum().items() if n}
    return to_jsonable({
        "rows": len(frame),
        "columns": {str(c): roles.get(str(c), "drop") for c in frame.columns},
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "missing": missing,
        "labels": labels,
    })
