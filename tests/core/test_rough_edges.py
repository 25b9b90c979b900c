"""A newcomer's rough edges, through the real command line: each mistake is exit 2 with a message that says
what to do; replay leaves the registry alone and keeps environment noise to one line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.checks import datasets as ds
from tests.conftest import EXAMPLES, run_assay


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ds.write(tmp_path_factory.mktemp("edges"), ds.adult_fair(1200), ds.adult_spec("edges")).parent


# --------------------------------------------------------------------------- spec


def test_a_spec_with_several_errors_lists_every_one(project: Path, tmp_path: Path) -> None:
    result = run_assay("run", str(project / "assay.toml"), "--set", "split.test_size=2", "--set", "split.cv_folds=1",
                       "--set", "data.targt=income", home=tmp_path / "home")
    assert result.returncode == 2
    assert "3 problems: (1) " in result.stderr and "more problem" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one message, every problem in it"
    for named in ("split.test_size", "split.cv_folds", "did you mean 'data.target'"):
        assert named in result.stderr


def test_a_string_where_a_list_belongs_shows_the_list(project: Path, tmp_path: Path) -> None:
    result = run_assay("run", str(project / "assay.toml"), "--set", "data.sensitive=sex", home=tmp_path / "home")
    assert result.returncode == 2
    assert """--set 'data.sensitive=["sex"]'""" in result.stderr
    spec = project.parent / "in-file"
    spec.mkdir(exist_ok=True)
    (spec / "assay.toml").write_text((project / "assay.toml").read_text().replace('sensitive = ["sex"]',
                                                                                 'sensitive = "sex, race"'))
    in_file = run_assay("run", str(spec / "assay.toml"), home=tmp_path / "home")
    assert in_file.returncode == 2 and 'sensitive = ["sex", "race"]' in in_file.stderr


# --------------------------------------------------------------------------- init


def test_init_reads_a_semicolon_file_and_writes_its_separator_into_the_spec(tmp_path: Path) -> None:
    folder = tmp_path / "semi"
    folder.mkdir()
    ds.adult_fair(300).to_csv(folder / "data.csv", sep=";", index=False)
    result = run_assay("init", str(folder), "--data", str(folder / "data.csv"), "--target", "income",
                       home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "separated by semicolons" in result.stdout + result.stderr
    assert 'sep = ";"' in (folder / "assay.toml").read_text()


def test_init_asks_for_the_target_when_the_last_column_is_a_count(tmp_path: Path) -> None:
    folder = tmp_path / "count"
    folder.mkdir()
    frame = ds.adult_fair(400).drop(columns=["split"])
    frame["children"] = np.random.default_rng(0).integers(0, 6, len(frame))
    frame.to_csv(folder / "people.csv", index=False)
    result = run_assay("init", str(folder), home=tmp_path / "home")  # stdin is not a terminal: no prompt
    assert result.returncode == 2
    assert "'children'" in result.stderr and "like a count" in result.stderr and "--target" in result.stderr
    assert "'income' looks like a label" in result.stderr
    assert not (folder / "assay.toml").exists()
    chosen = run_assay("init", str(folder), "--target", "income", home=tmp_path / "home")
    assert chosen.returncode == 0, chosen.stderr
    assert 'target = "income"' in (folder / "assay.toml").read_text()


def test_init_does_not_take_a_bookkeeping_last_column_for_the_label(tmp_path: Path) -> None:
    folder = tmp_path / "adult"
    folder.mkdir()
    shutil.copy(EXAMPLES / "adult" / "data" / "adult.csv", folder / "adult.csv")  # its last column is "split"
    result = run_assay("init", str(folder), home=tmp_path / "home")
    assert result.returncode == 2
    assert "'split'" in result.stderr and "'income' looks like a label" in result.stderr


def test_init_with_a_target_over_an_existing_spec_says_how_to_proceed(project: Path, tmp_path: Path) -> None:
    result = run_assay("init", str(project), "--target", "sex", home=tmp_path / "home")
    assert result.returncode == 2
    assert "set data.target = 'sex'" in result.stderr
    assert "--set data.target=sex" in result.stderr and "--force" in result.stderr


def test_init_keeps_a_good_last_column(tmp_path: Path) -> None:
    folder = tmp_path / "flights"
    folder.mkdir()
    pd.read_csv(EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv", nrows=300).to_csv(folder / "f.csv",
                                                                                           index=False)
    result = run_assay("init", str(folder), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert 'target = "is_delayed"' in (folder / "assay.toml").read_text()


# --------------------------------------------------------------------------- replay


def test_replay_registers_no_version_and_summarises_the_environment(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    original = run_assay("run", str(project / "assay.toml"), "--json", "-q", home=home, env=threads)
    assert original.returncode in (0, 1), original.stderr
    run_id = original.json["run_id"]
    before = run_assay("models", "list", "--json", home=home).json["models"]
    # the same computation under other reproducibility variables: five differences, the same results
    other = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "PYTHONHASHSEED": "3",
             "NUMEXPR_NUM_THREADS": "1", "BLIS_NUM_THREADS": "1"}
    env = {k: v for k, v in os.environ.items() if k not in other} | other
    replayed = run_assay("replay", run_id, home=home, env=env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.startswith(f"replay of {run_id}: reproduced")
    notes = [line for line in replayed.stdout.splitlines() if "environment" in line]
    assert len(notes) == 1, replayed.stdout
    assert "5 differences:" in notes[0] and "2 more (-v lists them)" in notes[0], notes[0]
    after = run_assay("models", "list", "--json", home=home).json["models"]
    assert after == before, "a replay retrains a version, it does not register one"

    verbose = run_assay("replay", run_id, "-v", home=home, env=env)
    assert verbose.returncode == 0, verbose.stderr
    listed = verbose.stdout.split("environment differences:")[1].splitlines()
    assert {line.split(":")[0].strip() for line in listed if line.strip()} == {
        f"variables.{name}" for name in other if name != "OMP_NUM_THREADS"}
    assert run_assay("models", "list", "--json", home=home).json["models"] == before
