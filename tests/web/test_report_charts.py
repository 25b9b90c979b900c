"""The web view's run page draws the evidence pack's charts, under its strict Content-Security-Policy.

A real binary run on an Adult sample (sensitive sex and race, so intersections too) is served
by ``assay serve``; Chromium opens its run page and the file ``assay report`` writes for the
same run. Both show the same charts with the same recorded points, the page's styles apply
(the chart colours come from the served style sheet, not from attributes the CSP would
block), the browser reports no CSP violation and no request leaves the origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.checks import datasets as ds
from tests.conftest import run_assay
from tests.web.conftest import Server, Team, start_server, stop_server

CHARTS = ("metrics", "gap", "roc", "pr", "calibration", "confusion", "fairness", "fairness-errors",
          "fairness-intersection")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Team, Server, str]]:
    root = tmp_path_factory.mktemp("web-report")
    home = root / "home"
    team = Team(home, f"sqlite:///{home / 'assay.db'}", root)
    spec = ds.adult_spec("web-charts").replace('sensitive = ["sex"]', 'sensitive = ["sex", "race"]')
    made = run_assay("run", str(ds.write(root / "run", ds.adult_fair(2400), spec)), "--json", home=home)
    assert made.returncode in (0, 1), made.stderr[-2000:]
    assert run_assay("audit", "checkpoint", home=home).returncode == 0
    server = start_server(team, root)
    yield team, server, made.json["run_id"]
    stop_server(server)


def _points(page: Any) -> dict[str, int]:
    out = {}
    for chart in CHARTS:
        figure = page.locator(f'figure.chart[data-chart="{chart}"]').first
        assert figure.count() == 1, f"no {chart} chart"
        out[chart] = int(figure.locator("circle, rect.bar").count())
    return out


def test_the_run_page_shows_the_charts_of_the_evidence_pack(browser: Any, served: tuple[Team, Server, str],
                                                           tmp_path: Path) -> None:
    team, server, run_id = served
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.goto(f"{server.base}/runs/{run_id}")
    page.wait_for_load_state("networkidle")
    on_page = _points(page)
    assert all(n > 0 for n in on_page.values()), on_page
    roc_bar = page.locator('figure[data-chart="metrics"] rect.bar.s0').first
    assert roc_bar.evaluate("e => getComputedStyle(e).fill") == "rgb(26, 87, 201)", "report.css did not apply"
    assert page.locator("#evidence h2", has_text="Charts").count() == 1
    roc, pr = (page.locator(f'figure[data-chart="{c}"]').bounding_box() for c in ("roc", "pr"))
    assert roc["y"] == pr["y"] and roc["width"] > 450, "two charts a row at 1280 px"
    tops = [page.locator(s).bounding_box()["y"] for s in ("#attention", "#decision", "#charts", "#records")]
    assert tops == sorted(tops)
    page.screenshot(path=str(tmp_path / "run-page-charts.png"), full_page=True)
    context.close()
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
    assert [u for u in requests if not u.startswith(server.base + "/")] == []

    out = tmp_path / "report.html"
    assert run_assay("report", run_id, "--output", str(out), home=team.home).returncode == 0
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(out.as_uri())
    assert _points(page) == on_page, "the run page and the report draw the same recorded points"
    context.close()
