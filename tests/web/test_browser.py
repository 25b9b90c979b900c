"""``assay serve`` in a real browser: Playwright driving Debian's chromium against a team's home.

The server runs as users start it (``python -m assay --home H --db URL serve``) on a free
loopback port, over SQLite and over PostgreSQL. The tests assert on what a person sees — the
verdict and its reasons, the attention list before everything else, the charts, the lineage
links, the proofs checked in the page, the red banner once the database is edited — and that
no request leaves the page's own origin. Screenshots are saved in each test's tmp dir.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.audit.tamper_tools import Raw
from tests.web.conftest import EVIL, Server, Team, start_server, stop_server


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def team(request: pytest.FixtureRequest) -> Team:
    return request.getfixturevalue("sqlite_team" if request.param == "sqlite" else "pg_team")


@pytest.fixture(scope="module")
def site(team: Team, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(team, tmp_path_factory.mktemp("serve"))
    yield server
    stop_server(server)


@dataclass
class Visit:
    page: Any
    base: str
    shots: Path
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")
        return response

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def proofs_checked(self) -> list[str]:
        self.page.wait_for_selector("body[data-proofs-checked]", timeout=30_000)
        return [t.strip() for t in self.page.locator("[data-proof-seq]").all_inner_texts()]


@pytest.fixture
def visit(browser: Any, site: Server, tmp_path: Path) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Visit(page, site.base, tmp_path)
    page.on("request", lambda r: seen.requests.append(r.url))

    def dialog(d: Any) -> None:
        seen.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    yield seen
    context.close()
    assert seen.requests, "the test made no request"
    outside = [u for u in seen.requests if not u.startswith(site.base + "/") and not u.startswith("data:")]
    assert outside == [], f"requests left the page's origin: {outside}"
    assert seen.dialogs == [], f"a script ran: {seen.dialogs}"


def test_the_run_page_shows_the_verdict_its_reasons_and_what_needs_attention_first(visit: Visit, team: Team) -> None:
    visit.go(f"/runs/{team.runs['blocked']}")
    page = visit.page
    assert "Ledger verified:" in page.locator("#banner").inner_text()
    decision = page.locator("#decision h2")
    assert re.search(r"Gate decision: block under assay:standard", decision.inner_text())
    reasons = page.locator("#decision ol.reasons li").all_inner_texts()
    assert reasons == ["no-leakage[duplicates]: 37 test rows also appear in the training data — "
                       "checks.leakage.duplicates.status = 'fail', needs in ['pass', 'warn', 'skip']"]
    first = page.locator("#attention li").first.inner_text()
    assert first.split("\n")[0].startswith("block") and "no-leakage[duplicates]" in first
    assert "37 test rows also appear in the training data" in page.locator("#attention").inner_text()
    tops = [page.locator(sel).bounding_box()["y"] for sel in ("#attention", "#decision", "#evidence", "#records")]
    assert tops == sorted(tops)
    assert tops[0] < 900, "what needs attention is above the fold at 1280 px"
    checks = page.locator("#evidence h2", has_text="Checks")
    assert checks.count() == 1 and page.locator("#evidence h2", has_text="Fairness: sex").count() == 1
    for chart in ("metrics", "gap"):  # the evidence pack's charts of the recorded metrics
        assert page.locator(f'#evidence figure.chart[data-chart="{chart}"] rect.bar').count() >= 2, chart
    proofs = visit.proofs_checked()
    assert proofs and all(p.startswith("✓ in the checkpoint of size") for p in proofs), proofs
    visit.shot("run-blocked")


def test_runs_filter_by_status_and_model(visit: Visit, team: Team) -> None:
    visit.go("/runs")
    page = visit.page
    assert page.locator("table.runs tr").count() == 5
    page.select_option("select[name=status]", "blocked")
    page.click("form.filters button")
    page.wait_for_load_state("networkidle")
    assert "status=blocked" in page.url
    shown = page.locator("table.runs td:first-child a").all_inner_texts()
    assert sorted(shown) == sorted([team.runs["blocked"], team.runs["waived"]])
    page.select_option("select[name=model]", "churn")
    page.click("form.filters button")
    page.wait_for_load_state("networkidle")
    assert page.locator("table.runs td:first-child a").all_inner_texts() == [team.runs["blocked"]]
    visit.shot("runs-filtered")


def test_lineage_links_lead_from_a_run_to_its_data_and_its_deployment(visit: Visit, team: Team) -> None:
    visit.go(f"/runs/{team.runs['passing']}")
    visit.page.click("p.run-meta a:text('lineage')")
    visit.page.wait_for_load_state("networkidle")
    page = visit.page
    assert page.locator("svg.lineage g.node").count() >= 8
    assert page.locator("svg.lineage g.node-stage text", has_text="credit@1 in production").count() == 1
    visit.shot("lineage")
    page.locator("svg.lineage a[href^='/lineage?data=']").first.click()
    page.wait_for_load_state("networkidle")
    assert "Runs trained on data" in page.locator("h1").inner_text()
    runs = page.locator("table td:first-child a code").all_inner_texts()
    assert sorted(runs) == sorted([team.runs["passing"], team.runs["blocked"]])
    page.locator(f"a[href='/runs/{team.runs['blocked']}']").first.click()
    page.wait_for_load_state("networkidle")
    assert team.runs["blocked"] in page.locator("h1").inner_text()


def test_the_registry_shows_stages_approvals_waivers_and_promotions(visit: Visit, team: Team) -> None:
    visit.go("/models")
    page = visit.page
    row = page.locator("table.models tr", has_text="credit")
    assert "credit@1" in row.inner_text() and "✓" in row.inner_text()
    visit.shot("models")
    row.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    version = page.locator("section.version").first
    text = version.inner_text()
    assert "Deployable: yes" in text and "(as rita" in text and "→ production" in text
    visit.go("/models/fraud")
    text = visit.page.locator("section.version").first.inner_text()
    assert "no-leakage[duplicates]" in text and "2999-12-31" in text and "active" in text
    assert "staging" in text


def test_monitoring_history_is_charted(visit: Visit) -> None:
    visit.go("/monitoring")
    page = visit.page
    assert page.locator("section.monitor svg").count() == 2
    assert page.locator("section.monitor svg circle").count() == 6
    assert "beyond_policy" in page.locator("section.monitor").first.inner_text()
    visit.shot("monitoring")


def test_the_ledger_page_checks_every_proof_in_the_browser(visit: Visit) -> None:
    visit.go("/ledger")
    proofs = visit.proofs_checked()
    assert len(proofs) >= 30 and all(p.startswith("✓ in the checkpoint of size") for p in proofs), proofs
    visit.shot("ledger")
    visit.page.locator("table.records td a").first.click()
    visit.page.wait_for_load_state("networkidle")
    visit.proofs_checked()
    assert visit.page.locator("#proof-check").inner_text().startswith("✓ in the checkpoint of size")


def test_a_name_that_is_a_script_is_shown_as_text(visit: Visit, team: Team) -> None:
    visit.go("/models/" + urllib.parse.quote(EVIL, safe=""))
    assert visit.page.locator("h1").inner_text() == f"Model {EVIL}"
    visit.go(f"/runs/{team.runs['waived']}")
    assert f"repeat customers, reviewed {EVIL}" in visit.page.locator("#deployment").inner_text()
    visit.go("/runs")
    assert EVIL in visit.page.locator("table.runs").inner_text()
    visit.shot("escaped")


def test_a_server_with_a_token_answers_401_without_it(browser: Any, team: Team, tmp_path: Path) -> None:
    token = "reviewers-token-0123456789abcdef"
    (tmp_path / "token").write_text(token + "\n")
    server = start_server(team, tmp_path, "--token-file", str(tmp_path / "token"), token=token)
    try:
        stranger = browser.new_context()
        response = stranger.request.get(server.base + "/runs")  # a page would show the browser's login prompt
        assert response.status == 401 and response.headers["www-authenticate"].startswith("Basic")
        with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):
            stranger.new_page().goto(server.base + "/runs")
        stranger.close()
        reviewer = browser.new_context(http_credentials={"username": "reviewer", "password": token})
        page = reviewer.new_page()
        server.wait_verified()
        assert page.goto(server.base + "/runs").status == 200
        page.wait_for_selector("#banner")
        assert "Ledger verified:" in page.locator("#banner").inner_text()
        reviewer.close()
    finally:
        stop_server(server)


def test_editing_the_database_turns_the_banner_red(visit: Visit, team: Team, site: Server) -> None:
    """Last in the module: it tampers with the module's database."""
    verdict = team.ledger().records(run_id=team.runs["blocked"], kind="verdict")[-1]
    raw = Raw(team.db)
    raw.drop_triggers()
    body = bytes(raw.row(verdict.seq)[8])
    raw.set(verdict.seq, body=body.replace(b'"decision":"block"', b'"decision":"pass"'))
    raw.close()
    deadline = time.monotonic() + 60
    while True:
        visit.go(f"/runs/{team.runs['blocked']}")
        banner = visit.page.locator("#banner")
        if "banner-bad" in (banner.get_attribute("class") or "") and "tampering found" in banner.inner_text():
            break
        assert time.monotonic() < deadline, f"banner still says: {banner.inner_text()}"
        time.sleep(0.5)
    assert f"tampering found at record {verdict.seq}" in banner.inner_text()
    assert "hash mismatch" in banner.inner_text()
    row = visit.page.locator("#records tr", has_text=verdict.kind).filter(has_text=str(verdict.seq))
    assert "✗ changed" in row.first.inner_text()
    assert "Gate decision: block" in visit.page.locator("#decision h2").inner_text()
    visit.shot("tampered")
    code, _, _ = site.get("/api/models/credit/stages/production")
    assert code == 503
