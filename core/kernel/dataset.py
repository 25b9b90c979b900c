"""Tables as assay sees them: column roles and content fingerprints.

The fingerprint hashes values, not files: the same table read from CSV or Parquet, or
with its columns in another order, has the same fingerprint. Each column is hashed from
a canonical byte form (little-endian int64/float64 with one NaN pattern, Arrow UTF-8
buffers for text) and the per-column digests are combined in column-name order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay.kernel.spec import RunSpec
    from assay.kernel.types import Role


# Below this many text cells the thread hand-off costs more than it saves.
_THREAD_MIN_CELLS = 200_000
_SEP, _ESC = "\x00", "\x01"
_NAN_BITS = 0x7FF8000000000000  # the one NaN pattern hashed


def _hash_numbers(h: hashlib._Hash, values: np.ndarray) -> None:
    """Feed float64 LE values to ``h``, with -0.0 as 0.0 and NaN as one bit pattern.

    Columns already canonical (the usual case) are hashed in place, without a copy.
    """
    import numpy as np

    v = np.ascontiguousarray(values, dtype="<f8")
    nan = np.isnan(v)
    dirty = (v == 0) & np.signbit(v)
    if nan.any():
        dirty |= nan & (v.view("<u8") != _NAN_BITS)
    if dirty.any():
        v = v.copy()
        v[nan] = np.nan
        v[v == 0] = 0.0
    h.update(v.data)


def _text_body(series: pd.Series) -> tuple[Any, ...]:
    """A text column's canonical parts (the slow, GIL-bound part of fingerprinting).

    Without missing values: ``(b"\\x00", UTF-8 of the values joined by NUL)``; values holding
    NUL or 0x01 are escaped (0x01 → 0x01 0x01, NUL → 0x01 0x02) so the join stays
    injective, and the fast path only verifies that none needed it. With missing values:
    the Arrow large-UTF-8 form, ``(b"\\x01", null mask, int64 byte lengths, UTF-8 data)``.
    Values that are not strings count by their ``str()``. Joining Python strings is
    about twice as fast as building an Arrow array; Arrow finds the nulls for free.
    """
    import numpy as np
    import pyarrow as pa

    values = series.to_numpy(dtype=object)
    items = values.tolist()
    try:
        body = _SEP.join(items)
    except TypeError:  # missing values, or values that are not text
        try:
            arr = pa.array(values, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            import pandas as pd

            arr = pa.array([None if pd.isna(v) else str(v) for v in items], type=pa.large_string())
        if not arr.null_count:
            return _joined(arr.to_pylist())
        _, offsets, data = arr.buffers()
        bounds = np.frombuffer(offsets, dtype="<i8", count=len(arr) + 1)
        mask = np.asarray(arr.is_null()).view(np.uint8)
        payload = memoryview(data)[int(bounds[0]):int(bounds[-1])] if data is not None else b""
        return b"\x01", mask, np.diff(bounds).astype("<i8", copy=False), payload  # buffers, hashed in place
    return _joined(items, body)


def _joined(items: list[str], body: str | None = None) -> tuple[bytes, ...]:
    import numpy as np

    if body is None:
        body = _SEP.join(items)
    encoded = body.encode("utf-8", "surrogatepass")
    separators = int(np.count_nonzero(np.frombuffer(encoded, dtype=np.uint8) == 0))
    if _ESC in body or separators != max(len(items) - 1, 0):
        encoded = _SEP.join(v.replace(_ESC, _ESC + _ESC).replace(_SEP, _ESC + "\x02") for v in items
                            ).encode("utf-8", "surrogatepass")
    return b"\x00", encoded


def _kind(series: pd.Series) -> str:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "s" if not pd.api.types.is_numeric_dtype(dtype.categories.dtype) else "n"
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "n"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "t"
    return "s"


def _column_digest(name: str, series: pd.Series) -> bytes:
    """SHA-256 of one column's name, kind tag and canonical values."""
    import numpy as np
    import pandas as pd

    kind = _kind(series)
    h = hashlib.sha256(name.encode("utf-8", "surrogatepass") + b"\x00" + kind.encode())
    if kind == "n":
        if pd.api.types.is_float_dtype(series.dtype) and isinstance(series.dtype, np.dtype):
            values = series.to_numpy()
        else:  # bool / int / nullable / numeric categorical -> float64
            values = series.to_numpy(dtype="<f8", na_value=np.nan)
        _hash_numbers(h, values)
    elif kind == "t":
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        h.update(np.ascontiguousarray(series.to_numpy(dtype="datetime64[ns]")).view("<i8").data)
    else:
        for part in _text_body(series):
            h.update(part)
    return h.digest()


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """``sha256:HEX`` over the table's content, independent of column order and file format.

    Canonical form, per column (sorted by name): ``SHA-256(name NUL kind values)`` with kind
    ``n`` (bool/int/float as float64 LE, -0.0 → 0.0, one NaN pattern), ``t`` (datetime as
    int64 ns UTC, NaT = int64 min) or ``s`` (anything else as text, see :func:`_text_body`). The outer digest covers a
    version tag, the row count and the column digests in name order.

    Turning Python strings into bytes holds the GIL; numpy and hashlib do not. On large
    frames a worker thread digests the text columns while this thread hashes the numeric ones.
    """
    names = sorted(map(str, frame.columns))
    if len(set(names)) != len(names):
        raise ValueError("fingerprint_frame: duplicate column names")
    columns = {str(c): frame[c] for c in frame.columns}
    text = [n for n in names if _kind(columns[n]) == "s"]
    digests: dict[str, bytes] = {}
    if text and len(text) < len(names) and len(frame) * len(text) >= _THREAD_MIN_CELLS:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-fingerprint") as pool:
            pending = {n: pool.submit(_column_digest, n, columns[n]) for n in text}
            for n in names:
                if n not in pending:
                    digests[n] = _column_digest(n, columns[n])
            digests.update((n, f.result()) for n, f in pending.items())
    else:
        digests = {n: _column_digest(n, columns[n]) for n in names}
    outer = hashlib.sha256(b"assay.kernel.dataset.v2\x00")
    outer.update(len(frame).to_bytes(8, "little"))
    for n in names:
        outer.update(digests[n])
    return "sha256:" + outer.hexdigest()


def rows_digest(positions: np.ndarray) -> str:
    """``sha256:HEX`` of the sorted row positions (int64 LE): which rows, not their content."""
    import numpy as np

    return "sha256:" + hashlib.sha256(np.sort(np.asarray(positions, dtype="<i8")).data).hexdigest()


# A column whose name looks like an identifier (``id``, ``user_id``, ``id_user``, ``uuid``).
_ID_NAME = re.compile(r"(?:^|_)(?:id|uuid|guid)(?:$|_)", re.IGNORECASE)


def guess_role(series: pd.Series, name: str = "") -> Role:
    """The role a column's values suggest when the spec says nothing about it.

    bool / category → categorical; numbers → numeric (unless the name says identifier and
    every value is distinct); datetimes → datetime; strings → text when long and mostly
    distinct (free text), id when short and all distinct (keys, hashes), else categorical.
    """
    import pandas as pd

    dtype = series.dtype
    n = len(series)
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        distinct = n >= 20 and pd.api.types.is_integer_dtype(dtype) and series.is_unique
        return "id" if distinct and _ID_NAME.search(name) else "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    values = series.dropna()
    if values.empty:
        return "categorical"
    nunique = values.nunique()
    mean_len = float(values.astype(str).str.len().mean())
    if mean_len > 40 and nunique > 0.5 * len(values):
        return "text"
    if n >= 20 and nunique == len(values) == n:
        return "id"
    return "categorical"


def infer_roles(frame: pd.DataFrame, spec: RunSpec) -> dict[str, Role]:
    """Assign every column one role: the spec's word first, then what its values suggest.

    Precedence: target; ``data.roles`` overrides; ``drop``; ``id_column``; ``group_column``;
    ``sensitive`` (unless also listed in ``features``); ``text_column``; ``time_column``;
    columns not in a non-empty ``features`` list are dropped; the rest by :func:`guess_role`.
    """
    import pandas as pd

    d = spec.data
    roles: dict[str, Role] = {}
    listed = set(d.features)
    for col in frame.columns:
        name = str(col)
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
            role = "numeric" if pd.api.types.is_numeric_dtype(frame[col].dtype) else "datetime"
        elif listed and name not in listed:
            role = "drop"
        else:
            role = guess_role(frame[col], name)
        roles[name] = role
    return roles


def summarize(frame: pd.DataFrame, roles: Mapping[str, str], target: str) -> dict[str, object]:
    """Schema, missing values and label distribution, for the evidence."""
    from assay.kernel.types import to_jsonable

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
