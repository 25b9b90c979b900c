"""The example LightGBM plugin, installed from its own distribution into a fresh virtual environment.

It proves the public kit is enough for a real third-party plugin: ``pip install`` makes it
show in ``assay plugins`` with its version, its trainers pass ``assay.testing``'s conformance
checks, and the ranking example trains end to end with its ``LGBMRanker`` family, the
model stored and loaded back trusting only the types the plugin declares.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

PLUGIN = EXAMPLES / "plugins" / "assay-lightgbm"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Venv:
    python: Path

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ASSAY_DB_URL", "ASSAY_HOME", "PYTHONPATH")}
        return subprocess.run([str(self.python), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                              env={**env, **ONE_THREAD}, stdin=subprocess.DEVNULL)

    def assay(self, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "assay", "--home", str(home), *args)


def _builds_offline() -> bool:
    """Whether this interpreter has the plugin's build backend (setuptools >= 68 with bdist_wheel)."""
    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return major >= 70 or (major >= 68 and importlib.util.find_spec("wheel") is not None)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    assert importlib.util.find_spec("lightgbm") is not None, "lightgbm is missing: pip install -e '.[test]'"
    root = tmp_path_factory.mktemp("venv") / "env"
    # --system-site-packages: assay, lightgbm and the ML stack come from this environment; only the
    # plugin is new. --without-pip: the system pip installs into the venv it is run from.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)], check=True,
                   timeout=120)
    env = Venv(root / "bin" / "python")
    build = ["--no-build-isolation"] if _builds_offline() else []  # else pip fetches the build backend
    installed = env.run("-m", "pip", "install", "--quiet", "--no-deps", *build, str(PLUGIN), timeout=600)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
    return env


def test_assay_plugins_lists_the_installed_plugin_with_its_version(venv: Venv, tmp_path: Path) -> None:
    listed = venv.assay("plugins", "--json", home=tmp_path / "home")
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["lightgbm"] == {"name": "lightgbm", "module": "assay_lightgbm", "distribution": "assay-lightgbm",
                                   "version": "0.1.0", "status": "loaded", "hooks": ["register_trainers"],
                                   "error": ""}
    # installed into the fresh environment only: the interpreter running the tests does not see it
    outside = subprocess.run([sys.executable, "-m", "assay", "--home", str(tmp_path / "home"), "plugins", "--json"],
                             capture_output=True, text=True, timeout=120)
    assert "lightgbm" not in {p["name"] for p in json.loads(outside.stdout)["plugins"]}


CONFORMANCE = textwrap.dedent("""
    import json, sys
    import pandas as pd
    import assay_lightgbm
    from assay.testing import check_trainer, make_dataset, registered_trainers

    travel = pd.read_csv(sys.argv[1])
    ranking = make_dataset(travel, "chosen", "ranking", group_column="query_id", drop=["terminal_wait_min"])
    report = {}
    for trainer in registered_trainers(assay_lightgbm):
        for task in sorted(trainer.tasks):
            results = check_trainer(trainer, task, ranking if task == "ranking" else None)
            report[f"{trainer.name}[{task}]"] = [r.name for r in results if r.passed]
    print(json.dumps(report))
""")


def test_its_trainers_pass_the_conformance_checks(venv: Venv, tmp_path: Path) -> None:
    script = tmp_path / "conformance.py"
    script.write_text(CONFORMANCE, encoding="utf-8")
    travel = EXAMPLES / "travel_mode_choice" / "data" / "travel_mode_choice.csv"
    checked = venv.run(str(script), str(travel), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr[-3000:]  # check_trainer raises TrainerCheckFailed otherwise
    report = json.loads(checked.stdout)
    assert set(report) == {"lightgbm[binary]", "lightgbm[multiclass]", "lightgbm[regression]",
                           "lightgbm_ranker[ranking]"}
    for passed in report.values():
        assert len(passed) == 10 and "check_skops_roundtrip" in passed and "check_deterministic" in passed


def test_the_ranking_example_trains_with_the_lightgbm_ranker(venv: Venv, tmp_path: Path) -> None:
    project = tmp_path / "travel"
    shutil.copytree(EXAMPLES / "travel_mode_choice", project, ignore=shutil.ignore_patterns(".assay"))
    home = tmp_path / "home"
    trained = venv.assay("run", str(project / "assay.toml"), "--json", "-q",
                         "--set", "train.candidates=['lightgbm_ranker']", "--set", "train.budget=2",
                         "--set", "split.cv_folds=3", home=home)
    assert trained.returncode in (0, 1), trained.stderr[-3000:]  # passed, or blocked by the gate
    out = json.loads(trained.stdout)
    assert out["status"] == ("passed" if trained.returncode == 0 else "blocked")
    assert out["model"]["family"] == "lightgbm_ranker"
    artifact = out["model"]["artifact"]
    assert artifact.startswith("sha256:") and len(artifact) == 71
    ndcg = out["metrics"]["test"]["ndcg@10"]
    assert 0.0 < ndcg <= 1.0
    # the signed ledger holds the model record for this run
    log = venv.assay("audit", "log", "--run", out["run_id"], "--json", home=home)
    assert log.returncode == 0, log.stderr
    models = [r["payload"] for r in json.loads(log.stdout)["records"] if r["kind"] == "model"]
    assert [(m["family"], m["artifact"]) for m in models] == [("lightgbm_ranker", artifact)]
    # the stored model loads where the plugin is installed (its trainers declare the types) and
    # predicts what was recorded; where it is not installed, nothing trusts those types
    load = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from assay.errors import Finding
        from assay.storage.modelio import load_model
        from assay.storage.store import ArtifactStore
        try:
            model = load_model(ArtifactStore(Path({str(home)!r})), {artifact!r})
        except Finding as exc:
            print("refused:", exc.message)
            sys.exit(1)
        print(type(model.named_steps["model"]).__name__)
    """)
    inside = venv.run("-c", load)
    assert inside.returncode == 0, inside.stdout + inside.stderr[-2000:]
    assert inside.stdout.strip() == "QueryLGBMRanker"
    outside = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=120)
    assert outside.returncode == 1, outside.stdout + outside.stderr[-2000:]
    assert "not trusted: assay_lightgbm.ranker.QueryLGBMRanker" in outside.stdout
