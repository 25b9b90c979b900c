"""A production batch, read and checked against the training run's schema (``assay monitor``).

What the model cannot score is a :class:`~assay.errors.BadInput` (exit 2) naming the column and
the fix: a missing feature (with the likely renamed column), a column whose values do not fit
the training dtype, a missing target with ``--labels``. What it can score but did not see in
training is a finding instead: new categories and missing sensitive columns become the
``schema`` evidence and its checks. Columns are brought to the training dtypes
(:func:`conform_column`) so the model reads the batch as it read its training data.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from assay.errors import BadInput
from assay.kernel.types import Check

if TYPE_CHECKING:
    import pandas as pd

BATCH_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
SHOWN_VALUES = 20  # new categories listed per column


def read_batch(path: str) -> pd.DataFrame:
    """Read the batch file (CSV or Parquet)."""
    from assay.kit import read_table

    if not path.lower().endswith(BATCH_SUFFIXES):
        raise BadInput(f"--current {path}: expected a .csv or .parquet file")
    frame = read_table(path, "", field="--current")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _examples(values: Sequence[Any], n: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:n])


def _parse_number(value: Any) -> Any:
    """A number from a cell (Python's correctly rounded parser), or None."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, (int, float)):
        return None if value != value else value
    text = str(value).strip()
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def conform_column(series: pd.Series, expected: str, column: str, where: str) -> tuple[pd.Series, str]:
    """Bring a batch column to its training dtype; BadInput when the values do not fit.

    Returns the converted column and a note when a conversion happened ('' otherwise).
    Text categories accept numbers (the model reads categories as text anyway).
    """
    import numpy as np
    import pandas as pd

    try:
        want = pd.api.types.pandas_dtype(expected)
    except TypeError:
        return series, ""
    s = series
    is_num = pd.api.types.is_numeric_dtype
    is_bool = pd.api.types.is_bool_dtype

    def wrong(kind: str, bad: pd.Series) -> BadInput:
        values = bad.dropna().unique()
        return BadInput(f"{where}: column {column!r} has the wrong type: training saw {kind} ({expected}), the batch "
                        f"has {s.dtype} with {int(bad.notna().sum())} value(s) that are not, e.g. {_examples(values)}; "
                        f"fix the column or its export")

    if is_bool(want):
        if is_bool(s.dtype):
            return s, ""
        text = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v).strip().lower())
        mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
        converted = text.map(lambda v: mapping.get(v) if v is not None else None)
        bad = s[text.notna() & converted.isna()]
        if len(bad):
            raise wrong("true/false values", bad)
        return converted.astype(object), f"converted from {s.dtype} to booleans"
    if is_num(want):
        if is_num(s.dtype) and not is_bool(s.dtype):
            return s, ""
        if is_bool(s.dtype):
            return s.astype(float), "converted from booleans to numbers"
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            raise wrong("numbers", s.astype(str))
        parsed = s.astype(object).map(_parse_number)
        bad = s[s.notna() & parsed.isna()]
        converted = pd.to_numeric(parsed)
        if len(bad):
            raise wrong("numbers", bad)
        return converted, f"converted from {s.dtype} to numbers"
    if pd.api.types.is_datetime64_any_dtype(want):
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            return s, ""
        try:
            converted = pd.to_datetime(s, errors="coerce")
        except (TypeError, ValueError):
            converted = pd.Series(pd.NaT, index=s.index)
        bad = s[s.notna() & converted.isna()]
        if len(bad):
            raise wrong("dates/times", bad)
        return converted, f"converted from {s.dtype} to dates/times"
    # text categories
    if s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype):
        return s, ""
    if pd.api.types.is_float_dtype(s.dtype):
        values = s.to_numpy()
        finite = values[~np.isnan(values)]
        if len(finite) and np.all(np.mod(finite, 1) == 0):
            s = s.astype("Int64")
    return s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v)), \
        f"converted from {series.dtype} to text categories"


def validate_batch(current: pd.DataFrame, info: Mapping[str, Any], *, labels: bool, source: str,
                   run_id: str) -> tuple[pd.DataFrame, dict[str, Any], list[Check]]:
    """Check the batch against the training schema: exit 2 for what the model cannot score.

    Returns the batch restricted to the stored columns (target only with ``labels``) and
    converted to the training dtypes, the ``schema`` evidence and its checks.
    """
    from assay.kernel.artifacts import category_text

    roles: Mapping[str, str] = info["roles"]
    features: list[str] = list(info["features"])
    target: str = info["target"]
    dtypes: Mapping[str, str] = info.get("dtypes", {})
    where = f"--current {source}"
    if not len(current):
        raise BadInput(f"{where}: the batch has no rows")
    missing = [c for c in features if c not in current.columns]
    if missing:
        near = difflib.get_close_matches(missing[0], [c for c in current.columns if c not in roles], n=1)
        hint = f" (the batch has {near[0]!r}: renamed?)" if near else ""
        listed = ", ".join(repr(c) for c in missing)
        raise BadInput(f"{where}: missing column{'s' * (len(missing) > 1)} {listed}{hint}; the model of run {run_id} "
                       f"needs every feature it was trained on: {', '.join(features)}")
    if labels and target not in current.columns:
        raise BadInput(f"{where}: --labels needs the target column {target!r}, which the batch does not have "
                       "(drop --labels to monitor an unlabelled batch)")
    sensitive = [c for c in roles if roles[c] == "sensitive"]
    present_sensitive = [c for c in sensitive if c in current.columns]
    keep = features + present_sensitive + ([target] if labels else [])
    frame = current[keep].copy()
    coerced: dict[str, str] = {}
    for col in keep:
        if col in dtypes:
            frame[col], note = conform_column(frame[col], dtypes[col], col, where)
            if note:
                coerced[col] = note
    if labels and frame[target].dtype == object:  # as the loader cleans labels at training time
        frame[target] = frame[target].map(lambda v: v.strip().rstrip(".") if isinstance(v, str) else v)
    new_categories: dict[str, Any] = {}
    categories: Mapping[str, Sequence[str] | None] = info.get("categories", {})
    for col in [*features, *present_sensitive, *([target] if labels else [])]:
        seen = categories.get(col)
        if seen is None:
            continue
        values = frame[col].dropna()
        known = set(seen)
        unseen = [v for v in values.unique() if category_text(v) not in known]
        if unseen:
            counts = values[values.isin(unseen)].value_counts()
            new_categories[col] = {"values": [category_text(v) for v in counts.index[:SHOWN_VALUES]],
                                   "distinct": len(counts), "rows": int(counts.sum()),
                                   "share": float(counts.sum() / len(frame))}
    schema: dict[str, Any] = {
        "columns": len(current.columns),
        "missing_columns": [c for c in sensitive if c not in current.columns],
        "extra_columns": sorted(c for c in current.columns if c not in roles),
        "coerced": coerced,
        "new_categories": new_categories,
    }
    checks = [
        Check("schema", "new_categories", "warn" if new_categories else "pass", len(new_categories),
              {c: v["values"] for c, v in new_categories.items()},
              ("new categories in " + ", ".join(f"{c} ({v['distinct']})" for c, v in new_categories.items()))
              if new_categories else "no category unseen in training"),
        Check("schema", "sensitive_columns", "warn" if schema["missing_columns"] else "pass",
              len(schema["missing_columns"]), {"missing": schema["missing_columns"]},
              ("fairness is not measured without " + ", ".join(schema["missing_columns"]))
              if schema["missing_columns"] else "every sensitive column is present"),
    ]
    return frame, schema, checks
