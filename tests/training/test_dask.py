"""``executor = "dask://HOST:PORT"``: the search runs on the cluster's workers and picks what local picks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.storage.settings import Settings
from assay.storage.store import RunStore
from tests.training.conftest import Trained, assay, assay_run, install_plugin


def executed_tasks(dask_worker: Any) -> int:
    return int(dask_worker.state.executed_count)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    # Starting worker processes sets PYTHONHASHSEED, OMP_NUM_THREADS, ... in this process for
    # good; later runs would record that as a changed environment. Put it back afterwards.
    saved = dict(os.environ)
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
                Client(local) as client:
            yield local, client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def evidence(home: Path, run_id: str) -> dict[str, Any]:
    row = RunStore(Settings.resolve(home)).get_run(run_id)
    assert row.evidence is not None
    return row.evidence


def test_a_search_on_a_two_worker_cluster_matches_the_local_search(cluster: Any, trained: Trained,
                                                                   tmp_path: Path) -> None:
    local_cluster, client = cluster
    before = client.run(executed_tasks)
    address = local_cluster.scheduler_address.replace("tcp://", "dask://")
    result = assay_run(trained.directory, tmp_path / "home", f'train.executor="{address}"')
    after = client.run(executed_tasks)

    # both workers ran CV fits
    assert len(after) == 2
    assert all(after[w] > before.get(w, 0) for w in after), (before, after)

    local = evidence(trained.home, trained.result["run_id"])
    remote = evidence(tmp_path / "home", result["run_id"])
    assert remote["model"]["search"]["executor"] == address
    assert remote["facts"]["executor"] == address
    assert local["model"]["search"]["executor"] == "local"
    assert remote["model"]["family"] == local["model"]["family"]
    assert remote["model"]["params"] == local["model"]["params"]
    assert [c["params"] for c in remote["model"]["candidates"]] == [c["params"] for c in local["model"]["candidates"]]
    assert remote["metrics"]["cv"] == local["metrics"]["cv"]
    assert remote["model"]["predictions_hash"] == local["model"]["predictions_hash"]


def test_a_plugin_tuner_runs_on_the_cluster_once_the_cluster_can_import_it(cluster: Any, trained: Trained,
                                                                          tmp_path: Path) -> None:
    """The example successive-random tuner, installed through a real entry point, distributes its fits.

    A cluster that cannot import the plugin would drop the tasks and the search would wait
    forever; the run refuses up front instead, naming the module.
    """
    local_cluster, client = cluster
    plugin = Path(__file__).parent / "successive_random.py"
    env = install_plugin(tmp_path / "site", "successive_random", plugin.read_text(encoding="utf-8"))
    address = local_cluster.scheduler_address.replace("tcp://", "dask://")
    sets = [f'train.executor="{address}"', "train.tuning='successive_random'", "train.budget=4"]

    refused = assay("run", str(trained.directory / "assay.toml"), "--json", "-q",
                    *[a for s in sets for a in ("--set", s)], home=tmp_path / "home", env=env)
    assert refused.returncode == 2, refused.stderr
    assert refused.json["status"] == "errored"
    assert "cannot import successive_random" in refused.json["error"]
    assert "Client.upload_file" in refused.json["error"]

    client.upload_file(str(tmp_path / "site" / "successive_random.py"))
    before = client.run(executed_tasks)
    result = assay_run(trained.directory, tmp_path / "home", *sets, env=env)
    after = client.run(executed_tasks)
    assert all(after[w] > before.get(w, 0) for w in after), (before, after)
    model = evidence(tmp_path / "home", result["run_id"])["model"]
    assert model["search"]["tuner"] == "successive_random"
    assert [c["n_candidates"] for c in model["candidates"]] == [4, 4]


def task_names(dask_scheduler: Any) -> list[str]:
    return [str(entry[0]) for entry in dask_scheduler.transition_log]


def test_a_forest_fits_its_trees_on_its_worker_not_as_cluster_tasks(cluster: Any, trained: Trained,
                                                                    tmp_path: Path) -> None:
    """joblib's dask backend would send each CV fit's inner loop (a forest's trees) to the cluster as well,
    one tiny task per tree with the worker's thread seceded to wait: the fits keep it on their worker."""
    local_cluster, client = cluster
    address = local_cluster.scheduler_address.replace("tcp://", "dask://")
    forest = ["train.candidates=['random_forest']", "train.budget=2"]
    local = assay_run(trained.directory, tmp_path / "local", *forest)
    seen = set(client.run_on_scheduler(task_names))
    remote = assay_run(trained.directory, tmp_path / "remote", *forest, f'train.executor="{address}"')
    names = [n for n in client.run_on_scheduler(task_names) if n not in seen]

    assert any("worker_local__fit_and_score" in n for n in names), names[:20]
    nested = [n for n in names if "_parallel_build_trees" in n and "worker_local_" not in n]
    assert not nested, f"{len(nested)} tree tasks submitted from inside CV fits, e.g. {nested[0]}"
    model = evidence(tmp_path / "remote", remote["run_id"])["model"]
    assert model["family"] == "random_forest"
    assert model["params"] == evidence(tmp_path / "local", local["run_id"])["model"]["params"]
    assert model["predictions_hash"] == evidence(tmp_path / "local", local["run_id"])["model"]["predictions_hash"]
