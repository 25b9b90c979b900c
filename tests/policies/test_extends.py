"""``extends``: a policy starts from a pack and overrides rules by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.errors import BadInput
from assay.policies.language import load_policy
from assay.policies.packs import bundled_packs


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_override_changes_only_the_keys_given(tmp_path: Path) -> None:
    packs = dict(bundled_packs())
    base = load_policy("assay:standard", tmp_path, packs)
    path = write(tmp_path, 'extends = "assay:standard"\nname = "mine"\n[[rules]]\nid = "four-fifths"\nseverity = "warn"\n'
                           '[[rules]]\nid = "eo"\npath = "fairness.sex.equalized_odds_difference"\nop = "<="\n'
                           'threshold = 0.1\n')
    policy = load_policy(str(path), tmp_path, packs)
    assert policy.name == "mine"
    assert len(policy.rules) == len(base.rules) + 1
    inherited, mine = base.rule("four-fifths"), policy.rule("four-fifths")
    assert inherited is not None and mine is not None
    assert (mine.severity, inherited.severity) == ("warn", "block")
    assert str(mine.path) == str(inherited.path) and mine.threshold_text == inherited.threshold_text
    assert policy.rule("eo") is not None and policy.rule("eo").line == 6  # type: ignore[union-attr]
    assert policy.hash != base.hash


def test_errors_point_at_the_child_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'extends = "assay:standard"\n\n[[rules]]\nid = "four-fifths"\nop = "=>"\n')
    with pytest.raises(BadInput, match=r"policy.toml:5:\d+: rules\[0\].op: .*did you mean '>='"):
        load_policy(str(path), tmp_path, dict(bundled_packs()))


def test_extends_a_file_and_refuses_cycles(tmp_path: Path) -> None:
    write(tmp_path, 'extends = "assay:strict"\n[[rules]]\nid = "x"\npath = "gap.roc_auc"\nop = "<="\nthreshold = 0.2\n',
          "base.toml")
    child = write(tmp_path, 'extends = "base.toml"\n[[rules]]\nid = "x"\nthreshold = 0.1\n')
    policy = load_policy(str(child), tmp_path, dict(bundled_packs()))
    assert policy.rule("x").threshold_text == "0.1"  # type: ignore[union-attr]
    assert policy.approvals == 2  # inherited from assay:strict
    loop = write(tmp_path, 'extends = "loop.toml"\n[[rules]]\nid = "y"\npath = "gap.r2"\nop = "<="\nthreshold = 1\n',
                 "loop.toml")
    with pytest.raises(BadInput, match="extends itself"):
        load_policy(str(loop), tmp_path, {})
