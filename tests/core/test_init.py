"""``assay init`` scaffolds a spec that runs as written."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from tests.conftest import run_assay


def test_init_scaffolds_a_working_spec(tmp_path: Path, adult_small: Path) -> None:
    project = tmp_path / "credit"
    project.mkdir()
    shutil.copy(adult_small / "adult.csv", project / "adult.csv")
    home = tmp_path / "home"
    result = run_assay("init", str(project), "--target", "income", home=home)
    assert result.returncode == 0, result.stderr
    spec = tomllib.loads((project / "assay.toml").read_text())
    assert spec["data"]["source"] == "adult.csv"
    assert spec["data"]["task"] == "binary"
    assert spec["data"]["sensitive"] == ["race", "sex", "native_country", "marital_status"] or \
        set(spec["data"]["sensitive"]) >= {"race", "sex"}
    assert (project / "policy.toml").exists()

    again = run_assay("init", str(project), home=home)
    assert again.returncode == 2 and "--force" in again.stderr

    # no budget written: the run scales it to the training rows (3,200 here: 3 settings per family)
    assert "budget" not in spec["train"] and spec["train"]["tuning"] == "halving_random"
    assert "set budget = N" in (project / "assay.toml").read_text()
    ran = run_assay("run", str(project / "assay.toml"), "--json", "-q",
                    "--set", 'train.candidates=["logistic_regression"]', home=home)
    assert ran.returncode in (0, 1), ran.stderr
    assert ran.json["status"] in ("passed", "blocked")
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    evidence = RunStore(Settings.resolve(home)).get_run(ran.json["run_id"]).evidence or {}
    used = evidence["model"]["search"]["settings"]["budget"]
    assert used["source"] == "auto" and used["value"] == 3 and "3,200 training rows" in used["reason"]


def test_init_without_data_is_a_clear_error(tmp_path: Path) -> None:
    result = run_assay("init", str(tmp_path / "empty"), home=tmp_path / "home")
    assert result.returncode == 2
    assert "--data" in result.stderr
