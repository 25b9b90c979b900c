"""The policy expression grammar: evidence paths, thresholds and ``when`` conditions.

A small, safe language (no ``eval``) used by policy rules::

    path       := segment ("." segment)*
    segment    := NAME | INDEX | "*" | "${" NAME "}" | "[" STRING "]"
    threshold  := [OP] expr
    condition  := expr [OP expr]
    expr       := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | STRING | "true" | "false" | "baseline"
                | path | "(" expr ")" | "[" [expr ("," expr)*] "]"
    OP         := ">=" | ">" | "<=" | "<" | "==" | "!=" | "in" | "not in"

``NAME`` is letters, digits, ``_``, ``@`` and ``&`` (``ndcg@10``, ``sex&race``); the
``path`` field of a rule also allows ``-`` inside names, where an expression reads it as
minus. Keys with other characters are written ``fairness["age group"]``. ``*`` matches
every key of a table (only in a rule's ``path``); ``${metric}`` is replaced by the
evidence's top-level string ``metric`` (``${metric}_ci`` works too). Inside an expression
a path must contain a dot (``baseline.test.roc_auc``), except the top-level names
``task``, ``metric``, ``project`` and ``run_id``; any other bare word (besides
``baseline``, ``true``, ``false``) is almost always a forgotten quote, so it is rejected
with that hint.

Parsing raises :class:`ExprError` with the 0-based offset of the problem; evaluation
raises :class:`Unresolved` when evidence is missing or null (the gate fails closed) and
:class:`EvalError` when values have the wrong type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Top-level evidence values an expression may name without a dot (``task == 'binary'``).
TOP_LEVEL_NAMES = frozenset({"task", "metric", "project", "run_id"})
OPS = (">=", ">", "<=", "<", "==", "!=", "in", "not in")
ORDERING_OPS = frozenset({">=", ">", "<=", "<"})
MEMBERSHIP_OPS = frozenset({"in", "not in"})


class ExprError(ValueError):
    """A syntax or static error in a path or expression, at ``offset`` (0-based)."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class Unresolved(Exception):
    """Evidence a rule needs is missing or null: the rule errors and the gate blocks."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EvalError(Exception):
    """Evidence has a value the rule cannot use (a string where a number is needed, ...)."""


# --------------------------------------------------------------------------- paths


class _Wildcard:
    """The ``*`` path segment."""

    def __repr__(self) -> str:
        return "*"


WILDCARD = _Wildcard()


@dataclass(frozen=True)
class Var:
    """A path segment with ``${name}`` in it, replaced by the evidence's top-level string ``name``."""

    name: str
    prefix: str = ""
    suffix: str = ""

    def __str__(self) -> str:
        return self.prefix + "${" + self.name + "}" + self.suffix

    def fill(self, value: str) -> str:
        return self.prefix + value + self.suffix


Segment = str | int | Var | _Wildcard

_NAME_CHARS = re.compile(r"[A-Za-z0-9_@&]")
_NAME_CHARS_DASH = re.compile(r"[A-Za-z0-9_@&\-]")
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_@&\-]*")


def format_segments(segments: Sequence[Segment]) -> str:
    """The canonical text of a path: ``a.b.*.${metric}``, ``fairness["age group"].x``."""
    out = ""
    for seg in segments:
        if isinstance(seg, _Wildcard):
            text, bracket = "*", False
        elif isinstance(seg, Var | int):
            text, bracket = str(seg), False
        else:
            bracket = not _BARE_NAME.fullmatch(seg)
            text = '["' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"]' if bracket else seg
        if bracket:
            out += text
        else:
            out += ("." if out else "") + text
    return out


@dataclass(frozen=True)
class Path:
    """A parsed evidence path."""

    segments: tuple[Segment, ...]

    def __str__(self) -> str:
        return format_segments(self.segments)

    @property
    def has_wildcard(self) -> bool:
        return any(isinstance(s, _Wildcard) for s in self.segments)

    @property
    def variables(self) -> list[str]:
        return [s.name for s in self.segments if isinstance(s, Var)]


class _Scanner:
    """Character-level cursor shared by the path and expression parsers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_space(self) -> None:
        while not self.at_end() and self.text[self.pos].isspace():
            self.pos += 1

    def string(self) -> str:
        """A quoted string starting at the cursor ('...' or "..."), with \\-escapes."""
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out = []
        while not self.at_end():
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == quote:
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise ExprError(f"unterminated string starting with {quote}", start)


def _read_word(sc: _Scanner, chars: re.Pattern[str]) -> str | Var:
    """A key name, possibly with one ``${name}`` inside (``${metric}_ci``)."""
    start = sc.pos
    parts: list[str] = []
    var: Var | None = None
    while not sc.at_end():
        if sc.peek(2) == "${":
            at = sc.pos
            end = sc.text.find("}", sc.pos)
            if end < 0:
                raise ExprError("unterminated ${...}", at)
            name = sc.text[sc.pos + 2:end]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ExprError(f"${{{name}}}: expected the name of a top-level evidence value, e.g. ${{metric}}", at)
            if var is not None:
                raise ExprError("one ${...} per path segment", at)
            var = Var(name, prefix="".join(parts))
            parts = []
            sc.pos = end + 1
        elif chars.match(sc.peek()):
            parts.append(sc.peek())
            sc.pos += 1
        else:
            break
    if var is None:
        return sc.text[start:sc.pos]
    return Var(var.name, var.prefix, "".join(parts))


def _read_path(sc: _Scanner, *, allow_dash: bool, allow_wildcard: bool) -> Path:
    """Read a path at the cursor (the first segment must start here)."""
    segments: list[Segment] = []
    chars = _NAME_CHARS_DASH if allow_dash else _NAME_CHARS
    first = True
    while True:
        start = sc.pos
        ch = sc.peek()
        if ch == "[" and sc.peek(2)[1:] in ("'", '"'):
            sc.pos += 1
            name = sc.string()
            if sc.peek() != "]":
                raise ExprError('expected "]" after a quoted key', sc.pos)
            sc.pos += 1
            segments.append(name)
        elif ch == "*":
            if not allow_wildcard:
                raise ExprError("a wildcard '*' is only allowed in a rule's path", start)
            sc.pos += 1
            segments.append(WILDCARD)
        elif ch.isdigit() and not first:
            while not sc.at_end() and sc.peek().isdigit():
                sc.pos += 1
            segments.append(int(sc.text[start:sc.pos]))
        elif ch and (ch.isalpha() or ch == "_" or sc.peek(2) == "${"):
            segments.append(_read_word(sc, chars))
        else:
            shown = repr(ch) if ch else "end of text"
            raise ExprError(f"expected a key name, '*' or ${{...}} but found {shown}", start)
        first = False
        if sc.peek() == ".":
            sc.pos += 1
            continue
        if sc.peek() == "[" and sc.peek(2)[1:] in ("'", '"'):
            continue
        return Path(tuple(segments))


def parse_path(text: str, *, allow_wildcard: bool = True) -> Path:
    """Parse a rule's ``path`` (or ``when``) field: ``checks.leakage.*.status``."""
    sc = _Scanner(text.strip())
    if sc.at_end():
        raise ExprError("empty path; write a dotted evidence path such as metrics.test.roc_auc", 0)
    path = _read_path(sc, allow_dash=True, allow_wildcard=allow_wildcard)
    if not sc.at_end():
        raise ExprError(f"unexpected {sc.peek()!r} in path", sc.pos + (len(text) - len(text.lstrip())))
    return path


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Literal:
    """A constant: number, string, boolean, or a list of constants."""

    value: Any

    def __str__(self) -> str:
        return _show_literal(self.value)


@dataclass(frozen=True)
class Ref:
    """An evidence path inside an expression."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Baseline:
    """``baseline``: the baseline's value of the metric the rule measures."""

    def __str__(self) -> str:
        return "baseline"


@dataclass(frozen=True)
class ListExpr:
    """``[a, b, ...]`` whose items are expressions."""

    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.items)) + "]"


@dataclass(frozen=True)
class Neg:
    operand: Expr

    def __str__(self) -> str:
        return f"-{_wrap(self.operand)}"


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr

    def __str__(self) -> str:
        return f"{_wrap(self.left)} {self.op} {_wrap(self.right)}"


Expr = Literal | Ref | Baseline | ListExpr | Neg | BinOp


def _wrap(e: Expr) -> str:
    return f"({e})" if isinstance(e, BinOp) else str(e)


def _show_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show_literal(v) for v in value) + "]"
    return repr(value)


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, depth first."""
    yield expr
    if isinstance(expr, Neg):
        yield from walk(expr.operand)
    elif isinstance(expr, BinOp):
        yield from walk(expr.left)
        yield from walk(expr.right)
    elif isinstance(expr, ListExpr):
        for item in expr.items:
            yield from walk(item)


def uses_baseline(expr: Expr) -> bool:
    return any(isinstance(node, Baseline) for node in walk(expr))


_NUMBER = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.sc = _Scanner(text)

    def error(self, message: str) -> ExprError:
        return ExprError(message, self.sc.pos)

    def peek_op(self) -> str | None:
        self.sc.skip_space()
        rest = self.sc.text[self.sc.pos:]
        for op in (">=", "<=", "==", "!=", ">", "<"):
            if rest.startswith(op):
                return op
        m = re.match(r"(not\s+in|in)(?![A-Za-z0-9_@&])", rest)
        if m:
            return "not in" if m.group(1) != "in" else "in"
        if rest.startswith("=>") or rest.startswith("=<") or (rest.startswith("=") and not rest.startswith("==")):
            raise self.error(f"{rest[:2].strip()!r} is not a comparison; use one of {', '.join(OPS)}")
        return None

    def take_op(self) -> str:
        op = self.peek_op()
        assert op is not None
        rest = self.sc.text[self.sc.pos:]
        m = re.match(r"not\s+in" if op == "not in" else re.escape(op), rest)
        assert m is not None
        self.sc.pos += m.end()
        return op

    def expr(self) -> Expr:
        left = self.term()
        while True:
            self.sc.skip_space()
            ch = self.sc.peek()
            if ch in ("+", "-"):
                self.sc.pos += 1
                left = BinOp(ch, left, self.term())
            else:
                return left

    def term(self) -> Expr:
        left = self.unary()
        while True:
            self.sc.skip_space()
            ch = self.sc.peek()
            if ch in ("*", "/"):
                self.sc.pos += 1
                left = BinOp(ch, left, self.unary())
            else:
                return left

    def unary(self) -> Expr:
        self.sc.skip_space()
        if self.sc.peek() == "-":
            self.sc.pos += 1
            operand = self.unary()
            if isinstance(operand, Literal) and _is_number(operand.value):
                return Literal(-operand.value)
            return Neg(operand)
        if self.sc.peek() == "+":
            self.sc.pos += 1
            return self.unary()
        return self.atom()

    def atom(self) -> Expr:
        sc = self.sc
        sc.skip_space()
        start = sc.pos
        ch = sc.peek()
        if not ch:
            raise self.error("expected a number, a quoted string, 'baseline' or an evidence path, but the text ended")
        if ch == "(":
            sc.pos += 1
            inner = self.expr()
            sc.skip_space()
            if sc.peek() != ")":
                raise self.error("expected ')'")
            sc.pos += 1
            return inner
        if ch == "[":
            sc.pos += 1
            items: list[Expr] = []
            sc.skip_space()
            if sc.peek() == "]":
                sc.pos += 1
                return Literal([])
            while True:
                items.append(self.expr())
                sc.skip_space()
                if sc.peek() == ",":
                    sc.pos += 1
                    sc.skip_space()
                    if sc.peek() == "]":
                        sc.pos += 1
                        break
                    continue
                if sc.peek() == "]":
                    sc.pos += 1
                    break
                raise self.error("expected ',' or ']' in a list")
            if all(isinstance(i, Literal) for i in items):
                return Literal([i.value for i in items if isinstance(i, Literal)])
            return ListExpr(tuple(items))
        if ch in ("'", '"'):
            return Literal(sc.string())
        m = _NUMBER.match(sc.text, sc.pos)
        if m:
            sc.pos = m.end()
            raw = m.group(0)
            number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            if sc.peek() and (sc.peek().isalpha() or sc.peek() == "_"):
                raise self.error(f"unexpected {sc.peek()!r} after the number {raw}")
            return Literal(number)
        if ch.isalpha() or ch == "_" or sc.peek(2) == "${":
            path = _read_path(sc, allow_dash=False, allow_wildcard=False)
            if len(path.segments) == 1 and isinstance(path.segments[0], str):
                word = path.segments[0]
                if word == "baseline":
                    return Baseline()
                if word in ("true", "false"):
                    return Literal(word == "true")
                if word in TOP_LEVEL_NAMES:
                    return Ref(path)
                sc.pos = start
                raise self.error(
                    f"{word!r} is neither a number, 'baseline' nor an evidence path (paths have a dot, "
                    f"e.g. baseline.test.roc_auc); to compare with the text {word} write it quoted: '{word}'"
                )
            return Ref(path)
        raise self.error(f"unexpected {ch!r}")

    def finish(self) -> None:
        self.sc.skip_space()
        if not self.sc.at_end():
            raise self.error(f"unexpected {self.sc.peek()!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_expr(text: str) -> Expr:
    """Parse an expression such as ``baseline + 0.02`` or ``0.8 * baseline.test.r2``."""
    p = _ExprParser(text)
    p.sc.skip_space()
    if p.sc.at_end():
        raise ExprError("empty expression", 0)
    e = p.expr()
    p.finish()
    return e


def parse_threshold(text: str) -> tuple[str | None, Expr]:
    """Parse a threshold string, optionally led by its comparison: ``>= 0.8 * baseline``."""
    p = _ExprParser(text)
    op = p.take_op() if p.peek_op() else None
    p.sc.skip_space()
    if p.sc.at_end():
        raise ExprError("expected a value after the comparison" if op else "empty threshold", p.sc.pos)
    e = p.expr()
    p.finish()
    return op, e


@dataclass(frozen=True)
class Condition:
    """A ``when`` condition: ``left`` alone is a presence test, else ``left OP right``."""

    left: Expr
    op: str | None = None
    right: Expr | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text or (str(self.left) if self.op is None else f"{self.left} {self.op} {self.right}")


def parse_condition(text: str) -> Condition:
    """Parse a ``when`` condition: ``data.sensitive`` or ``task in ['binary', 'multiclass']``."""
    p = _ExprParser(text)
    p.sc.skip_space()
    if p.sc.at_end():
        raise ExprError("empty condition", 0)
    left = p.expr()
    op = p.take_op() if p.peek_op() else None
    right = None
    if op is not None:
        right = p.expr()
    p.finish()
    if op is None and not isinstance(left, Ref):
        raise ExprError("a condition without a comparison must be an evidence path (true when that evidence exists)", 0)
    return Condition(left, op, right, text.strip())


# --------------------------------------------------------------------------- evaluation

_MISSING = object()


def _child(node: Any, seg: str | int) -> Any:
    if isinstance(node, Mapping):
        if isinstance(seg, int):
            return node.get(str(seg), _MISSING)
        return node.get(seg, _MISSING)
    if isinstance(node, list) and isinstance(seg, int):
        return node[seg] if 0 <= seg < len(node) else _MISSING
    return _MISSING


def substitute(path: Path, evidence: Mapping[str, Any]) -> Path:
    """Replace ``${name}`` segments by the evidence's top-level string values."""
    if not path.variables:
        return path
    out: list[Segment] = []
    for seg in path.segments:
        if isinstance(seg, Var):
            value = evidence.get(seg.name, _MISSING)
            if value is _MISSING:
                raise Unresolved(str(path), f"${{{seg.name}}} needs the evidence value {seg.name!r}, which is missing")
            if not isinstance(value, str) or not value:
                raise Unresolved(str(path), f"${{{seg.name}}} needs {seg.name!r} to be a name, got {value!r}")
            out.append(seg.fill(value))
        else:
            out.append(seg)
    return Path(tuple(out))


def lookup(evidence: Mapping[str, Any], path: Path) -> Any:
    """The value at a concrete path (``${...}`` substituted, no wildcard); raises Unresolved."""
    concrete = substitute(path, evidence)
    node: Any = evidence
    walked: list[Segment] = []
    for seg in concrete.segments:
        assert isinstance(seg, str | int), "lookup() needs a path without wildcards"
        node = _child(node, seg)
        walked.append(seg)
        if node is _MISSING:
            shown = format_segments(walked)
            where = "" if shown == str(concrete) else f" (no {shown})"
            raise Unresolved(str(concrete), f"no evidence at {concrete}{where}")
    return node


def exists(evidence: Mapping[str, Any], path: Path) -> bool:
    try:
        lookup(evidence, path)
    except Unresolved:
        return False
    return True


def expand(evidence: Mapping[str, Any], path: Path) -> list[tuple[Path, tuple[str, ...], Any]]:
    """Every concrete match of ``path``: ``(concrete path, wildcard keys, value)``, sorted by key.

    ``${...}`` are substituted first. A path without wildcards has at most one match.
    """
    concrete = substitute(path, evidence)
    matches: list[tuple[list[Segment], list[str], Any]] = [([], [], evidence)]
    for seg in concrete.segments:
        nxt: list[tuple[list[Segment], list[str], Any]] = []
        for walked, keys, node in matches:
            if isinstance(seg, _Wildcard):
                if isinstance(node, Mapping):
                    items: list[tuple[str | int, Any]] = sorted(((str(k), v) for k, v in node.items()),
                                                                key=lambda kv: str(kv[0]))
                elif isinstance(node, list):
                    items = list(enumerate(node))
                else:
                    items = []
                for key, value in items:
                    nxt.append(([*walked, key], [*keys, str(key)], value))
            else:
                assert isinstance(seg, str | int)
                value = _child(node, seg)
                if value is not _MISSING:
                    nxt.append(([*walked, seg], keys, value))
        matches = nxt
    return [(Path(tuple(w)), tuple(k), v) for w, k, v in matches]


@dataclass
class Context:
    """What an expression can see: the evidence and, for ``baseline``, where the baseline lives."""

    evidence: Mapping[str, Any]
    baseline_path: Path | None = None
    baseline_hint: str = ""


def _need_number(value: Any, what: str) -> float:
    if not _is_number(value):
        raise EvalError(f"{what} is {value!r}, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise EvalError(f"{what} is {value!r}, not a finite number")
    return value


def _resolved(value: Any, where: str) -> Any:
    if value is None:
        raise Unresolved(where, f"{where} is null (it could not be computed)")
    return value


def evaluate(expr: Expr, ctx: Context) -> Any:
    """The value of ``expr`` on the evidence; raises Unresolved / EvalError."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Ref):
        where = str(substitute(expr.path, ctx.evidence))
        return _resolved(lookup(ctx.evidence, expr.path), where)
    if isinstance(expr, Baseline):
        if ctx.baseline_path is None:
            raise EvalError(ctx.baseline_hint or "'baseline' has no meaning for this rule's path")
        return _resolved(lookup(ctx.evidence, ctx.baseline_path), str(ctx.baseline_path))
    if isinstance(expr, ListExpr):
        return [evaluate(item, ctx) for item in expr.items]
    if isinstance(expr, Neg):
        return -_need_number(evaluate(expr.operand, ctx), str(expr.operand))
    left = _need_number(evaluate(expr.left, ctx), str(expr.left))
    right = _need_number(evaluate(expr.right, ctx), str(expr.right))
    if expr.op == "+":
        return left + right
    if expr.op == "-":
        return left - right
    if expr.op == "*":
        return left * right
    if right == 0:
        raise EvalError(f"division by zero: {expr.right} is 0")
    return left / right


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}


def _same(a: Any, b: Any) -> bool:
    """Equality that does not confuse booleans with numbers (true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def compare(measured: Any, op: str, threshold: Any) -> bool:
    """``measured OP threshold``; raises EvalError when the types do not fit the comparison."""
    if op in ORDERING_OPS:
        _need_number(measured, "the measured value")
        _need_number(threshold, "the threshold")
        return _COMPARE[op](measured, threshold)
    if op in MEMBERSHIP_OPS:
        if not isinstance(threshold, list):
            raise EvalError(f"'{op}' needs a list threshold, got {threshold!r}")
        found = any(_same(measured, item) for item in threshold)
        return found if op == "in" else not found
    if op in ("==", "!="):
        equal = _same(measured, threshold)
        return equal if op == "==" else not equal
    raise EvalError(f"unknown comparison {op!r}")
