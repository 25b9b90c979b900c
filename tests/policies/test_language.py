"""The policy TOML language: valid policies load; every mistake is a BadInput naming line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.errors import BadInput
from assay.policies import load_policy, parse_policy
from assay.policies.packs import bundled_packs

VALID = """\
name = "team-policy"
description = "What the credit team requires."
approvals = 1

[[rules]]
id = "beats-baseline"
description = "Beats the baseline"
path = "metrics.test.${metric}"
threshold = ">= baseline + 0.02"

[[rules]]
id = "no-leakage"
path = "checks.leakage.*.status"
op = "in"
threshold = ["pass", "warn", "skip"]

[[rules]]
id = "ci"
path = "metrics.test.${metric}"
bound = "lower"
op = ">"
threshold = "0.8 * baseline"
severity = "warn"

[[rules]]
id = "fair"
path = "fairness.*.selection_rate_ratio"
op = ">="
threshold = 0.8
when = ["data.sensitive", "task in ['binary', 'multiclass']"]

[[rules]]
id = "drift"
path = "drift.share_drifted"
op = "<="
threshold = 0.3
stage = "monitor"
"""


def test_a_valid_policy_loads_with_its_rules() -> None:
    policy = parse_policy(VALID, source="team.toml")
    assert policy.name == "team-policy"
    assert policy.approvals == 1
    assert [r.id for r in policy.rules] == ["beats-baseline", "no-leakage", "ci", "fair", "drift"]
    assert [r.line for r in policy.rules] == [5, 11, 17, 25, 32]
    first = policy.rules[0]
    assert (first.op, first.threshold_text, first.severity, first.stage) == (">=", "baseline + 0.02", "block", "train")
    assert policy.rules[2].bound == "lower"
    assert [str(c) for c in policy.rules[3].when] == ["data.sensitive", "task in ['binary', 'multiclass']"]
    assert [r.id for r in policy.rules_for("monitor")] == ["drift"]
    assert policy.hash.startswith("sha256:") and len(policy.hash) == 71


def test_the_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "release-gate.toml"
    path.write_text(VALID.replace('name = "team-policy"\n', ""), encoding="utf-8")
    assert load_policy("release-gate.toml", tmp_path, {}).name == "release-gate"


def test_the_hash_ignores_formatting_but_not_meaning() -> None:
    base = parse_policy(VALID).hash
    reformatted = "# a comment\n" + VALID.replace('threshold = 0.3', 'threshold   =   0.3   # drift')
    reordered = VALID.replace('id = "drift"\npath = "drift.share_drifted"', 'path = "drift.share_drifted"\nid = "drift"')
    assert parse_policy(reformatted).hash == base
    assert parse_policy(reordered).hash == base
    assert parse_policy(VALID.replace("threshold = 0.3", "threshold = 0.31")).hash != base
    assert parse_policy(VALID.replace("approvals = 1", "approvals = 2")).hash != base


def _error(text: str) -> str:
    with pytest.raises(BadInput) as info:
        parse_policy(textwrap.dedent(text), source="p.toml")
    return info.value.message


RULE = '[[rules]]\nid = "r"\npath = "metrics.test.roc_auc"\nop = ">="\nthreshold = 0.5\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown keys, with the nearest valid key suggested
        (RULE + 'severty = "warn"\n', "p.toml:6:1: rules[0].severty: unknown key 'severty'; did you mean 'severity'?"),
        ('nmae = "x"\n' + RULE, "p.toml:1:1: nmae: unknown key 'nmae'; did you mean 'name'?"),
        # comparisons
        (RULE.replace('op = ">="', 'op = "=>"'), "p.toml:4:6: rules[0].op: '=>' is not a comparison; use one of"),
        (RULE.replace('op = ">="', 'op = "gte"'), "did you mean '>='?"),
        (RULE.replace('op = ">="', 'op = ">"').replace("threshold = 0.5", 'threshold = "<= 0.5"'),
         "p.toml:5:13: rules[0].threshold: the threshold starts with '<=' but op is '>'"),
        (RULE.replace('op = ">="\n', ""), "p.toml:1:1: rules[0]: missing required key 'op'"),
        # thresholds
        (RULE.replace("threshold = 0.5", 'threshold = "baseline +"'),
         "p.toml:5:24: rules[0].threshold: expected a number, a quoted string, 'baseline' or an evidence path"),
        (RULE.replace("threshold = 0.5", 'threshold = "fail"').replace('op = ">="', 'op = "=="'),
         "p.toml:5:14: rules[0].threshold: 'fail' is neither a number, 'baseline' nor an evidence path"),
        (RULE.replace("threshold = 0.5", 'threshold = "\'fail\'"'),
         "p.toml:5:13: rules[0].threshold: '>=' compares numbers, but the threshold is 'fail'"),
        (RULE.replace('op = ">="', 'op = "in"'), "rules[0].threshold: 'in' needs a list threshold"),
        (RULE.replace("threshold = 0.5", "threshold = {a = 1}"), "p.toml:5:13: rules[0].threshold: must be a number"),
        (RULE.replace("threshold = 0.5\n", ""), "p.toml:1:1: rules[0]: missing required key 'threshold'"),
        (RULE.replace('path = "metrics.test.roc_auc"', 'path = "gap.roc_auc"').replace("0.5", '"baseline"'),
         "p.toml:5:13: rules[0].threshold: 'baseline' needs the rule's path to be metrics.<split>.<metric>"),
        # paths
        (RULE.replace("metrics.test.roc_auc", "metrics..roc_auc"),
         "p.toml:3:17: rules[0].path: expected a key name"),
        (RULE.replace('path = "metrics.test.roc_auc"\n', ""), "p.toml:1:1: rules[0]: missing required key 'path'"),
        (RULE.replace('path = "metrics.test.roc_auc"', "path = 3"), "p.toml:3:8: rules[0].path: must be a string"),
        # enumerations
        (RULE + 'severity = "fatal"\n', "p.toml:6:12: rules[0].severity: 'fatal' is not one of block, warn"),
        (RULE + 'bound = "lowr"\n', "rules[0].bound: 'lowr' is not one of lower, upper; did you mean 'lower'?"),
        (RULE + 'stage = "prod"\n', "p.toml:6:9: rules[0].stage: 'prod' is not one of train, monitor"),
        (RULE.replace('op = ">="', 'op = "=="') + 'bound = "lower"\n', "rules[0].bound: a confidence bound is a number"),
        # when
        (RULE + "when = 3\n", "p.toml:6:8: rules[0].when: must be a condition string or a list of them"),
        (RULE + 'when = "0.5"\n', "p.toml:6:9: rules[0].when: a condition without a comparison must be an evidence path"),
        (RULE + 'when = "metrics.*.x"\n', "rules[0].when: a wildcard '*' is only allowed in a rule's path"),
        # ids
        (RULE.replace('id = "r"', 'id = "has space"'), "p.toml:2:6: rules[0].id: 'has space' is not a valid rule id"),
        (RULE.replace('id = "r"\n', ""), "p.toml:1:1: rules[0]: missing required key 'id'"),
        (RULE + RULE, "p.toml:7:6: rules[1].id: duplicate rule id 'r' (also rules[0])"),
        # the policy level
        ('approvals = -1\n' + RULE, "p.toml:1:13: approvals: must be a whole number >= 0"),
        ('approvals = true\n' + RULE, "approvals: must be a whole number >= 0"),
        ('name = "x"\n', "p.toml:1:1: policy: the policy has no rules; add at least one [[rules]] table"),
        ('rules = 3\n', "p.toml:1:9: rules: must be an array of tables"),
        # TOML syntax
        (RULE + "oops\n", "p.toml:6:5: TOML syntax error: Expected '=' after a key"),
        ('[[rules]]\nid = "unterminated\n', "p.toml:2:19: TOML syntax error: Illegal character"),
    ],
)
def test_each_mistake_names_its_line_and_field(text: str, expected: str) -> None:
    message = _error(text)
    assert expected in message, message


def test_several_mistakes_are_reported_together_in_line_order() -> None:
    message = _error(RULE.replace('op = ">="', 'op = "=>"') + 'severity = "fatal"\n' + RULE.replace('"r"', '"s"')
                     .replace("0.5", '"baseline +"'))
    lines = message.splitlines()
    assert lines[0].startswith("p.toml:4:6: rules[0].op:")
    assert lines[1].startswith("p.toml:6:12: rules[0].severity:")
    assert lines[2].startswith("p.toml:11:24: rules[1].threshold:")
    assert lines[-1] == "(3 problems in this policy; check it with `assay policy check FILE`)"


def test_an_inline_table_rule_is_located_at_its_array() -> None:
    message = _error('rules = [\n  {id = "r", path = "a.b", op = "=>", threshold = 1},\n]\n')
    assert message.startswith("p.toml:1:1: rules[0].op: '=>' is not a comparison")


def test_load_policy_resolves_packs_and_paths(tmp_path: Path) -> None:
    packs = bundled_packs()
    standard = load_policy("assay:standard", tmp_path, packs)
    assert standard.name == "assay:standard"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "mine.toml").write_text(VALID, encoding="utf-8")
    assert load_policy("policies/mine.toml", tmp_path, packs).name == "team-policy"
    absolute = tmp_path / "policies" / "mine.toml"
    assert load_policy(str(absolute), Path("/nonexistent"), packs).hash == parse_policy(VALID).hash


def test_load_policy_errors_are_actionable(tmp_path: Path) -> None:
    packs = bundled_packs()
    with pytest.raises(BadInput, match=r"unknown policy pack 'assay:standrd'; did you mean 'assay:standard'\?"):
        load_policy("assay:standrd", tmp_path, packs)
    with pytest.raises(BadInput, match=r"policy file not found .*assay:standard, assay:strict"):
        load_policy("missing.toml", tmp_path, packs)
    bad = tmp_path / "bad.toml"
    bad.write_text(RULE.replace('op = ">="', 'op = "=>"'), encoding="utf-8")
    with pytest.raises(BadInput) as info:
        load_policy("bad.toml", tmp_path, packs)
    assert info.value.message.startswith(f"{bad}:4:6: rules[0].op:")
    (tmp_path / "latin1.toml").write_bytes(b'name = "\xe9"\n')
    with pytest.raises(BadInput, match="cannot read policy file"):
        load_policy("latin1.toml", tmp_path, packs)


@pytest.mark.parametrize("name", ["assay:standard", "assay:strict"])
def test_bundled_packs_are_valid(name: str) -> None:
    policy = load_policy(name, Path.cwd(), bundled_packs())
    assert policy.rules_for("train") and policy.rules_for("monitor")
    assert all(r.description for r in policy.rules)


def test_strict_is_stricter_than_standard() -> None:
    packs = bundled_packs()
    standard, strict = (load_policy(n, Path.cwd(), packs) for n in ("assay:standard", "assay:strict"))
    assert strict.approvals > standard.approvals == 0
    assert all(r.severity == "block" for r in strict.rules)
    assert any(r.bound == "lower" and str(r.path) == "metrics.test.${metric}" for r in strict.rules)
    gap = {p.name: next(r for r in p.rules if r.id == "generalization-gap") for p in (standard, strict)}
    assert gap["assay:strict"].threshold.value < gap["assay:standard"].threshold.value


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.data())
def test_a_bad_value_in_any_rule_is_reported_at_its_line(count: int, data: st.DataObject) -> None:
    bad_index = data.draw(st.integers(min_value=0, max_value=count - 1))
    field, bad_value = data.draw(st.sampled_from([("op", '"=>"'), ("severity", '"fatal"'), ("stage", '"prod"'),
                                                  ("threshold", '"baseline +"'), ("path", '"a..b"')]))
    comments = data.draw(st.lists(st.sampled_from(["", "# note", "   "]), min_size=count, max_size=count))
    lines: list[str] = []
    bad_line = 0
    for i in range(count):
        values = {"id": f'"r{i}"', "path": '"metrics.test.roc_auc"', "op": '">="', "threshold": "0.5",
                  "severity": '"block"', "stage": '"train"'}
        if i == bad_index:
            values[field] = bad_value
        lines += [comments[i], "[[rules]]"]
        for key, value in values.items():
            lines.append(f"{key} = {value}")
            if i == bad_index and key == field:
                bad_line = len(lines)
    message = _error("\n".join(lines) + "\n")
    assert message.startswith(f"p.toml:{bad_line}:"), message
    assert f"rules[{bad_index}].{field}:" in message.splitlines()[0]
