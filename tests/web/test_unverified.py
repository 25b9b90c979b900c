"""Before the first verification has finished, and the attention list said once.

A server whose first verification is held back (as on a ledger big enough for it to take
minutes) answers every page at once: the records as read, under a banner that leads with "Not
yet verified", and every JSON answer says so in its ``ledger`` status; the deciding endpoint,
``/api/models/NAME/stages/production``, answers 503 with the reason and a Retry-After instead of
deciding from unverified data. When the verification is let through, the page that was open
turns green on its own and the deployment answer is given.

The attention list of a run whose rule blocks on a failing check lists that finding once, as
``assay report`` does, in the API, the page and the browser.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Server, Team, start_server, stop_server

# ``python HELD <release file> ARGS…`` is ``assay ARGS…`` whose verifier starts its first
# verification only once the release file exists.
HELD = '''\
import sys
import time
from pathlib import Path


def main() -> None:
    import assay.web.view as view

    release = Path(sys.argv[1])
    verify = view.verify_in_child

    def held(*args, **kwargs):
        while not release.exists():
            time.sleep(0.05)
        return verify(*args, **kwargs)

    view.verify_in_child = held
    from assay.commands.cli import main as cli

    sys.argv = ["assay", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
'''


def page_paths(team: Team) -> list[str]:
    run = team.runs["blocked"]
    return ["/", "/runs", f"/runs/{run}", "/models", "/models/credit", "/lineage", f"/lineage?run={run}",
            "/ledger", "/ledger/1", "/monitoring", "/keys"]


def api_json(server: Server, path: str) -> tuple[int, dict[str, str], Any]:
    code, raw, body = server.get(path)
    headers = {k.lower(): v for k, v in raw.items()}
    assert headers["content-type"].startswith("application/json"), (path, body[:500])
    return code, headers, json.loads(body)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def team(request: pytest.FixtureRequest) -> Team:
    return request.getfixturevalue("sqlite_team" if request.param == "sqlite" else "pg_team")


@pytest.fixture
def held(team: Team, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    script = tmp_path / "held_serve.py"
    script.write_text(HELD, encoding="utf-8")
    release = tmp_path / "release"
    server = start_server(team, tmp_path, command=[sys.executable, str(script), str(release)], wait=False)
    try:
        yield server, release
    finally:
        release.touch()
        stop_server(server)


def wait_for(server: Server, shows: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = server.status()
        if status["shows"] == shows:
            return status
        assert time.monotonic() < deadline, f"the pages never showed {shows} records: {status}\n{server.log.read_text()}"
        time.sleep(0.1)


def test_before_the_first_verification_pages_show_unverified_records_and_nothing_is_decided(
        held: tuple[Server, Path], team: Team, browser: Any, tmp_path: Path) -> None:
    server, release = held
    status = wait_for(server, "unverified")
    ledger = team.ledger()
    ledger_size = ledger.size()
    ledger.close()
    assert (status["state"], status["level"], status["ok"], status["verified_size"]) == ("verifying", "pending",
                                                                                          False, 0)
    assert status["unverified_size"] == status["ledger_size"] == ledger_size > 0
    assert status["headline"].startswith("Not yet verified: this page shows the")

    for path in page_paths(team):
        code, _, body = server.get(path)
        html = body.decode()
        assert code == 200, (path, html[:1500])
        banner = re.search(r'<div id="banner" class="banner banner-(\w+)"[^>]*>(.*?)</div>', html, re.S)
        assert banner is not None and banner.group(1) == "pending", path
        text = re.sub(r"<[^>]+>", " ", banner.group(2))
        assert text.split("…", 1)[1].strip().startswith("Not yet verified"), (path, text)
        twin = "/api/overview" if path == "/" else "/api" + path
        code, _, data = api_json(server, twin)
        assert code == 200, (twin, data)
        assert (data["ledger"]["state"], data["ledger"]["shows"], data["ledger"]["ok"]) == \
            ("verifying", "unverified", False), twin

    # what is shown is the ledger as read, each record marked as not yet verified
    _, _, runs = api_json(server, "/api/runs")
    assert runs["total"] == 4
    _, _, run = api_json(server, f"/api/runs/{team.runs['blocked']}")
    assert run["verdict"]["decision"] == "block" and run["records"]
    assert {r["integrity"] for r in run["records"]} == {"unverified"}
    _, _, record = api_json(server, "/api/ledger/1/proof")
    assert record["available"] is False

    # the question a deployment asks is not answered from unverified records
    code, headers, answer = api_json(server, "/api/models/credit/stages/production")
    assert code == 503 and headers["retry-after"] == "2"
    assert (answer["ok"], answer["reason"], answer["model"], answer["stage"]) == \
        (False, "not_yet_verified", "credit", "production")
    assert answer["error"].startswith("Not yet verified")
    _, _, models = api_json(server, "/api/models")
    assert all(m.get("ok") is not True for m in models["models"])

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{server.base}/runs/{team.runs['blocked']}")
    banner = page.locator("#banner")
    assert "banner-pending" in (banner.get_attribute("class") or "")
    assert banner.locator(".banner-text").inner_text().startswith("Not yet verified")
    assert banner.bounding_box()["y"] < page.locator("main").bounding_box()["y"], "the banner comes first"
    integrity = page.locator("table.records td:nth-child(5)").all_inner_texts()
    assert integrity and all(t.strip() == "… not yet verified" for t in integrity), integrity
    page.screenshot(path=str(tmp_path / "run-unverified.png"), full_page=True)

    release.touch()  # the verification finishes; the open page reloads itself and turns green
    page.wait_for_selector("#banner.banner-ok", timeout=90_000)
    assert page.locator("#banner .banner-text").inner_text().startswith("Ledger verified:")
    assert set(page.locator("table.records td:nth-child(5)").all_inner_texts()) == {"✓ verified"}
    page.screenshot(path=str(tmp_path / "run-verified.png"), full_page=True)
    context.close()
    outside = [u for u in requests if not u.startswith(server.base + "/") and not u.startswith("data:")]
    assert requests and outside == [], outside

    code, _, answer = api_json(server, "/api/models/credit/stages/production")
    assert code == 200 and answer["ok"] is True and answer["ledger"]["shows"] == "verified"
    assert server.status()["unverified_size"] == 0


def _report_attention(team: Team, run_id: str, out: Path) -> list[tuple[str, str, str]]:
    made = team.assay("report", run_id, "--output", str(out))
    assert made.returncode == 0, made.stderr
    html = out.read_text(encoding="utf-8")
    section = html[html.index('<section id="attention">'):]
    section = section[: section.index("</section>")]
    items = re.findall(r'<li class="level-([\w/-]+)">.*?<span class="what">(.*?)</span>'
                       r'<span class="message">(.*?)</span>', section)
    return [(level, unescape(what), unescape(message)) for level, what, message in items]


def test_a_blocked_rule_and_its_failing_check_are_listed_once_as_the_report_lists_them(
        team: Team, browser: Any, tmp_path: Path) -> None:
    run_id = team.runs["blocked"]
    ledger = team.ledger()
    evidence = ledger.records(run_id=run_id, kind="evidence")[-1].payload
    verdict = ledger.records(run_id=run_id, kind="verdict")[-1].payload
    ledger.close()
    duplicates = evidence["checks"]["leakage"]["duplicates"]
    assert duplicates["status"] == "fail"
    judged = [r["id"] for r in verdict["rules"] if "duplicates" in str(r.get("path")) and r["outcome"] != "pass"]
    assert "no-leakage[duplicates]" in judged and len(judged) >= 2, "the check is judged by a blocking and a warning rule"

    server = start_server(team, tmp_path)
    try:
        code, _, run = api_json(server, f"/api/runs/{run_id}")
        assert code == 200
        items = run["attention"]
        keys = [(i["level"], i["what"], i["message"]) for i in items]
        assert len(set(keys)) == len(keys) and len({i["message"] for i in items}) == len(items), keys
        assert [i["message"] for i in items].count(duplicates["message"]) == 1
        assert items[0]["level"] == "block" and items[0]["what"] == "no-leakage[duplicates]"
        assert keys == _report_attention(team, run_id, tmp_path / "report.html"), "the web leads with the report's items"
        _, _, listed = api_json(server, "/api/runs")
        counted = {r["run_id"]: r["attention"] for r in listed["runs"]}
        for role in ("passing", "blocked", "waived"):  # the runs list counts the same items
            _, _, shown_run = api_json(server, f"/api/runs/{team.runs[role]}")
            assert counted[team.runs[role]] == len(shown_run["attention"]), role
        assert counted[run_id] == len(items)

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{server.base}/runs/{run_id}")
        page.wait_for_load_state("networkidle")
        shown = page.locator("#attention li").all_inner_texts()
        assert len(shown) == len(items)
        assert sum(duplicates["message"] in t for t in shown) == 1, shown
        assert page.locator("#attention h2").inner_text() == f"Needs attention ({len(items)})"
        page.screenshot(path=str(tmp_path / "attention-once.png"), full_page=True)
        context.close()
        outside = [u for u in requests if not u.startswith(server.base + "/") and not u.startswith("data:")]
        assert requests and outside == [], outside
    finally:
        stop_server(server)
