"""``assay monitor RUN_ID --current DATA --html F`` in a real browser: assay's verdict first, and
evidently's report below it judging with the policy's thresholds, so the two agree.

The page is opened from disk in Debian's chromium (Playwright, no browser downloaded), with a
request listener: nothing may be fetched but the file itself (evidently inlines its scripts).
Screenshots are saved in each test's tmp dir.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.monitoring.conftest import TrainedRun, assay

LOOSE_POLICY = """\
name = "loose-monitoring"

[[rules]]
id = "drift"
description = "At most 90% of the columns drifted."
path = "drift.share_drifted"
op = "<="
threshold = 0.9
stage = "monitor"

[[rules]]
id = "distance-drift"
description = "Flight distances keep their distribution (Wasserstein distance below 0.05)."
path = "drift.columns.distance.score"
op = "<="
threshold = 0.05
stage = "monitor"
severity = "warn"

[[rules]]
id = "gust-drift"
description = "Wind gusts keep their distribution (written as if the score were a distance)."
path = "drift.columns.wind_gust_mph.score"
op = "<="
threshold = 0.05
stage = "monitor"
severity = "warn"
"""


class Opened:
    """A monitor page open in the browser, with every request it made."""

    def __init__(self, browser: Any, path: Path, shots: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.frame = self.page.frame_locator("iframe.evidently")
        self.frame.locator("text=Dataset drift detection threshold is").first.wait_for(timeout=60_000)
        self.page.wait_for_load_state("networkidle")
        self.path, self.shots = path, shots

    def shot(self, name: str) -> Path:
        out = self.shots / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=True)
        return out

    def evidently_headline(self) -> str:
        return str(self.frame.locator("text=Dataset drift detection threshold is").first.inner_text())

    def rule_row(self, rule_id: str) -> dict[str, str]:
        row = self.page.locator(f"tr.rule[data-rule='{rule_id}']")
        assert row.count() == 1, f"rule {rule_id} is listed {row.count()} times"
        return {"outcome": row.get_attribute("data-outcome") or "",
                "measured": row.locator("td.measured").inner_text().strip(),
                "threshold": row.locator("td.threshold").inner_text().strip(), "text": row.inner_text()}

    def close(self) -> list[str]:
        self.context.close()
        return [u for u in self.requests if not u.startswith(self.path.as_uri()) and not u.startswith(("data:", "about:"))]


def monitor_page(run: TrainedRun, batch: str, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = assay("monitor", run.run_id, "--current", run.batch(batch), "--format", "json", "--html", str(out),
                   *extra, home=run.home)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def external_links(markup: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", markup, flags=re.I)


def test_the_page_leads_with_assays_verdict_and_evidently_reaches_the_same_conclusion(
        flights: TrainedRun, browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "summer.html"
    code, doc = monitor_page(flights, "summer.csv", out)
    assert code == 1 and doc["status"] == "beyond_policy"
    opened = Opened(browser, out, tmp_path)
    page = opened.page
    header = page.locator("header#verdict").inner_text()
    assert header.startswith("BEYOND POLICY: flights-delay@")
    assert flights.run_id in header and doc["model"]["artifact"] in header
    assert "assay:standard" in header and doc["policy_hash"] in header and doc["data"]["current"]["fingerprint"] in header
    # what needs attention comes before everything else on the page, and names the blocking rule
    order = page.evaluate("() => [...document.querySelectorAll('main > *')].map(e => e.id || e.className)")
    assert order[:3] == ["verdict", "attention", "rules"]
    drift = opened.rule_row("drift")
    share = doc["drift"]["share_drifted"]
    assert drift["outcome"] == "block" and drift["measured"] == f"{share:.4f}" and drift["threshold"] == "<= 0.3"
    assert page.locator("#attention tr.rule[data-rule='drift']").count() == 1
    for rule in doc["verdict"]["rules"]:  # every monitor rule, with its outcome
        assert opened.rule_row(rule["id"])["outcome"] == rule["outcome"]
    # evidently was told the policy's threshold, and says what assay says
    assert opened.evidently_headline() == "Dataset Drift is detected. Dataset drift detection threshold is 0.3"
    agreement = page.locator("li.share-threshold")
    assert agreement.get_attribute("data-agree") == "true" and agreement.get_attribute("data-evidently-drift") == "true"
    assert doc["drift"]["evidently"]["drift_share"] == 0.3 and doc["drift"]["evidently"]["dataset_drift"] is True
    assert doc["drift"]["evidently"]["share"] == pytest.approx(share)
    shown = opened.frame.locator("text=Share of Drifted Columns").first
    assert shown.count() == 1
    shot = opened.shot("summer")
    assert shot.stat().st_size > 50_000
    assert opened.close() == [], "the page made a request beyond its own file"
    # the embedded report is the recorded artifact, byte for byte
    markup = out.read_text(encoding="utf-8")
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', markup, flags=re.S).group(1))  # type: ignore[union-attr]
    assert "sha256:" + hashlib.sha256(srcdoc.encode("utf-8")).hexdigest() == doc["report"]["html"]
    outer = markup.replace(re.search(r'srcdoc="[^"]*"', markup, flags=re.S).group(0), "")  # type: ignore[union-attr]
    assert external_links(outer) == []
    assert [u for u in external_links(srcdoc) if not u.startswith("https://plotly.com")] == []  # plotly's logo link


def test_a_stable_batch_is_not_drifted_for_either(flights: TrainedRun, browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "same_period.html"
    code, doc = monitor_page(flights, "same_period.csv", out)
    assert code == 0 and doc["drift"]["evidently"]["dataset_drift"] is False
    opened = Opened(browser, out, tmp_path)
    assert opened.page.locator("header#verdict").inner_text().startswith("STABLE: flights-delay@")
    assert opened.rule_row("drift")["outcome"] == "pass"
    assert opened.evidently_headline() == "Dataset Drift is NOT detected. Dataset drift detection threshold is 0.3"
    assert opened.page.locator("li.share-threshold").get_attribute("data-agree") == "true"
    opened.shot("same_period")
    assert opened.close() == []


def test_evidently_takes_the_thresholds_of_the_policy_given_on_the_command_line(
        flights: TrainedRun, browser: Any, tmp_path: Path) -> None:
    policy = tmp_path / "loose.toml"
    policy.write_text(LOOSE_POLICY, encoding="utf-8")
    out = tmp_path / "loose.html"
    code, doc = monitor_page(flights, "summer.csv", out, "--policy", str(policy))
    drift = doc["drift"]
    share = drift["share_drifted"]
    assert 0.3 < share <= 0.9 and code == 0  # beyond the standard policy, within this one
    # the per-column rule became evidently's threshold for that column, so assay's share counts its result
    distance = drift["columns"]["distance"]
    assert distance["threshold"] == 0.05 and distance["drifted"] is (distance["score"] >= 0.05)
    assert drift["columns"]["temp_f"]["threshold"] == 0.1  # other columns keep evidently's default
    opened = Opened(browser, out, tmp_path)
    header = opened.page.locator("header#verdict").inner_text()
    assert header.startswith("STABLE") and "loose-monitoring" in header and doc["policy_hash"] in header
    assert opened.rule_row("drift")["threshold"] == "<= 0.9"
    assert opened.evidently_headline() == "Dataset Drift is NOT detected. Dataset drift detection threshold is 0.9"
    config = opened.page.locator("#evidently-config").inner_text()
    assert "distance-drift" in config and "distance 0.05" in config
    # wind gusts are mostly missing, so evidently tests them with a p-value: a "<=" rule reads them backwards
    assert drift["columns"]["wind_gust_mph"]["statistic"] == "p_value"
    (mismatch,) = opened.page.locator("li.mismatch").all_inner_texts()
    assert "gust-drift" in mismatch and "wind_gust_mph" in mismatch and "p-value" in mismatch
    opened.shot("loose")
    assert opened.close() == []


# --------------------------------------------------------------------------- the threshold mapping


@given(st.integers(1, 60), st.data(), st.floats(0, 1), st.sampled_from(["<=", "<"]))
def test_evidently_and_the_rule_put_every_possible_share_on_the_same_side(n: int, data: st.DataObject, t: float,
                                                                          op: str) -> None:
    from assay.kit import share_threshold

    k = data.draw(st.integers(0, n))
    if data.draw(st.booleans()):
        t = k / n  # the boundary itself
    rule = {"id": "drift", "path": "drift.share_drifted", "op": op, "threshold": t, "stage": "monitor"}
    found = share_threshold([rule], n)
    assert found is not None and found["threshold"] == t
    share = k / n
    evidently_drifted = share >= found["drift_share"]  # evidently's get_dataset_drift
    assay_blocks = share > t if op == "<=" else share >= t
    assert evidently_drifted is assay_blocks
    assert found["drift_share"] == t or found["drift_share"] == math.nextafter(t, math.inf)


def test_only_blocking_numeric_share_rules_set_evidentlys_threshold() -> None:
    from assay.kit import drift_options

    rules = {"rules": [
        {"id": "w", "path": "drift.share_drifted", "op": "<=", "threshold": 0.1, "severity": "warn", "stage": "monitor"},
        {"id": "b", "path": "drift.share_drifted", "op": "<=", "threshold": "metrics.test.x", "stage": "monitor"},
        {"id": "t", "path": "drift.share_drifted", "op": "<=", "threshold": 0.2, "stage": "train"},
        {"id": "c", "path": "drift.columns.age.score", "op": "<=", "threshold": 0.2, "stage": "monitor"},
        {"id": "all", "path": "drift.columns.*.score", "op": "<=", "threshold": 0.15, "stage": "monitor"},
    ]}
    assert drift_options(rules, ["age", "sex"]) == {"threshold": 0.15, "per_column_threshold": {"age": 0.2}}
    assert drift_options(rules, ["sex"]) == {"threshold": 0.15}
    assert drift_options(None, ["age"]) == {}


def test_without_a_drift_share_rule_the_page_says_evidentlys_headline_decides_nothing(
        flights: TrainedRun, browser: Any, tmp_path: Path) -> None:
    policy = tmp_path / "columns.toml"
    policy.write_text('name = "columns-only"\n\n[[rules]]\nid = "temp"\npath = "drift.columns.temp_f.score"\n'
                      'op = "<="\nthreshold = 0.5\nstage = "monitor"\n', encoding="utf-8")
    out = tmp_path / "columns.html"
    code, doc = monitor_page(flights, "summer.csv", out, "--policy", str(policy))
    temp = doc["drift"]["columns"]["temp_f"]
    assert temp["threshold"] == 0.5 and code == (1 if temp["score"] > 0.5 else 0)
    opened = Opened(browser, out, tmp_path)
    assert opened.evidently_headline().endswith("Dataset drift detection threshold is 0.5")  # evidently's default
    note = opened.page.locator("li.share-threshold")
    assert note.get_attribute("data-agree") is None and "decides nothing here" in note.inner_text()
    assert [r["id"] for r in doc["verdict"]["rules"]] == ["temp"] and opened.rule_row("temp")["threshold"] == "<= 0.5"
    assert opened.close() == []
