"""Planted defects on real data, through the real command line.

Each defect makes ``assay run`` exit 1 with the run ``blocked`` and the verdict naming the
rule that catches it; the same data without the defect passes (exit 0): no false blocks.
A check that raises leaves the run errored and the gate failing closed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from assay.kernel.hookspecs import hookimpl
from tests.checks import datasets as ds
from tests.conftest import run_assay


@dataclass
class Case:
    build: Callable[[pd.DataFrame], pd.DataFrame]
    spec: str
    blocks: str | None  # the rule that must block, or None: must pass


CASES: dict[str, Case] = {
    "clean": Case(lambda fair: fair, ds.adult_spec("clean"), None),
    "target_copy": Case(ds.with_target_copy, ds.adult_spec("target-copy"), "no-leakage[target_leakage]"),
    "duplicates": Case(ds.with_duplicates, ds.adult_spec("duplicates", "random"), "no-leakage[duplicates]"),
    "entities_random": Case(ds.with_entities, ds.adult_spec("panel", "random", 'id_column = "person_id"\n'),
                            "no-leakage[entity_overlap]"),
    "entities_grouped": Case(ds.with_entities, ds.adult_spec("panel", "group", 'id_column = "person_id"\n'), None),
    "flights_shuffled": Case(lambda _: ds.flights(2000), ds.flights_spec("flights", "random"),
                             "no-leakage[temporal_order]"),
    "flights_in_time": Case(lambda _: ds.flights(2000), ds.flights_spec("flights", "time"), None),
    "biased": Case(ds.with_biased_labels, ds.adult_spec("biased"), "four-fifths[sex]"),
}


@dataclass
class Outcome:
    returncode: int
    result: dict[str, Any]
    stderr: str
    home: Path

    def rules(self, *outcomes: str) -> list[str]:
        return [r["id"] for r in (self.result.get("verdict") or {}).get("rules", []) if r["outcome"] in outcomes]

    def evidence(self) -> dict[str, Any]:
        from assay.storage.settings import Settings
        from assay.storage.store import RunStore

        return RunStore(Settings.resolve(self.home)).get_run(self.result["run_id"]).evidence


def _run(spec: Path, home: Path) -> Outcome:
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_DB_URL"}
    proc = subprocess.run([sys.executable, "-m", "assay", "--home", str(home), "run", str(spec), "--json", "-q"],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        result = {}
    return Outcome(proc.returncode, result, proc.stderr, home)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case, run through ``assay run`` two at a time (the runs are independent)."""
    root = tmp_path_factory.mktemp("planted")
    fair = ds.adult_fair()
    specs = {name: ds.write(root / name, case.build(fair), case.spec) for name, case in CASES.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run, spec, root / "homes" / name) for name, spec in specs.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.blocks])
def test_planted_defect_blocks_with_the_right_rule(outcomes: dict[str, Outcome], name: str) -> None:
    out = outcomes[name]
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.result["status"] == "blocked"
    assert CASES[name].blocks in out.rules("block"), out.rules("block", "error")
    assert not out.rules("error"), "no rule may fail for missing evidence"
    reasons = out.result["verdict"]["reasons"]
    assert any(r.startswith(CASES[name].blocks) for r in reasons)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.blocks])
def test_same_data_without_the_defect_passes(outcomes: dict[str, Outcome], name: str) -> None:
    out = outcomes[name]
    assert out.returncode == 0, (out.rules("block", "error"), out.stderr[-3000:])
    assert out.result["status"] == "passed"
    assert out.rules("block", "error") == []


def test_target_copy_is_named(outcomes: dict[str, Outcome]) -> None:
    check = outcomes["target_copy"].evidence()["checks"]["leakage"]["target_leakage"]
    assert check["status"] == "fail"
    assert check["detail"]["columns"] == ["high_earner_flag"]
    assert check["value"] == pytest.approx(1.0)
    assert outcomes["clean"].evidence()["checks"]["leakage"]["target_leakage"]["status"] == "pass"


def test_duplicates_name_rows_on_both_sides(outcomes: dict[str, Outcome]) -> None:
    ev = outcomes["duplicates"].evidence()
    check = ev["checks"]["leakage"]["duplicates"]
    assert check["status"] == "fail" and check["value"] > 0.05
    assert check["detail"]["examples"]
    for pair in check["detail"]["examples"]:
        assert pair["train_row"] is not None and pair["test_row"] != pair["train_row"]
    assert ev["checks"]["leakage"]["fold_duplicates"]["status"] == "fail"
    assert outcomes["clean"].evidence()["checks"]["leakage"]["duplicates"]["value"] == 0


def test_shared_entities_are_named(outcomes: dict[str, Outcome]) -> None:
    shuffled = outcomes["entities_random"].evidence()["checks"]["leakage"]["entity_overlap"]
    assert shuffled["status"] == "fail"
    person = shuffled["detail"]["columns"]["person_id"]
    assert person["shared_entities"] > 100 and all(e.startswith("P") for e in person["examples"])
    grouped = outcomes["entities_grouped"].evidence()["checks"]["leakage"]
    assert grouped["entity_overlap"]["value"] == 0 and grouped["fold_entity_overlap"]["value"] == 0


def test_time_order(outcomes: dict[str, Outcome]) -> None:
    shuffled = outcomes["flights_shuffled"].evidence()["checks"]["leakage"]
    assert shuffled["temporal_order"]["status"] == "fail" and shuffled["temporal_order"]["value"] > 0.5
    assert shuffled["fold_temporal_order"]["status"] == "fail"
    in_time = outcomes["flights_in_time"].evidence()["checks"]["leakage"]
    assert in_time["temporal_order"]["value"] == 0 and in_time["fold_temporal_order"]["value"] == 0


def test_bias_is_measured_per_group(outcomes: dict[str, Outcome]) -> None:
    biased = outcomes["biased"].evidence()["fairness"]["sex"]
    clean = outcomes["clean"].evidence()["fairness"]["sex"]
    assert biased["selection_rate_ratio"] < 0.8 <= clean["selection_rate_ratio"]
    assert biased["by_group"]["Female"]["selection_rate"] < biased["by_group"]["Male"]["selection_rate"]
    lo, hi = biased["selection_rate_ratio_ci"]
    assert lo <= biased["selection_rate_ratio"] <= hi < 0.8
    assert outcomes["biased"].evidence()["checks"]["fairness"]["selection_rate_ratio@sex"]["status"] == "fail"


# --------------------------------------------------------------------------- fail closed


class RaisingCheck:
    """A third-party check plugin whose ``check_split`` raises."""

    @hookimpl
    def check_split(self, run: Any, splits: Any) -> Any:
        raise RuntimeError("planted failure in a check plugin")


def _run_in_process(spec_path: Path, home: Path, extra: tuple[tuple[str, object], ...] = ()) -> Any:
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec
    from assay.storage.settings import Settings

    settings = Settings.resolve(home)
    spec, _ = load_spec(spec_path)
    return Runner(make_plugin_manager(extra_plugins=extra), settings, spec, spec_path).execute()


@pytest.fixture(scope="module")
def clean_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ds.write(tmp_path_factory.mktemp("raising"), ds.adult_fair(2000), ds.adult_spec("raising"))


def test_a_check_that_raises_errors_the_run_and_the_gate_fails_closed(clean_spec: Path, tmp_path: Path) -> None:
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    home = tmp_path / "home"
    result = _run_in_process(clean_spec, home, (("raising", RaisingCheck()),))
    assert result.status == "errored" and result.exit_code == 3
    assert "planted failure in a check plugin" in result.error
    assert RunStore(Settings.resolve(home)).get_run(result.run_id).status == "errored"
    gated = run_assay("gate", result.run_id, "--format", "json", home=home)
    assert gated.returncode == 1, gated.stderr
    verdict = gated.json["verdict"]
    assert verdict["decision"] == "block"
    assert any(r["outcome"] == "error" and "missing evidence" in r["reason"] for r in verdict["rules"])


def test_a_bundled_check_that_raises_is_an_error_check_that_blocks(clean_spec: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.plugins import leakage

    def broken(splits: Any) -> Any:
        raise ValueError("planted failure inside target_leakage")

    monkeypatch.setattr(leakage, "target_checks", broken)
    result = _run_in_process(clean_spec, tmp_path / "home")
    assert result.status == "blocked" and result.exit_code == 1
    check = result.evidence["checks"]["leakage"]["target_leakage"]
    assert check["status"] == "error" and "planted failure" in check["detail"]["error"]
    blocking = [r.id for r in result.verdict.rules if r.outcome in ("block", "error")]
    assert "no-check-errors[leakage.target_leakage]" in blocking
    assert "no-leakage[target_leakage]" in blocking
