"""RFC 8785 (JCS) canonical JSON for ledger payloads, with explicit encodings for non-JSON numbers.

JSON has no NaN, ±Infinity or integers beyond ±(2**53 − 1) (I-JSON); RFC 8785 refuses them. The
ledger never drops or silently rounds a value, so before canonicalizing it rewrites them as
tagged objects:

* ``float('nan')``  → ``{"$float": "nan"}``, ``inf`` → ``{"$float": "inf"}``, ``-inf`` → ``{"$float": "-inf"}``
* an int outside ±(2**53 − 1) → ``{"$int": "<decimal digits>"}``

``decode_special`` turns them back. Tuples become arrays; numpy-style scalars and arrays are
converted through ``.item()`` / ``.tolist()``; ``datetime``/``date`` become ISO 8601 strings and
paths become strings. Anything else (and non-string object keys) is a ``BadInput`` naming where
in the payload it sits.

``canonical`` produces exactly the bytes of ``rfc8785.dumps`` (a property the tests check); a
fast path uses the C JSON encoder when the value has no numbers whose ECMAScript and Python
spellings differ and no keys whose UTF-16 and code-point orders could differ.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import rfc8785

from assay.audit.errors import BadInput

MAX_SAFE_INT = 2**53 - 1

_encode_fast = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


class _Walk:
    __slots__ = ("fast",)

    def __init__(self) -> None:
        self.fast = True


def _float(x: float, walk: _Walk) -> Any:
    if math.isnan(x):
        walk.fast = False
        return {"$float": "nan"}
    if math.isinf(x):
        walk.fast = False
        return {"$float": "inf" if x > 0 else "-inf"}
    ax = abs(x)
    # Python's repr and ECMAScript agree (shortest round-trip digits, fixed notation) only for
    # non-integral values in [1e-4, 1e16); everything else goes through rfc8785's formatter.
    if x.is_integer() or not 1e-4 <= ax < 1e16:
        walk.fast = False
    return x


def _prepare(value: Any, walk: _Walk, path: str) -> Any:
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        walk.fast = False
        return {"$int": str(value)}
    if t is float:
        return _float(value, walk)
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                if isinstance(k, str):
                    k = str(k)
                else:
                    raise BadInput(f"ledger payload key {k!r} at {path} is not a string")
            if not k.isascii():
                walk.fast = False
            out[k] = _prepare(v, walk, f"{path}.{k}")
        return out
    if t is list or t is tuple:
        return [_prepare(v, walk, f"{path}[{i}]") for i, v in enumerate(value)]
    # Less common types: subclasses and duck-typed numpy values.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _prepare(int(value), walk, path)
    if isinstance(value, float):
        return _float(float(value), walk)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return _prepare(dict(value), walk, path)
    if isinstance(value, list | tuple):
        return _prepare(list(value), walk, path)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return _prepare(value.tolist(), walk, path)
    if hasattr(value, "item") and callable(value.item):
        return _prepare(value.item(), walk, path)
    raise BadInput(f"ledger payload value at {path} has type {type(value).__name__}, which is not JSON")


def prepare(value: Any) -> Any:
    """The JSON value that will be canonicalized (special numbers rewritten as tagged objects)."""
    return _prepare(value, _Walk(), "$")


def _simple(v: Any) -> bool:
    """True when the C encoder's output for ``v`` is already its RFC 8785 form (no copy needed)."""
    t = type(v)
    if t is str or t is bool or v is None:
        return True
    if t is int:
        return -MAX_SAFE_INT <= v <= MAX_SAFE_INT
    if t is float:
        return not v.is_integer() and 1e-4 <= abs(v) < 1e16
    if t is dict:
        for k, x in v.items():
            if type(k) is not str or not k.isascii():
                return False
            t = type(x)
            if t is str or t is bool or x is None:
                continue
            if t is int:
                if -MAX_SAFE_INT <= x <= MAX_SAFE_INT:
                    continue
                return False
            if not _simple(x):
                return False
        return True
    if t is list or t is tuple:
        return all(_simple(x) for x in v)
    return False


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of ``value`` (after the explicit rewrites above)."""
    if _simple(value):
        try:
            return _encode_fast(value).encode("utf-8")
        except UnicodeEncodeError:
            pass
    walk = _Walk()
    prepared = _prepare(value, walk, "$")
    if walk.fast:
        try:
            return _encode_fast(prepared).encode("utf-8")
        except UnicodeEncodeError:
            pass  # lone surrogates: let rfc8785 decide
    try:
        return rfc8785.dumps(prepared)
    except rfc8785.CanonicalizationError as exc:
        raise BadInput(f"ledger payload cannot be canonicalized: {exc}") from None
    except UnicodeEncodeError:
        raise BadInput("ledger payload contains a string that is not valid Unicode (lone surrogate)") from None


def canonical_str(value: str) -> bytes:
    """Canonical encoding of one JSON string."""
    try:
        return _encode_fast(value).encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{value!r} is not valid Unicode (lone surrogate)") from None


def decode_special(value: Any) -> Any:
    """Undo the explicit encodings: ``{"$float": "nan"}`` → nan, ``{"$int": "…"}`` → int."""
    if isinstance(value, dict):
        if len(value) == 1:
            if "$float" in value and value["$float"] in ("nan", "inf", "-inf"):
                return float(value["$float"])
            if "$int" in value and isinstance(value["$int"], str):
                try:
                    return int(value["$int"])
                except ValueError:
                    pass
        return {k: decode_special(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_special(v) for v in value]
    return value
