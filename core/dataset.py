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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay.spec import RunSpec
    from assay.types import Role


# Values hashed per numeric chunk: small enough to stay in cache, large enough that hashlib
# releases the GIL (it does for updates above 2 KiB) and per-chunk overhead is negligible.
_CHUNK = 1 << 16
# Below this many text cells the thread hand-off costs more than it saves.
_THREAD_MIN_CELLS = 200_000
_SEP, _ESC = "\x00", "\x01"


def _hash_numbers(h: hashlib._Hash, values: np.ndarray) -> None:
    """Feed float64 LE values to ``h`` chunk by chunk, with -0.0 as 0.0 and one NaN pattern."""
    import numpy as np

    for start in range(0, len(values), _CHUNK):
        chunk = np.asarray(values[start:start + _CHUNK], dtype="<f8") + 0.0  # a copy; -0.0 -> 0.0
        nan = np.isnan(chunk)
        if nan.any():
            chunk[nan] = np.nan
        h.update(chunk.data)


def _text_body(series: pd.Series) -> tuple[np.ndarray | None, bytes]:
    """A text column as (null mask or None, UTF-8 of the values joined by NUL).

    Nulls become empty strings (the mask tells them apart); values that are not strings
    are compared by ``str()``. Values containing NUL or 0x01 are escaped (0x01 → 0x01 0x01,
    NUL → 0x01 0x02) so the joined form stays injective; the fast path only verifies that
    no value needed escaping. Joining Python strings is ~2x faster than building an Arrow
    array from them, and this is the slow, GIL-bound part of fingerprinting.
    """
    import numpy as np
    import pandas as pd

    values = series.to_numpy(dtype=object)
    mask: np.ndarray | None = None
    items = values.tolist()
    try:
        body = _SEP.join(items)
    except TypeError:  # nulls or non-text values
        mask = np.asarray(pd.isna(values), dtype=bool)
        if mask.any():
            values = values.copy()
            values[mask] = ""
        else:
            mask = None
        items = values.tolist()
        try:
            body = _SEP.join(items)
        except TypeError:  # numbers, bytes, ... among the text
            items = [v if isinstance(v, str) else str(v) for v in items]
            body = _SEP.join(items)
    if _ESC in body or body.count(_SEP) != max(len(items) - 1, 0):
        body = _SEP.join(v.replace(_ESC, _ESC + _ESC).replace(_SEP, _ESC + "\x02") for v in items)
    return mask, body.encode("utf-8", "surrogatepass")


def _hash_text(h: hashlib._Hash, mask: np.ndarray | None, body: bytes) -> None:
    import numpy as np

    if mask is None:
        h.update(b"\x00")
    else:
        h.update(b"\x01")
        h.update(mask.view(np.uint8).data)
    h.update(body)


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


def _column_digest(name: str, series: pd.Series, text: tuple[np.ndarray | None, bytes] | None = None) -> bytes:
    """SHA-256 of one column's name, kind tag and canonical values (``text``: its text body)."""
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
        _hash_text(h, *(text if text is not None else _text_body(series)))
    return h.digest()


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """``sha256:HEX`` over the table's content, independent of column order and file format.

    Canonical form, per column (sorted by name): ``SHA-256(name NUL kind values)`` with kind
    ``n`` (bool/int/float as float64 LE, -0.0 → 0.0, one NaN pattern), ``t`` (datetime as
    int64 ns UTC, NaT = int64 min) or ``s`` (anything else as text: a null flag and mask,
    then the UTF-8 values joined by NUL, see :func:`_text_body`). The outer digest covers a
    version tag, the row count and the column digests in name order.

    Turning Python strings into bytes holds the GIL; numpy and hashlib do not. On large
    frames a worker thread builds the text bodies while this thread hashes the numeric
    columns, then hashes the text bodies.
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
            bodies = {n: pool.submit(_text_body, columns[n]) for n in text}
            for n in names:
                if n not in bodies:
                    digests[n] = _column_digest(n, columns[n])
            for n in text:
                digests[n] = _column_digest(n, columns[n], bodies[n].result())
    else:
        digests = {n: _column_digest(n, columns[n]) for n in names}
    outer = hashlib.sha256(b"assay.dataset.v2\x00")
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
