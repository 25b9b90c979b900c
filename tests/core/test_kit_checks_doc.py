"""docs/checks.md is real: its check plugin runs through the harness and in an installed ``assay run``.

The code and the policy on the page are extracted and executed as written, on the travel-mode
ranking example with one column added that looks like a booking reference (96 % distinct).
"""

from __future__ import annotations

import json
import re
import shutil
import types
from pathlib import Path

import pandas as pd
import pytest

from assay import Check
from assay.testing import by_name, check_plugin, prepare, run_hook
from tests.conftest import EXAMPLES, ROOT, run_assay
from tests.training.conftest import install_plugin

DOC = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")


def block(language: str, containing: str) -> str:
    return next(b for b in re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S) if containing in b)


def example_module() -> types.ModuleType:
    module = types.ModuleType("example_checks")
    exec(compile(block("python", "def validate_data"), "docs/checks.md", "exec"), module.__dict__)
    return module


@pytest.fixture
def travel(tmp_path: Path) -> Path:
    """The travel example, with a near-unique text column a model could memorise."""
    project = tmp_path / "travel"
    shutil.copytree(EXAMPLES / "travel_mode_choice", project, ignore=shutil.ignore_patterns(".assay"))
    csv = project / "data" / "travel_mode_choice.csv"
    frame = pd.read_csv(csv)
    frame["booking_ref"] = [f"BK{(i if i % 25 else i + 1):05d}" for i in range(len(frame))]
    frame.to_csv(csv, index=False)
    return project


def test_the_documented_check_runs_through_the_harness(travel: Path, tmp_path: Path) -> None:
    example = example_module()
    prepared = prepare(travel / "assay.toml", ["train.budget=1"], home=tmp_path / "home")
    checks = by_name(run_hook(example, "validate_data", prepared))
    flagged = checks["id_like_columns"]
    assert (flagged.group, flagged.status, flagged.value) == ("example", "warn", 1)
    assert flagged.detail["columns"] == ["booking_ref"]
    assert flagged.detail["distinct"] == {"booking_ref": 806} and flagged.detail["rows"] == 840
    assert "data.drop" in flagged.message
    model = prepared.fit(["pairwise_logistic"])
    (varied,) = run_hook(example, "evaluate", prepared, model)
    assert varied.name == "constant_predictions" and varied.status == "pass" and varied.value > 100
    results = check_plugin(example, prepared, model)
    assert [r.name for r in results] == ["check_validate_data_results", "check_evaluate_results"]
    assert all(r.passed for r in results)
    # dropping the column, as the message says, clears the warning
    dropped = prepare(travel / "assay.toml", ["data.drop=['terminal_wait_min', 'booking_ref']"],
                      home=tmp_path / "home")
    assert by_name(run_hook(example, "validate_data", dropped))["id_like_columns"].status == "pass"


def test_the_documented_kit_helpers_fix_and_fail_closed(travel: Path, tmp_path: Path) -> None:
    module = types.ModuleType("kit_helpers_example")
    exec(compile(block("python", "from assay.kit import run_checks"), "docs/checks.md", "exec"), module.__dict__)
    prepared = prepare(travel / "assay.toml", ["train.budget=1"], home=tmp_path / "home")
    (few,) = run_hook(module, "validate_data", prepared)
    assert (few.group, few.name, few.status, few.value) == ("example", "enough_rows", "warn", 840)
    assert few.detail == {"minimum": 1000, "fix": "train on at least 1000 rows: add rows to data.source"}
    module.MIN_ROWS = 500
    (enough,) = run_hook(module, "validate_data", prepared)
    assert enough.status == "pass" and "fix" not in enough.detail

    def broken(dataset: object) -> list[Check]:
        raise KeyError("rows")

    module.enough_rows = broken  # a check that raises is an error check, never a missing one
    (failed,) = run_hook(module, "validate_data", prepared)
    assert (failed.name, failed.status, failed.value) == ("enough_rows", "error", None)
    assert failed.detail["error"] == "KeyError: 'rows'" and "test_kit_checks_doc.py" in failed.detail["at"]


def test_the_documented_check_gates_an_installed_run(travel: Path, tmp_path: Path) -> None:
    env = install_plugin(tmp_path / "site", "example_checks", block("python", "def validate_data"))
    (travel / "policy.toml").write_text(block("toml", "extends"), encoding="utf-8")
    listed = run_assay("plugins", "--json", home=tmp_path / "home", env=env)
    plugin = next(p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "example_checks")
    assert (plugin["version"], plugin["status"], plugin["hooks"]) == ("0.1.0", "loaded", ["evaluate", "validate_data"])
    result = run_assay("run", str(travel / "assay.toml"), "--json", "-q", "--set", "gate.policy='policy.toml'",
                       "--set", "train.budget=1", "--set", "train.candidates=['pairwise_logistic']",
                       home=tmp_path / "home", env={"OMP_NUM_THREADS": "1", **env})
    assert result.returncode in (0, 1), result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["verdict"]["policy"] == "standard-with-example"
    rules = {r["id"]: r for r in out["verdict"]["rules"]}
    assert rules["predictions-vary"]["outcome"] == "pass"
    assert rules["predictions-vary"]["measured"] == "pass"
    assert rules["no-id-like-columns"]["outcome"] == "warn"
    assert "beats-baseline" in rules  # the standard pack's rules still apply
