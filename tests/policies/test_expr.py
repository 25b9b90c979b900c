"""The expression grammar: paths, thresholds and conditions parse, print and evaluate safely."""

from __future__ import annotations

import math
import operator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assay.policies import expr as ex


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("metrics.test.roc_auc", ("metrics", "test", "roc_auc")),
        ("checks.leakage.*.status", ("checks", "leakage", ex.WILDCARD, "status")),
        ("metrics.test.${metric}", ("metrics", "test", ex.Var("metric"))),
        ("metrics.test.${metric}_ci", ("metrics", "test", ex.Var("metric", suffix="_ci"))),
        ('fairness["sex&race"].demographic_parity_ratio', ("fairness", "sex&race", "demographic_parity_ratio")),
        ("fairness['age group'].x", ("fairness", "age group", "x")),
        ("metrics.test.ndcg@10", ("metrics", "test", "ndcg@10")),
        ("checks.leakage.near-duplicates.status", ("checks", "leakage", "near-duplicates", "status")),
        ("metrics.test.roc_auc_ci.0", ("metrics", "test", "roc_auc_ci", 0)),
    ],
)
def test_paths_parse(text: str, segments: tuple[Any, ...]) -> None:
    assert ex.parse_path(text).segments == segments


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty path"),
        ("metrics..test", "expected a key name"),
        ("metrics.test.", "expected a key name"),
        ("metrics test", "unexpected ' '"),
        ("metrics.${1x}", "expected the name of a top-level evidence value"),
        ("metrics.${metric", "unterminated"),
        ('fairness["sex', "unterminated string"),
    ],
)
def test_bad_paths_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ex.ExprError, match=message.replace("(", r"\(")):
        ex.parse_path(text)


def test_threshold_may_lead_with_its_comparison() -> None:
    op, tree = ex.parse_threshold(">= 0.8 * baseline")
    assert op == ">="
    assert tree == ex.BinOp("*", ex.Literal(0.8), ex.Baseline())
    assert ex.parse_threshold("baseline + 0.02") == (None, ex.BinOp("+", ex.Baseline(), ex.Literal(0.02)))
    assert ex.parse_threshold("not in ['fail', 'error']") == ("not in", ex.Literal(["fail", "error"]))


def test_precedence_and_unary_minus() -> None:
    tree = ex.parse_expr("1 + 2 * 3 - -4 / 2")
    assert ex.evaluate(tree, ex.Context({})) == 1 + 2 * 3 - -4 / 2
    assert ex.evaluate(ex.parse_expr("-(1 + 2) * 3"), ex.Context({})) == -9


def test_bare_words_are_rejected_with_a_quoting_hint() -> None:
    with pytest.raises(ex.ExprError, match="write it quoted: 'fail'") as info:
        ex.parse_expr("fail")
    assert info.value.offset == 0
    assert ex.parse_expr("'fail'") == ex.Literal("fail")
    assert ex.parse_expr("task") == ex.Ref(ex.Path(("task",)))  # a documented top-level name


@pytest.mark.parametrize(
    ("text", "offset"),
    [("baseline +", 10), ("=> 0.5", 0), ("0.5 0.6", 4), ("(1 + 2", 6), ("metrics.*.x", 8), ("1abc", 1)],
)
def test_errors_carry_their_offset(text: str, offset: int) -> None:
    with pytest.raises(ex.ExprError) as info:
        ex.parse_threshold(text)
    assert info.value.offset == offset


def test_no_python_evaluation_is_possible() -> None:
    for text in ("__import__('os').system('true')", "().__class__", "open('x')", "lambda: 1", "1 if 1 else 2"):
        with pytest.raises(ex.ExprError):
            ex.parse_expr(text)


def test_evaluation_reads_evidence_and_baseline() -> None:
    evidence = {"metric": "r2", "metrics": {"test": {"r2": 0.7}}, "baseline": {"test": {"r2": 0.1}}}
    ctx = ex.Context(evidence, baseline_path=ex.parse_path("baseline.test.r2"))
    assert ex.evaluate(ex.parse_expr("0.8 * baseline + metrics.test.${metric}"), ctx) == pytest.approx(0.78)


def test_missing_and_null_evidence_are_unresolved() -> None:
    evidence = {"metrics": {"test": {"r2": None}}}
    with pytest.raises(ex.Unresolved, match=r"no evidence at metrics\.train\.r2"):
        ex.evaluate(ex.parse_expr("metrics.train.r2"), ex.Context(evidence))
    with pytest.raises(ex.Unresolved, match="is null"):
        ex.evaluate(ex.parse_expr("metrics.test.r2 + 1"), ex.Context(evidence))
    with pytest.raises(ex.Unresolved, match=r"\$\{metric\} needs the evidence value 'metric'"):
        ex.evaluate(ex.parse_expr("metrics.test.${metric}"), ex.Context(evidence))


def test_type_errors_do_not_pass_silently() -> None:
    with pytest.raises(ex.EvalError, match="not a number"):
        ex.evaluate(ex.parse_expr("task + 1"), ex.Context({"task": "binary"}))
    with pytest.raises(ex.EvalError, match="division by zero"):
        ex.evaluate(ex.parse_expr("1 / a.b"), ex.Context({"a": {"b": 0}}))
    with pytest.raises(ex.EvalError):
        ex.compare("0.9", ">=", 0.5)
    with pytest.raises(ex.EvalError):
        ex.compare(True, ">=", 0)  # a boolean is not a number here
    assert not ex.compare(True, "==", 1)
    assert ex.compare("pass", "in", ["pass", "warn"])
    assert ex.compare("fail", "not in", ["pass", "warn"])


def test_wildcards_expand_in_key_order() -> None:
    evidence = {"checks": {"leakage": {"b": {"status": "fail"}, "a": {"status": "pass"}}, "data": {}}}
    matches = ex.expand(evidence, ex.parse_path("checks.*.*.status"))
    assert [(str(p), keys, v) for p, keys, v in matches] == [
        ("checks.leakage.a.status", ("leakage", "a"), "pass"),
        ("checks.leakage.b.status", ("leakage", "b"), "fail"),
    ]
    assert ex.expand(evidence, ex.parse_path("checks.fairness.*.status")) == []


def test_condition_forms() -> None:
    presence = ex.parse_condition("data.sensitive")
    assert presence.op is None
    compare = ex.parse_condition("task in ['binary', 'multiclass']")
    assert compare.op == "in" and compare.right == ex.Literal(["binary", "multiclass"])
    with pytest.raises(ex.ExprError, match="must be an evidence path"):
        ex.parse_condition("0.5")


# --------------------------------------------------------------------------- properties

names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in ("baseline", "true", "false", "in", "not") and s not in ex.TOP_LEVEL_NAMES)
numbers = st.one_of(st.integers(min_value=0, max_value=10**6),
                    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
refs = st.lists(names, min_size=2, max_size=4).map(lambda parts: ex.Ref(ex.Path(tuple(parts))))
leaves = st.one_of(numbers.map(ex.Literal), st.just(ex.Baseline()), refs,
                   st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6).map(ex.Literal))


def _trees(children: st.SearchStrategy[ex.Expr]) -> st.SearchStrategy[ex.Expr]:
    return st.one_of(st.builds(ex.BinOp, st.sampled_from("+-*/"), children, children),
                     st.builds(ex.Neg, children.filter(lambda c: not isinstance(c, ex.Literal))))


expressions = st.recursive(leaves, _trees, max_leaves=8)


@given(expressions)
def test_printing_then_parsing_gives_the_same_tree(tree: ex.Expr) -> None:
    assert ex.parse_expr(str(tree)) == tree


@given(st.lists(st.one_of(names, st.text(min_size=1, max_size=8)), min_size=1, max_size=4))
def test_any_key_round_trips_through_a_path(keys: list[str]) -> None:
    path = ex.Path(tuple(keys))
    assert ex.parse_path(str(path)).segments == tuple(keys)
    evidence: dict[str, Any] = {}
    node = evidence
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = 42
    assert ex.lookup(evidence, path) == 42


arith = st.recursive(numbers.map(ex.Literal),
                     lambda c: st.builds(ex.BinOp, st.sampled_from("+-*"), c, c), max_leaves=6)
_PY = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _python(tree: ex.Expr) -> float:
    if isinstance(tree, ex.Literal):
        return tree.value
    assert isinstance(tree, ex.BinOp)
    return _PY[tree.op](_python(tree.left), _python(tree.right))


@given(arith)
def test_arithmetic_matches_python(tree: ex.Expr) -> None:
    expected = _python(tree)
    got = ex.evaluate(ex.parse_expr(str(tree)), ex.Context({}))
    assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9) or (math.isinf(got) and math.isinf(expected))


@given(st.text(max_size=40))
def test_arbitrary_text_only_ever_raises_expr_error(text: str) -> None:
    for parse in (ex.parse_expr, ex.parse_threshold, ex.parse_condition, ex.parse_path):
        try:
            parse(text)
        except ex.ExprError as exc:
            assert 0 <= exc.offset <= len(text)
