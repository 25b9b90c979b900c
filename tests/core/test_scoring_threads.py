"""Scoring runs on the libraries' own threads unless the machine is busier than its cores."""

from __future__ import annotations

import os

import pytest
from threadpoolctl import threadpool_info

from assay.kernel import runner


def _openmp_threads() -> set[int]:
    return {int(info["num_threads"]) for info in threadpool_info() if info.get("user_api") == "openmp"}


@pytest.fixture(autouse=True)
def _scikit_learn_loaded() -> None:
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limits apply to)


def test_on_a_busy_machine_up_to_the_limit_one_thread_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (float((os.cpu_count() or 1) + 4), 0.0, 0.0))
    with runner._few_threads(runner.SINGLE_THREAD_ROWS):
        assert _openmp_threads() == {1}
    before = _openmp_threads()
    with runner._few_threads(runner.SINGLE_THREAD_ROWS + 1):
        assert _openmp_threads() == before


def test_on_an_idle_machine_the_libraries_keep_their_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    before = _openmp_threads()
    with runner._few_threads(5_000):
        assert _openmp_threads() == before


def test_without_a_load_average_one_thread_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    with runner._few_threads(5_000):
        assert _openmp_threads() == {1}
