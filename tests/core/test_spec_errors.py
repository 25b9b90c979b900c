"""Malformed specs and arguments: each exits 2 with one message naming the field, writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_assay

ADULT_CSV = (EXAMPLES / "adult" / "data" / "adult.csv").as_posix()

GOOD = f"""\
[project]
name = "adult"

[data]
source = "{ADULT_CSV}"
target = "income"
task = "binary"
sensitive = ["sex", "race"]
drop = ["fnlwgt", "split"]

[split]
strategy = "stratified"
test_size = 0.2
cv_folds = 3
seed = 1

[train]
tuning = "none"

[evaluate]
baseline = "dummy"
"""


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


# (case id, spec text or None for "no file", extra CLI args, text the message must contain)
CASES = [
    ("missing-file", None, [], "spec file not found"),
    ("toml-syntax", GOOD + "\n[split\nseed = 3\n", [], "TOML syntax error"),
    ("unknown-section", GOOD + '\n[trian]\nbudget = 3\n', [], "did you mean 'train'"),
    ("unknown-key", edit('target = "income"', 'targt = "income"'), [], "did you mean 'data.target'"),
    ("wrong-type", edit("test_size = 0.2", 'test_size = "big"'), [], "split.test_size"),
    ("out-of-range", edit("test_size = 0.2", "test_size = 1.5"), [], "split.test_size"),
    ("too-few-folds", edit("cv_folds = 3", "cv_folds = 1"), [], "split.cv_folds"),
    ("bad-task", edit('task = "binary"', 'task = "clustering"'), [], "data.task"),
    ("bad-strategy", edit('strategy = "stratified"', 'strategy = "stratifed"'), [], "split.strategy"),
    ("missing-name", edit('name = "adult"', ""), [], "project.name"),
    ("missing-source", edit(f'source = "{ADULT_CSV}"', ""), [], "data.source"),
    ("sensitive-not-list", edit('sensitive = ["sex", "race"]', 'sensitive = "sex"'), [], "data.sensitive"),
    ("target-not-in-data", edit('target = "income"', 'target = "incom"'), [], "data.target"),
    ("sensitive-not-in-data", edit('["sex", "race"]', '["gender"]'), [], "data.sensitive"),
    ("data-file-missing", edit(f'source = "{ADULT_CSV}"', 'source = "nope.csv"'), [], "data.source"),
    ("bad-executor", edit('tuning = "none"', 'tuning = "none"\nexecutor = "spark://x"'), [], "train.executor"),
    ("unknown-tuner", edit('tuning = "none"', 'tuning = "bayes"'), [], "train.tuning"),
    ("unknown-candidate", edit('tuning = "none"', 'tuning = "none"\ncandidates = ["xgboost"]'), [], "train.candidates"),
    ("target-dropped", edit('drop = ["fnlwgt", "split"]', 'drop = ["income"]'), [], "data"),
    ("set-without-equals", GOOD, ["--set", "split.seed"], "--set"),
    ("set-bad-type", GOOD, ["--set", "split.cv_folds=abc"], "split.cv_folds"),
    ("bad-project-name", edit('name = "adult"', 'name = "my model"'), [], "project.name"),
    ("text-without-column", edit('task = "binary"', 'task = "text"'), [], "text_column"),
    ("negative-cost", edit('baseline = "dummy"', 'baseline = "dummy"\ncost = { fp = -1.0, fn = 5.0 }'), [], "evaluate.cost.fp"),
    ("unknown-cost-key", edit('baseline = "dummy"', 'baseline = "dummy"\ncost = { fp = 1.0, fx = 5.0 }'), [],
     "evaluate.cost"),
    ("unknown-policy-pack", edit('baseline = "dummy"', 'baseline = "dummy"\n\n[gate]\npolicy = "assay:nope"'), [],
     "assay:nope"),
    ("binary-with-many-classes", edit('target = "income"', 'target = "race"').replace('["sex", "race"]', '["sex"]'),
     [], "data.task"),
]


@pytest.mark.parametrize(("spec_text", "args", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec_exits_2_naming_the_field(tmp_path: Path, spec_text: str | None, args: list[str],
                                                   needle: str) -> None:
    spec = tmp_path / "assay.toml"
    if spec_text is not None:
        spec.write_text(spec_text, encoding="utf-8")
    home = tmp_path / "home"
    result = run_assay("run", str(spec), "-q", *args, home=home)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert needle in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one clear message
    if spec_text is not None:
        assert str(spec) in result.stderr or "--set" in result.stderr or "data." in result.stderr
    assert not (home / "assay.db").exists(), "a rejected spec must write nothing"


def test_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


def test_bad_plugin_option_exits_2(tmp_path: Path) -> None:
    result = run_assay("-p", "ledger", "plugins", home=tmp_path)
    assert result.returncode == 2
    assert "-p no:NAME" in result.stderr
