"""What a user sees from `assay run`, `assay gate` and `assay report` in a CI log (no terminal, COLUMNS unset):
whole ids and rule names, blocks first, each finding in words with what to do, one line per finished stage.

The defects are planted on real data (the Adult sample of tests/checks/datasets.py): a double load that puts
copies of training rows in the holdout, and the label slipped in as a feature.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from junitparser import JUnitXml
from markdown_it import MarkdownIt

from tests.checks import datasets as ds
from tests.conftest import Result, run_assay

RUN_ID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")
DUPLICATES = re.compile(r"\d+ of \d+ test rows \(\d+\.\d+%\) are copies of training rows, e.g. row \d+ repeats row \d+")
TARGET_COPY = "high_earner_flag alone predicts the label (AUC 1.000)"
STAGES = ("data", "split", "train", "evaluate", "gate")


@dataclass
class Planted:
    home: Path
    spec: Path
    run: Result

    @property
    def run_id(self) -> str:
        found = RUN_ID.findall(self.run.stdout)
        assert found, self.run.stdout
        return found[0]


def _planted(root: Path, name: str, frame: object, spec: str) -> Planted:
    spec_path = ds.write(root / name, frame, spec)  # type: ignore[arg-type]
    home = root / name / "home"
    result = run_assay("run", str(spec_path), home=home)
    return Planted(home, spec_path, result)


@pytest.fixture(scope="module", autouse=True)
def _no_columns() -> Iterator[None]:
    """A console with no width to go by, as in most CI jobs: COLUMNS unset for the commands run here."""
    saved = os.environ.pop("COLUMNS", None)
    yield
    if saved is not None:
        os.environ["COLUMNS"] = saved


@pytest.fixture(scope="module")
def duplicates(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    fair = ds.adult_fair(2000)
    return _planted(tmp_path_factory.mktemp("out"), "duplicates", ds.with_duplicates(fair),
                    ds.adult_spec("duplicates", "random"))


@pytest.fixture(scope="module")
def target_copy(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    fair = ds.adult_fair(2000)
    return _planted(tmp_path_factory.mktemp("out"), "target-copy", ds.with_target_copy(fair), ds.adult_spec("target-copy"))


# --------------------------------------------------------------------------- assay run


def test_run_blocks_and_leads_with_what_blocked_it_in_words(duplicates: Planted) -> None:
    out = duplicates.run
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"BLOCKED  run {duplicates.run_id}  model duplicates@1  artifact sha256:")
    assert re.search(r"artifact sha256:[0-9a-f]{64}\b", lines[0]), "the artifact digest is printed whole"
    text = out.stdout
    assert DUPLICATES.search(text), text
    assert "drop_duplicates()" in text and "split.strategy" in text  # what to do about it
    # blocks, then warnings, then the count of passes, then the metrics
    block = text.index("no-leakage[duplicates]")
    warn = text.index("leakage-warnings[duplicates]")
    counts = re.search(r"^\d+ block, (\d+ warn, )?\d+ pass", text, flags=re.M)
    assert counts is not None, text
    assert block < warn < counts.start() < text.index("roc_auc")
    assert "beats-baseline" not in text, "passing rules are counted, not listed"


def test_no_id_or_rule_name_is_cut_without_a_terminal(duplicates: Planted) -> None:
    text = duplicates.run.stdout
    assert "…" not in text
    for rule in ("no-leakage[duplicates]", "no-leakage[fold_duplicates]", "leakage-warnings[duplicates]",
                 "leakage-warnings[fold_duplicates]"):
        assert re.search(rf"^\s*{re.escape(rule)}\s", text, flags=re.M), (rule, text)
    assert f"`assay gate {duplicates.run_id} --only all`" in text


def test_stderr_without_a_terminal_is_one_line_per_finished_stage(duplicates: Planted) -> None:
    lines = duplicates.run.stderr.splitlines()
    assert [line.split()[1] for line in lines] == list(STAGES), duplicates.run.stderr
    assert all(line.startswith("✓ ") for line in lines)
    data = lines[0]
    assert re.search(r"fingerprint=sha256:[0-9a-f]{64}$", data), "the data fingerprint is printed whole"
    assert re.search(r"fits=\d+/\d+", lines[2])


def test_columns_is_honoured_and_long_cells_wrap_instead_of_being_cut(duplicates: Planted) -> None:
    narrow = run_assay("gate", duplicates.run_id, home=duplicates.home, env={"COLUMNS": "90"})
    assert narrow.returncode == 1, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()[1:]) <= 90
    assert "…" not in narrow.stdout
    assert re.search(r"^\s*no-leakage\[duplicates\]\s", narrow.stdout, flags=re.M), narrow.stdout


# --------------------------------------------------------------------------- assay gate


def test_gate_text_lists_what_needs_attention_and_only_selects(duplicates: Planted) -> None:
    default = run_assay("gate", duplicates.run_id, home=duplicates.home)
    failing = run_assay("gate", duplicates.run_id, "--only", "failing", home=duplicates.home)
    everything = run_assay("gate", duplicates.run_id, "--only", "all", home=duplicates.home)
    for result in (default, failing, everything):
        assert result.returncode == 1, result.stderr
        assert "no-leakage[duplicates]" in result.stdout and "…" not in result.stdout
    assert "leakage-warnings[duplicates]" in default.stdout and "beats-baseline" not in default.stdout
    assert "leakage-warnings[duplicates]" not in failing.stdout
    assert "beats-baseline" in everything.stdout
    rows = [[cell.strip() for cell in line.split("│")] for line in everything.stdout.splitlines()]
    outcomes = [cells[1] for cells in rows if len(cells) > 2 and cells[0] and cells[1] in ("block", "warn", "pass", "n/a")]
    assert outcomes == sorted(outcomes, key=["block", "warn", "pass", "n/a"].index)
    assert "n/a" in outcomes and "business-cost" in everything.stdout


def test_gate_json_markdown_and_junit_carry_the_finding_and_the_fix(duplicates: Planted, target_copy: Planted) -> None:
    for planted, finding in ((duplicates, DUPLICATES), (target_copy, re.compile(re.escape(TARGET_COPY)))):
        as_json = run_assay("gate", planted.run_id, "--format", "json", home=planted.home)
        assert as_json.returncode == 1, as_json.stderr
        verdict = as_json.json["verdict"]
        blocking = [r for r in verdict["rules"] if r["outcome"] == "block"]
        assert any(finding.search(r["reason"]) and "Fix: " in r["reason"] for r in blocking), blocking
        assert any(finding.search(reason) for reason in verdict["reasons"])
        assert not any(r["outcome"] == "pass" and r["reason"].startswith("not applicable") for r in verdict["rules"])

        md = run_assay("gate", planted.run_id, "--format", "markdown", home=planted.home)
        assert md.returncode == 1 and finding.search(md.stdout), md.stdout
        html = MarkdownIt("commonmark").enable("table").render(md.stdout)
        assert "<table>" in html and "&amp;amp;" not in html
        assert f"<code>{planted.run_id}</code>" in html

        junit = run_assay("gate", planted.run_id, "--format", "junit", home=planted.home)
        suite = next(iter(JUnitXml.fromstring(junit.stdout)))
        failures = [case.result[0] for case in suite if case.result and case.result[0]._tag == "failure"]
        assert any(finding.search(f.message or "") for f in failures), [f.message for f in failures]
        assert suite.tests == len(verdict["rules"]), "machine formats list every rule by default"


def test_target_leak_is_named_in_the_run_summary(target_copy: Planted) -> None:
    assert target_copy.run.returncode == 1, target_copy.run.stderr
    assert TARGET_COPY in target_copy.run.stdout
    assert "data.drop" in target_copy.run.stdout and "high_earner_flag" in target_copy.run.stdout


# --------------------------------------------------------------------------- report, registry, log


def test_report_carries_the_findings(duplicates: Planted, target_copy: Planted, tmp_path: Path) -> None:
    for planted, finding in ((duplicates, DUPLICATES), (target_copy, re.compile(re.escape(TARGET_COPY)))):
        page = tmp_path / f"{planted.spec.parent.name}.html"
        result = run_assay("report", planted.run_id, "--output", str(page), home=planted.home)
        assert result.returncode == 0, result.stderr
        html = page.read_text(encoding="utf-8")
        assert finding.search(html) and "<b>Fix:</b>" in html
        assert html.index("no-leakage[") < html.index("beats-baseline"), "blocking rules come first"


def test_writing_into_a_missing_folder_is_bad_input_naming_the_path(duplicates: Planted, tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "dir" / "r.html"
    for command in (("report", duplicates.run_id), ("gate", duplicates.run_id, "--format", "markdown")):
        result = run_assay(*command, "--output", str(missing), home=duplicates.home)
        assert result.returncode == 2, (command, result.stderr)
        assert str(missing.parent) in result.stderr and "Traceback" not in result.stderr
        assert not missing.parent.exists()


def test_models_list_and_audit_log_print_whole_ids(duplicates: Planted) -> None:
    listed = run_assay("models", "list", home=duplicates.home)
    assert listed.returncode == 0, listed.stderr
    model = run_assay("models", "list", "--json", home=duplicates.home).json["models"][0]
    assert model["run_id"] in listed.stdout and model["artifact"] in listed.stdout and "…" not in listed.stdout
    log = run_assay("audit", "log", "--run", duplicates.run_id, home=duplicates.home)
    assert log.returncode == 0, log.stderr
    records = run_assay("audit", "log", "--run", duplicates.run_id, "--json", home=duplicates.home).json["records"]
    assert records[0]["key_id"] in log.stdout
    assert json.dumps(model["artifact"]).strip('"') in log.stdout
