"""A CSV separated by semicolons, tabs or pipes: ``assay run`` names ``data.sep``, ``assay init`` writes it.

Real data: the Adult sample (tests/conftest.py) rewritten with other separators.
"""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.errors import BadInput
from assay.kit import SEPARATORS, read_table, sniff_separator
from tests.conftest import run_assay

SPEC = """\
[project]
name = "adult-semicolons"

[data]
source = "adult.csv"
target = "income"
task = "binary"
drop = ["fnlwgt", "split"]

[split]
cv_folds = 3

[train]
candidates = ["logistic_regression"]
tuning = "none"
"""


@pytest.fixture(scope="module")
def adult_frame(adult_small: Path) -> pd.DataFrame:
    return pd.read_csv(adult_small / "adult.csv").head(1500)


def _project(directory: Path, frame: pd.DataFrame, sep: str, spec: str | None = SPEC) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_csv(directory / "adult.csv", sep=sep, index=False)
    if spec is not None:
        (directory / "assay.toml").write_text(spec, encoding="utf-8")
    return directory


@pytest.mark.parametrize(("sep", "named", "once"), [(";", 'sep = ";"', "--set 'data.sep=;'"),
                                                    ("\t", 'sep = "\\t"', "--set 'data.sep=tab'")])
def test_run_on_another_separator_names_the_file_and_data_sep_and_records_nothing(
        tmp_path: Path, adult_frame: pd.DataFrame, sep: str, named: str, once: str) -> None:
    project = _project(tmp_path / "p", adult_frame, sep)
    home = tmp_path / "home"
    result = run_assay("run", str(project / "assay.toml"), home=home)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert str(project / "adult.csv") in message and "data.source" in message
    assert SEPARATORS[sep] in message and named in message and once in message
    assert not (home / "assay.db").exists()  # the ledger is untouched

    fixed = run_assay("run", str(project / "assay.toml"), "--json", "-q", "--set", once.split()[1].strip("'"),
                      home=home)
    assert fixed.returncode in (0, 1), fixed.stderr
    assert fixed.json["status"] in ("passed", "blocked")
    assert fixed.json["metrics"]["test"]["roc_auc"] > 0.8  # the same table as with commas: a real model


def test_a_spec_giving_sep_reads_the_same_table_as_commas(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    commas = _project(tmp_path / "commas", adult_frame, ",")
    pipes = _project(tmp_path / "pipes", adult_frame, "|", SPEC.replace('task = "binary"', 'task = "binary"\nsep = "|"'))
    home = tmp_path / "home"
    runs = [run_assay("run", str(d / "assay.toml"), "--json", "-q", home=home) for d in (commas, pipes)]
    assert all(r.returncode in (0, 1) for r in runs), [r.stderr for r in runs]
    a, b = (r.json for r in runs)
    assert a["metrics"]["test"]["roc_auc"] == pytest.approx(b["metrics"]["test"]["roc_auc"], abs=1e-12)


def test_a_bad_sep_is_a_spec_error_naming_the_key(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    project = _project(tmp_path / "p", adult_frame, ";")
    result = run_assay("run", str(project / "assay.toml"), "--set", "data.sep=;;", home=tmp_path / "home")
    assert result.returncode == 2
    assert "data.sep" in result.stderr and "one separator character" in result.stderr and "Traceback" not in result.stderr


def test_init_detects_the_separator_and_writes_it_into_the_spec(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    project = _project(tmp_path / "p", adult_frame, ";", spec=None)
    home = tmp_path / "home"
    result = run_assay("init", str(project), "--target", "income", home=home)
    assert result.returncode == 0, result.stderr
    assert "separated by semicolons" in result.stdout + result.stderr
    spec = tomllib.loads((project / "assay.toml").read_text(encoding="utf-8"))
    assert spec["data"]["sep"] == ";"
    ran = run_assay("run", str(project / "assay.toml"), "--json", "-q", "--set", "train.tuning=none",
                    "--set", 'train.candidates=["logistic_regression"]', home=home)
    assert ran.returncode in (0, 1), ran.stderr


def test_a_comma_file_gets_no_sep_line(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    project = _project(tmp_path / "p", adult_frame, ",", spec=None)
    assert run_assay("init", str(project), "--target", "income", home=tmp_path / "home").returncode == 0
    assert "sep" not in tomllib.loads((project / "assay.toml").read_text(encoding="utf-8"))["data"]


# --------------------------------------------------------------------------- the parser, on any table

cells = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                  st.text(alphabet="abcxyz019 .-,;|\t\"'", min_size=1, max_size=12).map(str.strip).filter(bool))


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    n_cols = draw(st.integers(2, 6))
    n_rows = draw(st.integers(1, 15))
    names = [f"col{i}" for i in range(n_cols)]
    return pd.DataFrame({n: draw(st.lists(cells, min_size=n_rows, max_size=n_rows)) for n in names})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=tables(), sep=st.sampled_from(sorted(SEPARATORS)))
def test_any_table_reads_the_same_whatever_its_separator(tmp_path: Path, frame: pd.DataFrame, sep: str) -> None:
    path = tmp_path / "t.csv"
    frame.to_csv(path, sep=sep, index=False)
    expected = pd.read_csv(io.StringIO(frame.to_csv(index=False)), na_values=["?"], skipinitialspace=True)
    assert sniff_separator(path) == sep
    pd.testing.assert_frame_equal(read_table(str(path), "", sep=sep), expected)
    if sep != ",":
        with pytest.raises(BadInput, match=r"data\.sep") as error:
            read_table(str(path), "")
        assert str(path) in str(error.value) and SEPARATORS[sep] in str(error.value)


@settings(deadline=None)
@given(value=st.text(min_size=0, max_size=4))
def test_data_sep_takes_one_separator_character_and_refuses_anything_else(value: str) -> None:
    from pydantic import ValidationError

    from assay.kernel.spec import DataSpec

    one = len(value) == 1 and value not in "\"\r\n" and not value.isalnum()
    try:
        got = DataSpec(source="d.csv", target="y", sep=value).sep
    except ValidationError as exc:
        assert not one and value not in ("\\t", "tab")
        assert "one separator character" in str(exc)
    else:
        assert got == ("\t" if value in ("\\t", "tab") else value) and (one or value in ("\\t", "tab"))
