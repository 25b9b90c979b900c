"""Plugin discovery through the ``assay`` entry-point group: listed, called, broken, blocked, misspelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.errors import InternalError
from assay.kernel.hookspecs import hookimpl
from assay.kernel.manager import make_plugin_manager
from tests.conftest import run_assay

GOOD_PLUGIN = '''
from assay.kernel.hookspecs import hookimpl
from assay.kernel.types import Check

@hookimpl
def evaluate(run, model, splits):
    return [Check("thirdparty", "called", "pass", value=len(splits.test), detail={"family": model.family})]
'''
BROKEN_PLUGIN = "raise RuntimeError('this plugin is broken on import')\n"
MISSPELLED_PLUGIN = '''
from assay.kernel.hookspecs import hookimpl

@hookimpl
def evalute(run, model, splits):
    return []
'''


def install_plugin(site: Path, name: str, source: str) -> Path:
    """A real installed distribution: a module plus ``.dist-info`` with an ``assay`` entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(source, encoding="utf-8")
    dist = site / f"{name}-0.3.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[assay]\n{name} = {name}\n", encoding="utf-8")
    return site


def plugins_json(site: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    result = run_assay(*args, "plugins", "--json", env={"PYTHONPATH": str(site), **(env or {})})
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in result.json["plugins"]}


def test_bundled_plugins_are_listed_with_versions_and_hooks(tmp_path: Path) -> None:
    result = run_assay("plugins", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in result.json["plugins"]}
    for name in ("loaders", "splitting", "trainers", "tuners", "training", "evaluation", "ledger", "policies"):
        assert plugins[name]["status"] == "loaded", plugins[name]
        assert plugins[name]["version"] == "0.1.0"
        assert plugins[name]["hooks"]
    assert "load_data" in plugins["loaders"]["hooks"]
    assert "record" in plugins["ledger"]["hooks"]


def test_third_party_plugin_is_listed_and_called(tmp_path: Path, adult_small: Path) -> None:
    site = install_plugin(tmp_path / "site", "assay_thirdparty", GOOD_PLUGIN)
    listed = plugins_json(site)
    assert listed["assay_thirdparty"]["status"] == "loaded"
    assert listed["assay_thirdparty"]["version"] == "0.3.1"
    assert listed["assay_thirdparty"]["hooks"] == ["evaluate"]

    home = tmp_path / "home"
    result = run_assay("run", str(adult_small / "assay.toml"), "--json", "-q", home=home, env={"PYTHONPATH": str(site)})
    assert result.returncode in (0, 1), result.stderr
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    evidence = RunStore(Settings.resolve(home)).get_run(result.json["run_id"]).evidence
    assert evidence["checks"]["thirdparty"]["called"]["status"] == "pass"
    assert evidence["checks"]["thirdparty"]["called"]["value"] == 1000  # 25 % of 4,000 rows
    assert evidence["plugins"]["assay_thirdparty"] == "0.3.1"


def test_broken_plugin_is_reported_not_fatal(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site", "assay_broken", BROKEN_PLUGIN)
    result = run_assay("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["assay_broken"]["status"] == "failed"
    assert "broken on import" in plugins["assay_broken"]["error"]
    assert plugins["loaders"]["status"] == "loaded"
    assert "plugin 'assay_broken' skipped" in result.stderr

    strict = run_assay("--strict-plugins", "plugins", env={"PYTHONPATH": str(site)})
    assert strict.returncode == 3
    assert "assay_broken" in strict.stderr and "Traceback" not in strict.stderr


def test_blocked_plugin_is_not_loaded(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site", "assay_thirdparty", GOOD_PLUGIN)
    assert plugins_json(site, "-p", "no:assay_thirdparty")["assay_thirdparty"]["status"] == "blocked"
    by_env = plugins_json(site, env={"ASSAY_DISABLE_PLUGINS": "assay_thirdparty"})
    assert by_env["assay_thirdparty"]["status"] == "blocked"
    assert by_env["assay_thirdparty"]["hooks"] == []


def test_blocked_plugin_is_not_called(tmp_path: Path, adult_small: Path) -> None:
    site = install_plugin(tmp_path / "site", "assay_thirdparty", GOOD_PLUGIN)
    home = tmp_path / "home"
    result = run_assay("-p", "no:assay_thirdparty", "run", str(adult_small / "assay.toml"), "--json", "-q",
                       home=home, env={"PYTHONPATH": str(site)})
    assert result.returncode in (0, 1), result.stderr
    from assay.storage.settings import Settings
    from assay.storage.store import RunStore

    evidence = RunStore(Settings.resolve(home)).get_run(result.json["run_id"]).evidence
    assert "thirdparty" not in evidence.get("checks", {})


def test_essential_plugins_cannot_be_blocked(tmp_path: Path) -> None:
    result = run_assay("-p", "no:ledger", "plugins", home=tmp_path)
    assert result.returncode == 2
    assert "essential" in result.stderr


def test_misspelled_hookimpl_fails_loudly(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site", "assay_typo", MISSPELLED_PLUGIN)
    listed = plugins_json(site)
    assert listed["assay_typo"]["status"] == "failed"
    assert "did you mean 'evaluate'" in listed["assay_typo"]["error"]
    strict = run_assay("--strict-plugins", "plugins", env={"PYTHONPATH": str(site)})
    assert strict.returncode == 3
    assert "evalute" in strict.stderr


class _Typo:
    @hookimpl
    def split_dataa(self, run, dataset):  # type: ignore[no-untyped-def]
        return None


def test_misspelled_hookimpl_in_process() -> None:
    pm = make_plugin_manager(extra_plugins=[("typo", _Typo())])
    info = next(i for i in pm.infos if i.name == "typo")
    assert info.status == "failed" and "split_data" in info.error
    assert pm.get_plugin("typo") is None
    with pytest.raises(InternalError, match="split_dataa"):
        make_plugin_manager(strict=True, extra_plugins=[("typo", _Typo())])


def test_each_manager_is_fresh() -> None:
    a, b = make_plugin_manager(), make_plugin_manager()
    assert a is not b
    assert a.get_plugin("loaders") is not None and b.get_plugin("loaders") is not None
