"""``assay report``: the evidence pack and the Annex IV template, rendered for real runs and read in Chromium.

One home holds four real runs, made with the real command line on bundled data: a binary
run on a sample of Adult with a planted duplicate load and a planted target copy (it blocks),
a regression run on diamonds, a ranking run on travel mode choice and a target-domain run on
the earnings surveys. The binary model is monitored on three labelled batches with ``assay
monitor``, and the home holds a checkpoint, so the report verifies against it. The pages are opened from
disk in headless Chromium with background networking off; a request listener proves the page
asks for nothing but itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assay.commands.charts import fmt
from tests.checks import datasets as ds
from tests.conftest import EXAMPLES, run_assay

CARD = """\
[project]
name = "credit-screen"
description = "Screens census records for incomes above $50K."
owner = "Credit risk team <risk@example.org>"
intended_use = "Ranking applications for manual review; not for automated refusals."
"""


@dataclass
class Home:
    path: Path
    root: Path
    runs: dict[str, str]

    def assay(self, *args: str) -> Any:
        return run_assay(*args, home=self.path, cwd=self.root)

    def records(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.assay("audit", "log", "--run", run_id, "--json").json["records"])

    def evidence(self, run_id: str) -> dict[str, Any]:
        return dict(next(r for r in self.records(run_id) if r["kind"] == "evidence")["payload"])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("report")
    h = Home(root / "home", root, {})
    frame = ds.with_duplicates(ds.with_target_copy(ds.adult_fair(3000)))
    spec = ds.adult_spec("credit-screen").replace('[project]\nname = "credit-screen"\n', CARD)
    spec = spec.replace('sensitive = ["sex"]', 'sensitive = ["sex", "race"]')
    binary = h.assay("run", str(ds.write(root / "binary", frame, spec)), "--json")
    assert binary.returncode == 1, binary.stderr[-2000:]
    h.runs["binary"] = binary.json["run_id"]
    fast = ("--set", "train.tuning=none", "--set", "split.cv_folds=3", "--json")
    regression = h.assay("run", str(EXAMPLES / "diamonds" / "assay.toml"), "--set", 'train.candidates=["ridge"]', *fast)
    assert regression.returncode in (0, 1), regression.stderr[-2000:]
    h.runs["regression"] = regression.json["run_id"]
    ranking = h.assay("run", str(EXAMPLES / "travel_mode_choice" / "assay.toml"), "--set",
                      'train.candidates=["pairwise_logistic"]', *fast)
    assert ranking.returncode in (0, 1), ranking.stderr[-2000:]
    h.runs["ranking"] = ranking.json["run_id"]
    domain = h.assay("run", str(EXAMPLES / "earnings_cps_psid" / "assay.toml"), "--set", 'train.candidates=["ridge"]',
                     *fast)
    assert domain.returncode in (0, 1), domain.stderr[-2000:]
    h.runs["domain"] = domain.json["run_id"]

    # Three labelled production batches through `assay monitor`: two like the training data, one of older people.
    for i, batch in enumerate((frame.sample(600, random_state=11), frame.sample(600, random_state=12),
                               frame[frame["age"] > 50].sample(600, random_state=13, replace=True))):
        batch.to_csv(root / f"batch-{i}.csv", index=False)
        monitored = h.assay("monitor", h.runs["binary"], "--current", str(root / f"batch-{i}.csv"), "--labels")
        assert monitored.returncode in (0, 1), monitored.stderr[-2000:]
    assert h.assay("audit", "checkpoint").returncode == 0
    return h


@dataclass
class Opened:
    page: Any
    html: str
    requests: list[str]
    shot: Path


def open_report(browser: Any, home: Home, run: str, tmp_path: Path, *extra: str) -> Iterator[Opened]:
    out = tmp_path / f"{run}.html"
    made = home.assay("report", home.runs[run], "--output", str(out), *extra)
    assert made.returncode == 0, made.stderr
    assert f"wrote {out}" in made.stdout
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    shot = tmp_path / f"{run}.png"
    page.screenshot(path=str(shot), full_page=True)
    yield Opened(page, out.read_text(encoding="utf-8"), requests, shot)
    context.close()
    assert requests == [out.as_uri()], f"the page asked for more than itself: {requests}"


def assert_self_contained(html: str) -> None:
    links = re.findall(r"""\b(?:src|href|xlink:href|action|poster|srcset)\s*=\s*["']?([^"'\s>]*)""", html, re.I)
    assert [u for u in links if not u.startswith(("#", "data:"))] == [], links
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert not re.search(r"<[^>]+\sstyle\s*=", html), "a style attribute would break the web view's CSP"


def overprecise(text: str) -> list[str]:
    """Decimal numbers with trailing zeros (``438.7000``) or more than 4 significant digits (versions aside)."""
    found = []
    for whole, frac in re.findall(r"(?<![\w.])(\d+)\.(\d+)(?![\w.])", text):
        digits = (whole.lstrip("0") + frac) if whole.strip("0") else frac.lstrip("0")
        if frac.endswith("0") or len(digits) > 4:
            found.append(f"{whole}.{frac}")
    return found


def points(page: Any, chart: str) -> int:
    figure = page.locator(f'figure.chart[data-chart="{chart}"]')
    assert figure.count() >= 1, f"no {chart} chart"
    return int(figure.first.locator("circle, rect.bar").count())


@pytest.fixture
def binary(browser: Any, home: Home, tmp_path: Path) -> Iterator[Opened]:
    yield from open_report(browser, home, "binary", tmp_path)


def test_the_binary_pack_leads_with_its_verdict_and_what_blocked_it(binary: Opened, home: Home) -> None:
    page = binary.page
    run = home.runs["binary"]
    header = page.locator("header.pack").inner_text()
    assert "credit-screen — BLOCK" in header
    evidence = home.evidence(run)
    assert evidence["model"]["artifact"] in header and evidence["policy_hash"] in header
    checkpoint_size = home.assay("audit", "verify", "--json").json["size"]
    assert f"tree size {checkpoint_size:,}" in header and "proven inside it" in header
    items = page.locator("#attention li").all_inner_texts()
    assert items[0].startswith("block")
    text = "\n".join(items)
    duplicates = evidence["checks"]["leakage"]["duplicates"]["message"]
    leak = evidence["checks"]["leakage"]["target_leakage"]["message"]
    assert "are copies of training rows" in duplicates and "high_earner_flag alone predicts the label" in leak
    assert duplicates in text and leak in text
    for check in ("duplicates", "target_leakage"):  # and what would fix each, as the check recorded it
        assert "Fix: " + evidence["checks"]["leakage"][check]["detail"]["fix"] in text, check
    assert text.count(duplicates) == 1, "a finding judged by two rules is listed once"
    tops = [page.locator(s).bounding_box()["y"] for s in ("#attention", "#card", "#charts", "#gate", "#checks",
                                                          "#lineage", "#records")]
    assert tops == sorted(tops) and tops[0] < 900, "what needs attention is first, above the fold at 1280 px"
    card = page.locator("#card").inner_text()
    assert "Credit risk team <risk@example.org>" in card and "not for automated refusals" in card
    assert evidence["data"]["fingerprint"] in card and evidence["split"]["test"]["fingerprint"] in card
    assert binary.shot.stat().st_size > 50_000


def test_every_binary_chart_is_drawn_from_the_recorded_evidence(binary: Opened, home: Home) -> None:
    page = binary.page
    curves = home.evidence(home.runs["binary"])["curves"]
    assert len(curves["roc"]["fpr"]) <= 200 and len(curves["pr"]["recall"]) <= 200
    assert points(page, "roc") == len(curves["roc"]["fpr"])
    assert points(page, "pr") == len(curves["pr"]["recall"])
    assert points(page, "calibration") == len(curves["calibration"]["predicted"])
    labels = curves["confusion"]["labels"]
    assert points(page, "confusion") == len(labels) ** 2 == 4
    cells = page.locator('figure[data-chart="confusion"] text.cell-text').all_text_contents()
    assert sum(int(c.replace(",", "")) for c in cells) == curves["rows"]
    for chart in ("metrics", "gap", "fairness", "fairness-errors", "fairness-intersection"):
        assert points(page, chart) > 0, chart
    sex = page.locator('figure[data-chart="fairness"]', has_text="Selection rate by sex")
    assert sex.count() == 1
    assert "0.8 × highest" in sex.inner_text() and sex.locator("rect.band").count() == 1
    assert page.locator('figure[data-chart="fairness-intersection"]', has_text="sex&race").count() >= 1
    monitors = [r for r in home.records(home.runs["binary"]) if r["kind"] == "monitor"]
    assert points(page, "monitoring-drift") == 3 and points(page, "monitoring-metric") == 3
    judged = [k for r in monitors for k, v in r["payload"]["evidence"]["fairness"].items()
              if v.get("selection_rate_ratio") is not None]
    assert "sex" in judged and points(page, "monitoring-fairness") == len(judged)  # one point per feature and batch
    shares = [fmt(r["payload"]["evidence"]["drift"]["share_drifted"]) for r in monitors]
    tips = page.locator('figure[data-chart="monitoring-drift"] circle title').all_text_contents()
    assert [t.rsplit(": ", 1)[1] for t in tips] == shares and [f"record {r['seq']}" in t for r, t in
                                                                zip(monitors, tips, strict=True)] == [True] * 3
    limit = next(x["threshold"] for x in monitors[0]["payload"]["verdict"]["rules"] if x["path"] == "drift.share_drifted")
    assert f"policy {fmt(limit)}" in page.locator('figure[data-chart="monitoring-drift"]').inner_text()
    assert_self_contained(binary.html)


def test_checks_are_tables_and_passing_rules_fold_into_a_count(binary: Opened, home: Home) -> None:
    page = binary.page
    gate = page.locator("#gate")
    summary = gate.locator("details summary").first.inner_text()
    verdict = next(r for r in home.records(home.runs["binary"]) if r["kind"] == "verdict")["payload"]
    passed = sum(1 for r in verdict["rules"] if r["outcome"] == "pass" and not r["reason"].startswith("not applicable"))
    assert summary == f"{passed} rules passed"
    assert not gate.locator("details").first.locator("table").is_visible()
    visible = page.locator("body").inner_text()
    shown = [*page.locator("td.num").all_inner_texts(), *page.locator("svg text").all_text_contents(),
             *page.locator("dl.detail dd").all_inner_texts(), page.locator("#environment").inner_text()]
    assert len(shown) > 100 and overprecise("\n".join(shown)) == [], "numbers shown beyond their precision"
    assert "peak" in shown[-1] and " MB" in shown[-1]
    assert "{'" not in visible and '{"' not in visible, "raw JSON in the page"
    records = page.locator("#records tr").count() - 1
    assert records == len(home.records(home.runs["binary"]))
    page.emulate_media(media="print")  # printed, every folded table is open
    assert gate.locator("details").first.locator("table").is_visible()
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 5


def test_regression_shows_residuals(browser: Any, home: Home, tmp_path: Path) -> None:
    for opened in open_report(browser, home, "regression", tmp_path):
        curves = home.evidence(home.runs["regression"])["curves"]["residuals"]
        assert points(opened.page, "residuals") == curves["sampled"] == len(curves["residual"]) <= 200
        assert points(opened.page, "residual-histogram") == len(curves["histogram"]["counts"])
        assert opened.page.locator('figure[data-chart="roc"]').count() == 0
        assert_self_contained(opened.html)


def test_ranking_shows_the_ndcg_of_every_query(browser: Any, home: Home, tmp_path: Path) -> None:
    for opened in open_report(browser, home, "ranking", tmp_path):
        evidence = home.evidence(home.runs["ranking"])
        ndcg = evidence["curves"]["ndcg"]
        assert points(opened.page, "ndcg") == len(ndcg["histogram"]["counts"]) == 10
        assert sum(ndcg["histogram"]["counts"]) == ndcg["queries"] > 0
        assert ndcg["mean"] == pytest.approx(evidence["metrics"]["test"]["ndcg@10"], abs=1e-6)
        assert_self_contained(opened.html)


def test_a_target_domain_is_charted_beside_the_source(browser: Any, home: Home, tmp_path: Path) -> None:
    for opened in open_report(browser, home, "domain", tmp_path):
        domain = home.evidence(home.runs["domain"])["domain"]
        figure = opened.page.locator('figure[data-chart="domain"]')
        assert points(opened.page, "domain") == 3  # r2 on the source holdout, the target, the baseline on the target
        titles = figure.locator("rect.bar title").all_text_contents()
        assert any(t.endswith(f"target domain: {fmt(domain['target']['metrics']['r2'])}") for t in titles), titles
        assert "data/target.csv" in figure.inner_text()
        card = opened.page.locator("#card").inner_text()
        assert "target domain" in card and domain["target"]["fingerprint"] in card


ANNEX_SECTIONS = ["1. General description of the AI system", "2. Development process",
                  "3. Validation and testing", "4. Test log: signed and dated", "5. Changes and post-market monitoring"]


def test_annex_iv_names_every_section_and_the_records_that_prove_it(home: Home, tmp_path: Path) -> None:
    run = home.runs["binary"]
    records = home.records(run)
    seq = {r["kind"]: r["seq"] for r in records}
    html_out, md_out = tmp_path / "annex.html", tmp_path / "annex.md"
    assert home.assay("report", run, "--template", "annex-iv", "--output", str(html_out)).returncode == 0
    made = home.assay("report", run, "--template", "annex-iv", "--format", "markdown", "--output", str(md_out))
    assert made.returncode == 0, made.stderr
    html, md = html_out.read_text(), md_out.read_text()
    assert_self_contained(html)
    for text in (html, md):
        for section in ANNEX_SECTIONS:
            assert section in text
        assert text.count("To be completed by the provider") >= 4
        for kind in ("run_started", "model", "data", "split", "evidence", "verdict"):
            assert f"seq {seq[kind]}" in text, kind
        assert "Ranking applications for manual review" in text and records[0]["key_id"] in text
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    assert headings == ANNEX_SECTIONS
    assert sum(1 for t in tokens if t.type == "table_open") >= 6
    rows_of_log = md.split("## 4. Test log")[1].split("\n\n")[1].splitlines()
    assert len(rows_of_log) == 2 + len(records)  # header, delimiter, one row per signed record


def test_the_card_as_markdown_says_what_the_page_says(home: Home, tmp_path: Path) -> None:
    run = home.runs["binary"]
    out = tmp_path / "card.md"
    assert home.assay("report", run, "--format", "markdown", "--output", str(out)).returncode == 0
    md = out.read_text()
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<h1>Evidence pack: credit-screen — BLOCK</h1>" in html
    assert "high_earner_flag alone predicts the label" in html
    assert "<h2>What needs attention first (" in html and "<table>" in html


def test_bad_input_is_one_message_and_the_ledger_is_untouched(home: Home, tmp_path: Path) -> None:
    size = home.assay("audit", "verify", "--json").json["size"]
    missing = home.assay("report", home.runs["binary"], "--output", str(tmp_path / "no" / "r.html"))
    assert missing.returncode == 2 and "--output" in missing.stderr and "does not exist" in missing.stderr
    unknown = home.assay("report", "01NOSUCHRUN000000000000000", "--output", str(tmp_path / "r.html"))
    assert unknown.returncode == 2 and "01NOSUCHRUN000000000000000" in unknown.stderr
    bad = home.assay("report", home.runs["binary"], "--template", "annex-v", "--output", str(tmp_path / "r.html"))
    assert bad.returncode == 2 and "annex-iv" in bad.stderr
    for result in (missing, unknown, bad):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.html").exists()
    assert home.assay("audit", "verify", "--json").json["size"] == size


def test_an_edited_record_heads_the_page(home: Home, tmp_path: Path, browser: Any) -> None:
    import shutil

    from tests.audit.tamper_tools import Raw

    copy = Home(tmp_path / "home", home.root, home.runs)
    shutil.copytree(home.path, copy.path)
    verdict = next(r for r in copy.records(home.runs["binary"]) if r["kind"] == "verdict")
    raw = Raw(f"sqlite:///{copy.path / 'assay.db'}")
    raw.drop_triggers()
    body = bytes(raw.row(verdict["seq"])[8])
    raw.set(verdict["seq"], body=body.replace(b'"decision":"block"', b'"decision":"pass"'))
    raw.close()
    for opened in open_report(browser, copy, "binary", tmp_path):
        header = opened.page.locator("header.pack").inner_text()
        assert "LEDGER NOT VERIFIED" in header and "recorded verdict (untrusted): pass" in header
        first = opened.page.locator("#attention li").first.inner_text()
        assert first.startswith("block") and f"record {verdict['seq']}" in first


def test_witness_cosignatures_of_the_checkpoint_are_named(home: Home, tmp_path: Path) -> None:
    import shutil

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from assay.audit.note import parse_note
    from assay.audit.witness import cosign

    copy = Home(tmp_path / "home", home.root, home.runs)
    shutil.copytree(home.path, copy.path)
    [note_path] = [p for p in (copy.path / "checkpoints").glob("*.note")]
    note = note_path.read_text()
    body, _ = parse_note(note)
    witnessed = note_path.with_name(note_path.name.replace(".note", ".witnessed.note"))
    witnessed.write_text(note + cosign(body, "witness.example/w1", Ed25519PrivateKey.generate(), 1_700_000_000))
    out = tmp_path / "pack.html"
    assert copy.assay("report", home.runs["binary"], "--output", str(out)).returncode == 0
    html = out.read_text()
    assert "<th>witnesses</th><td>witness.example/w1 " in html and "--witness-key" in html


def test_chart_data_is_recorded_in_the_signed_evidence(home: Home) -> None:
    records = home.records(home.runs["binary"])
    evidence = next(r for r in records if r["kind"] == "evidence")["payload"]
    curves = evidence["curves"]
    assert curves["rows"] == evidence["split"]["test"]["rows"]
    assert sum(curves["calibration"]["count"]) == curves["rows"]
    assert sum(map(sum, curves["confusion"]["matrix"])) == curves["rows"]
    verified = home.assay("audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"]
