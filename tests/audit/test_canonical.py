"""RFC 8785 canonicalization: the public JCS vectors, agreement with rfc8785, explicit NaN/∞."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.audit.canonical import canonical, decode_special
from assay.errors import BadInput
from tests.audit.public_vectors import VECTORS, case_files

JCS = VECTORS / "jcs-rfc8785" / "testdata"
CASES = [p.stem for p in case_files("jcs-rfc8785/testdata/input")]


def test_jcs_vectors_present(vectors: Path) -> None:
    assert len(CASES) == 6


@pytest.mark.parametrize("case", CASES)
def test_jcs_vectors(case: str) -> None:
    value = json.loads((JCS / "input" / f"{case}.json").read_text(encoding="utf-8"))
    expected = (JCS / "output" / f"{case}.json").read_bytes()
    assert canonical(value) == expected
    hexed = "".join((JCS / "outhex" / f"{case}.txt").read_text().split())
    assert canonical(value).hex() == hexed.lower()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_matches_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except UnicodeEncodeError:
        with pytest.raises(BadInput):
            canonical(value)
        return
    assert canonical(value) == expected


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (float("nan"), {"$float": "nan"}),
        (float("inf"), {"$float": "inf"}),
        (float("-inf"), {"$float": "-inf"}),
        (2**64, {"$int": str(2**64)}),
        (-(2**60), {"$int": str(-(2**60))}),
    ],
)
def test_non_json_numbers_are_explicit(value: float, encoded: dict[str, str]) -> None:
    out = canonical({"v": value})
    assert json.loads(out) == {"v": encoded}
    back = decode_special(json.loads(out))["v"]
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_other_types() -> None:
    assert canonical({"t": (1, 2.5), "b": True, "n": None}) == b'{"b":true,"n":null,"t":[1,2.5]}'
    assert canonical({"x": 1.0, "y": -0.0, "z": 1e21, "w": 1e-7}) == b'{"w":1e-7,"x":1,"y":0,"z":1e+21}'
    with pytest.raises(BadInput, match=r"\$\.a\[0\]"):
        canonical({"a": [object()]})
    with pytest.raises(BadInput, match="not a string"):
        canonical({1: "x"})
