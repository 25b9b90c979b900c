"""The runner fails closed: a gate where no rule applied blocks, a plugin that raises errors the run.

Both through the real CLI on the real Adult sample, with a real installed plugin distribution.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import run_assay

FAST = ("--set", "train.tuning='none'", "--set", "train.candidates=['logistic_regression']")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}

MONITOR_ONLY_POLICY = """\
name = "team:monitor-only"
description = "Only production rules: nothing here judges a training run."

[[rules]]
id = "drift"
path = "drift.share_drifted"
op = "<="
threshold = 0.3
stage = "monitor"
"""

RAISING_PLUGIN = '''
from assay.kernel.hookspecs import hookimpl


@hookimpl
def evaluate(run, model, splits):
    raise RuntimeError("the scoring service is unavailable")
'''


def project(tmp_path: Path, adult_small: Path) -> Path:
    directory = tmp_path / "project"
    shutil.copytree(adult_small, directory)
    return directory


def install_plugin(site: Path, name: str, source: str) -> dict[str, str]:
    """A real distribution with an ``assay`` entry point; the environment that sees it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(source, encoding="utf-8")
    dist = site / f"{name}-1.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[assay]\n{name} = {name}\n", encoding="utf-8")
    return {"PYTHONPATH": str(site)}


def test_a_policy_with_no_rule_for_training_blocks_with_a_named_reason(tmp_path: Path, adult_small: Path) -> None:
    directory = project(tmp_path, adult_small)
    (directory / "monitor-only.toml").write_text(MONITOR_ONLY_POLICY, encoding="utf-8")
    home = tmp_path / "home"
    ran = run_assay("run", str(directory / "assay.toml"), "--json", "-q", *FAST,
                    "--set", "gate.policy='monitor-only.toml'", home=home, env=ONE_THREAD)
    assert ran.returncode == 1, ran.stderr
    out = json.loads(ran.stdout)
    assert out["status"] == "blocked" and out["verdict"]["decision"] == "block"
    [rule] = out["verdict"]["rules"]  # the monitor rule is not the train stage's: only the fail-closed outcome
    assert (rule["id"], rule["outcome"]) == ("no-applicable-rule", "error")
    assert "'team:monitor-only'" in rule["reason"] and "stage 'train'" in rule["reason"]

    gated = run_assay("gate", out["run_id"], "--format", "json", home=home)
    assert gated.returncode == 1, gated.stderr
    verdict = json.loads(gated.stdout)["verdict"]
    assert verdict["decision"] == "block" and verdict["policy"] == "team:monitor-only"
    [reason] = verdict["reasons"]
    assert reason.startswith("no-applicable-rule: policy 'team:monitor-only' has no rule that applies to stage 'train'")


def test_a_plugin_that_raises_errors_the_run_and_is_named(tmp_path: Path, adult_small: Path) -> None:
    directory = project(tmp_path, adult_small)
    home = tmp_path / "home"
    env = {**ONE_THREAD, **install_plugin(tmp_path / "site", "flaky_scorer", RAISING_PLUGIN)}
    ran = run_assay("run", str(directory / "assay.toml"), "--json", "-q", *FAST, home=home, env=env)
    assert ran.returncode == 3, ran.stderr
    assert "Traceback" not in ran.stderr
    out = json.loads(ran.stdout)
    assert out["status"] == "errored" and out["verdict"] is None
    assert out["error"] == ("plugin 'flaky_scorer' failed in hook evaluate (stage 'evaluate'): "
                            "RuntimeError: the scoring service is unavailable")

    log = run_assay("audit", "log", "--run", out["run_id"], "--json", home=home)
    assert log.returncode == 0, log.stderr
    records = json.loads(log.stdout)["records"]
    failed = [r for r in records if r["kind"] == "run_failed"]
    assert len(failed) == 1 and not [r for r in records if r["kind"] in ("verdict", "run_finished")]

    gated = run_assay("gate", out["run_id"], "--format", "json", home=home)  # re-gating the errored run fails closed
    assert gated.returncode == 1, gated.stderr
    assert json.loads(gated.stdout)["verdict"]["decision"] == "block"
