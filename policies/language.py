"""The policy language: TOML rules over evidence paths, validated with line-precise errors.

A policy file::

    extends = "assay:standard"    # optional: start from a pack (or a policy file); a rule
                                  # below with an inherited id overrides just the keys it sets
    name = "my-policy"            # optional; defaults to the file name
    description = "..."           # optional
    approvals = 2                 # signed approvals needed to promote to production (default 0)

    [[rules]]
    id = "beats-baseline"         # letters, digits, - _ . :
    description = "Beats the baseline on the primary metric"
    path = "metrics.test.${metric}"
    op = ">="                     # >= > <= < == != in "not in"; may lead the threshold instead
    threshold = "baseline + 0.02" # number, list, or expression (see assay.policies.expr)
    severity = "block"            # block (default) | warn
    bound = "lower"               # optional: compare <path>_ci[0] (lower) or [1] (upper)
    stage = "train"               # train (default, gated by `assay gate`) | monitor (`assay monitor`)
    when = "data.sensitive"       # optional condition(s) for the rule to apply

Missing or null evidence makes a rule ``error`` (the gate blocks) unless its ``when``
says the rule does not apply. A ``when`` that is a bare path holds when that evidence
exists and is not an empty list/table/string or false (a null counts as present, so
"could not be computed" still blocks); ``when = "task in ['binary']"`` compares, and a
comparison on missing evidence is itself an error — the gate never guesses open.

:func:`load_policy` resolves a pack name or a path; :func:`parse_policy` validates text.
Every problem raises :class:`~assay.errors.BadInput` listing ``FILE:LINE:COL: FIELD: problem``.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from typing import Any
from typing import Literal as TLiteral

from assay.errors import BadInput
from assay.policies import expr as ex
from assay.policies.locate import Key, Position, find, locate_keys

POLICY_KEYS = ("extends", "name", "description", "approvals", "rules")
RULE_KEYS = ("id", "description", "path", "op", "threshold", "severity", "bound", "stage", "when")
SEVERITIES = ("block", "warn")
BOUNDS = ("lower", "upper")
STAGES = ("train", "monitor")
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_PACK_NAME = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")
_OP_HINTS = {"=>": ">=", "=<": "<=", "=": "==", "<>": "!=", "ge": ">=", "gt": ">", "le": "<=", "lt": "<",
             "eq": "==", "ne": "!=", "gte": ">=", "lte": "<=", "notin": "not in", "not_in": "not in"}


@dataclass(frozen=True)
class Rule:
    """One validated rule; ``threshold`` is an expression tree, ``threshold_text`` as written."""

    id: str
    path: ex.Path
    op: str
    threshold: ex.Expr
    threshold_text: str
    description: str = ""
    severity: TLiteral["block", "warn"] = "block"
    bound: TLiteral["lower", "upper"] | None = None
    stage: TLiteral["train", "monitor"] = "train"
    when: tuple[ex.Condition, ...] = ()
    line: int = 0

    def baseline_path(self, concrete: ex.Path) -> ex.Path | None:
        """Where ``baseline`` points for a matched path: ``metrics.S.M`` → ``baseline.S.M``."""
        segs = concrete.segments
        if len(segs) == 3 and segs[0] == "metrics":
            return ex.Path(("baseline", segs[1], segs[2]))
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "path": str(self.path), "op": self.op,
                               "threshold": self.threshold_text, "severity": self.severity, "stage": self.stage}
        if self.description:
            out["description"] = self.description
        if self.bound:
            out["bound"] = self.bound
        if self.when:
            out["when"] = [str(c) for c in self.when]
        return out


@dataclass(frozen=True)
class Policy:
    """A validated policy: its name, the hash of its canonical form, its rules."""

    name: str
    hash: str
    rules: tuple[Rule, ...]
    approvals: int = 0
    description: str = ""
    source: str = ""
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def rules_for(self, stage: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.stage == stage)

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hash": self.hash, "approvals": self.approvals, "description": self.description,
                "source": self.source, "rules": [r.to_json() for r in self.rules]}


def canonical_hash(document: Mapping[str, Any]) -> str:
    """``sha256:HEX`` of the RFC 8785 canonical JSON of the parsed policy document.

    Comments, key order and formatting do not change the hash; any change in meaning does.
    """
    import rfc8785

    return "sha256:" + hashlib.sha256(rfc8785.dumps(dict(document))).hexdigest()


# --------------------------------------------------------------------------- validation


@dataclass
class _Problem:
    key: Key
    message: str
    offset: int | None = None  # column offset inside a string value, for expression errors
    at_key: bool = False  # point at the key itself (unknown keys), not at its value


def _field_name(key: Key) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + part)
    return out or "policy"


def _nearest(word: str, choices: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else ""


class _Validator:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.doc = document
        self.problems: list[_Problem] = []

    def add(self, key: Key, message: str, offset: int | None = None, *, at_key: bool = False) -> None:
        self.problems.append(_Problem(key, message, offset, at_key))

    def unknown_keys(self, table: Mapping[str, Any], allowed: Sequence[str], where: Key) -> None:
        for key in table:
            if key not in allowed:
                self.add((*where, key), f"unknown key {key!r}{_nearest(key, allowed)} (valid keys: {', '.join(allowed)})",
                         at_key=True)

    def string(self, table: Mapping[str, Any], key: str, where: Key, *, required: bool = False) -> str | None:
        if key not in table:
            if required:
                self.add(where, f"missing required key {key!r}")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.add((*where, key), f"must be a string, got {_toml_type(value)}")
            return None
        return value

    def choice(self, table: Mapping[str, Any], key: str, where: Key, choices: Sequence[str]) -> str | None:
        value = self.string(table, key, where)
        if value is not None and value not in choices:
            self.add((*where, key), f"{value!r} is not one of {', '.join(choices)}{_nearest(value, choices)}")
            return None
        return value

    def policy(self) -> tuple[str, str, int, list[Rule]]:
        doc = self.doc
        self.unknown_keys(doc, POLICY_KEYS, ())
        name = self.string(doc, "name", ()) or ""
        if name and not name.strip():
            self.add(("name",), "must not be blank")
        description = self.string(doc, "description", ()) or ""
        approvals = doc.get("approvals", 0)
        if not isinstance(approvals, int) or isinstance(approvals, bool) or approvals < 0:
            self.add(("approvals",), f"must be a whole number >= 0 (signed approvals needed to promote to "
                                     f"production), got {approvals!r}")
            approvals = 0
        rules_raw = doc.get("rules")
        rules: list[Rule] = []
        if rules_raw is None:
            self.add((), "the policy has no rules; add at least one [[rules]] table")
        elif not isinstance(rules_raw, list) or not all(isinstance(r, dict) for r in rules_raw):
            self.add(("rules",), "must be an array of tables: write each rule under a [[rules]] header")
        elif not rules_raw:
            self.add(("rules",), "the policy has no rules; add at least one [[rules]] table")
        else:
            seen: dict[str, int] = {}
            for index, raw in enumerate(rules_raw):
                rule = self.rule(raw, ("rules", index))
                if rule is None:
                    continue
                if rule.id in seen:
                    self.add(("rules", index, "id"), f"duplicate rule id {rule.id!r} (also rules[{seen[rule.id]}])")
                    continue
                seen[rule.id] = index
                rules.append(rule)
        return name, description, approvals, rules

    def rule(self, raw: Mapping[str, Any], where: Key) -> Rule | None:
        before = len(self.problems)
        self.unknown_keys(raw, RULE_KEYS, where)
        rule_id = self.string(raw, "id", where, required=True)
        if rule_id is not None and not _RULE_ID.fullmatch(rule_id):
            self.add((*where, "id"), f"{rule_id!r} is not a valid rule id (letters, digits and - _ . : only, "
                                     "starting with a letter or digit)")
        description = self.string(raw, "description", where) or ""
        severity = self.choice(raw, "severity", where, SEVERITIES) or "block"
        bound = self.choice(raw, "bound", where, BOUNDS)
        stage = self.choice(raw, "stage", where, STAGES) or "train"

        path: ex.Path | None = None
        path_text = self.string(raw, "path", where, required=True)
        if path_text is not None:
            try:
                path = ex.parse_path(path_text)
            except ex.ExprError as exc:
                self.add((*where, "path"), exc.message, exc.offset)

        op: str | None = None
        op_text = self.string(raw, "op", where)
        if op_text is not None:
            normalized = " ".join(op_text.split())
            if normalized in ex.OPS:
                op = normalized
            else:
                hint = _OP_HINTS.get(normalized.lower())
                suggestion = f"; did you mean {hint!r}?" if hint else ""
                self.add((*where, "op"), f"{op_text!r} is not a comparison; use one of "
                                         f"{', '.join(ex.OPS)}{suggestion}")

        threshold, threshold_text, lead_op = self.threshold(raw, where)
        if lead_op is not None:
            if op is not None and op != lead_op:
                self.add((*where, "threshold"), f"the threshold starts with {lead_op!r} but op is {op!r}; "
                                                "keep one of them")
            op = lead_op
        if op is None and "op" not in raw and threshold is not None:
            self.add(where, f"missing required key 'op' (or start the threshold with one: {', '.join(ex.OPS)})")

        when = self.conditions(raw, where)

        if path is not None and threshold is not None and op is not None:
            self.static_checks(where, path, op, threshold, bound)
        if len(self.problems) > before or rule_id is None or path is None or op is None or threshold is None:
            return None
        assert threshold_text is not None
        return Rule(id=rule_id, path=path, op=op, threshold=threshold, threshold_text=threshold_text,
                    description=description, severity=severity,  # type: ignore[arg-type]
                    bound=bound, stage=stage, when=when)  # type: ignore[arg-type]

    def threshold(self, raw: Mapping[str, Any], where: Key) -> tuple[ex.Expr | None, str | None, str | None]:
        key = (*where, "threshold")
        if "threshold" not in raw:
            self.add(where, "missing required key 'threshold' (a number, a list for 'in', or an expression "
                            "such as \"baseline + 0.02\")")
            return None, None, None
        value = raw["threshold"]
        if isinstance(value, bool) or _is_number(value):
            return ex.Literal(value), ex.Literal(value).__str__(), None
        if isinstance(value, list):
            bad = [v for v in value if not (isinstance(v, str | bool) or _is_number(v))]
            if bad:
                self.add(key, f"list items must be strings, numbers or booleans, got {_toml_type(bad[0])}")
                return None, None, None
            return ex.Literal(list(value)), ex.Literal(list(value)).__str__(), None
        if isinstance(value, str):
            try:
                op, tree = ex.parse_threshold(value)
            except ex.ExprError as exc:
                self.add(key, exc.message, exc.offset)
                return None, None, None
            text = str(tree)
            return tree, text, op
        self.add(key, f"must be a number, a list or an expression string, got {_toml_type(value)}")
        return None, None, None

    def conditions(self, raw: Mapping[str, Any], where: Key) -> tuple[ex.Condition, ...]:
        if "when" not in raw:
            return ()
        value = raw["when"]
        items = [value] if isinstance(value, str) else value
        key = (*where, "when")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.add(key, f"must be a condition string or a list of them, got {_toml_type(value)}")
            return ()
        out = []
        for item in items:
            try:
                out.append(ex.parse_condition(item))
            except ex.ExprError as exc:
                self.add(key, f"{exc.message} (in {item!r})", exc.offset if len(items) == 1 else None)
        return tuple(out)

    def static_checks(self, where: Key, path: ex.Path, op: str, threshold: ex.Expr, bound: str | None) -> None:
        key = (*where, "threshold")
        if op in ex.ORDERING_OPS:
            if isinstance(threshold, ex.Literal) and not _is_number(threshold.value):
                self.add(key, f"{op!r} compares numbers, but the threshold is {threshold}; use == / != / in "
                              "to compare text")
            if isinstance(threshold, ex.ListExpr):
                self.add(key, f"{op!r} compares numbers, but the threshold is a list")
        if op in ex.MEMBERSHIP_OPS and not (isinstance(threshold, ex.ListExpr) or
                                            (isinstance(threshold, ex.Literal) and isinstance(threshold.value, list))):
            self.add(key, f"{op!r} needs a list threshold, e.g. threshold = [\"pass\", \"warn\"]")
        if bound is not None and op not in ex.ORDERING_OPS:
            self.add((*where, "bound"), f"a confidence bound is a number; use it with >=, >, <= or <, not {op!r}")
        if ex.uses_baseline(threshold):
            segs = path.segments
            if not (len(segs) == 3 and segs[0] == "metrics"):
                self.add(key, "'baseline' needs the rule's path to be metrics.<split>.<metric> (it then means "
                              "baseline.<split>.<metric>); for other paths name the baseline value, e.g. "
                              "baseline.test.roc_auc")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
             dict: "a table"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return f"{name} ({value!r})" if kind in (bool, int, float) else name
    return type(value).__name__


def _format(source: str, positions: Mapping[Key, Position], problem: _Problem, lines: list[str]) -> str:
    exact = positions.get(problem.key)
    pos = exact or find(dict(positions), problem.key)
    line, col = (pos.line, pos.col) if pos else (1, 1)
    if exact is not None and exact.value_col and not problem.at_key:
        col = exact.value_col
        value_line = lines[line - 1] if line - 1 < len(lines) else ""
        opening = value_line[col - 1:col]
        single_line_string = opening in ("'", '"') and not value_line[col - 1:].startswith(opening * 3)
        if problem.offset is not None and single_line_string:
            col += 1 + problem.offset
    return f"{source}:{line}:{col}: {_field_name(problem.key)}: {problem.message}"


def _line_number(message: str) -> tuple[int, int]:
    _, line, col, _rest = message.split(":", 3) if message.count(":") >= 3 else ("", "0", "0", "")
    return (int(line), int(col)) if line.isdigit() and col.isdigit() else (0, 0)


_TOML_POS = re.compile(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$", re.S)
_TOML_EOF = re.compile(r"^(.*?)\s*\(at end of document\)$", re.S)


def _inherit(document: dict[str, Any], parent: Policy) -> tuple[dict[str, Any], dict[int, int]]:
    """Merge ``document`` over the policy it extends; map merged rule indexes to the child's."""
    inherited = [dict(r) for r in parent.document.get("rules", [])]
    by_id = {r.get("id"): i for i, r in enumerate(inherited)}
    origin: dict[int, int] = {}
    own = document.get("rules", [])
    for j, rule in enumerate(own if isinstance(own, list) else []):
        if isinstance(rule, dict) and rule.get("id") in by_id:
            i = by_id[rule["id"]]
            inherited[i] = {**inherited[i], **rule}
        else:
            inherited.append(rule)
            i = len(inherited) - 1
        origin[i] = j
    merged = {k: v for k, v in parent.document.items() if k not in ("name", "extends")}
    merged.update({k: v for k, v in document.items() if k != "extends"})
    merged["rules"] = inherited
    merged["extends"] = {"policy": parent.name, "hash": parent.hash}
    return merged, origin


def parse_policy(text: str, source: str = "<policy>", name: str | None = None, *,
                 packs: Mapping[str, str] | None = None, base_dir: FsPath | str | None = None,
                 _seen: tuple[str, ...] = ()) -> Policy:
    """Validate policy TOML ``text``; ``source`` names it in messages (a path or a pack name).

    :param name: the policy's name; defaults to the document's ``name`` key, then ``source``'s stem.
    :param packs: registered packs, for ``extends``.
    :param base_dir: where a relative ``extends`` path is resolved (default: ``source``'s folder).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _TOML_POS.match(message)
        if m:
            raise BadInput(f"{source}:{m.group(2)}:{m.group(3)}: TOML syntax error: {m.group(1)}") from None
        m = _TOML_EOF.match(message)
        line = len(text.splitlines()) or 1
        raise BadInput(f"{source}:{line}:1: TOML syntax error: {m.group(1) if m else message}") from None
    origin: dict[int, int] | None = None
    extends = document.get("extends")
    if extends is not None:
        if not isinstance(extends, str) or not extends:
            raise BadInput(f"{source}:1:1: extends: must be a pack name or a policy file path")
        parent = load_policy(extends, base_dir or FsPath(source).parent, packs or {}, _seen=(*_seen, source))
        document, origin = _inherit(document, parent)
    validator = _Validator({k: v for k, v in document.items() if k != "extends"})
    doc_name, description, approvals, rules = validator.policy()
    if validator.problems:
        positions = locate_keys(text)
        text_lines = text.splitlines()
        if origin is not None:  # point at the child's own lines
            for problem in validator.problems:
                if len(problem.key) >= 2 and problem.key[0] == "rules" and isinstance(problem.key[1], int):
                    problem.key = ("rules", origin.get(problem.key[1], problem.key[1]), *problem.key[2:])
        lines = [_format(source, positions, p, text_lines) for p in validator.problems]
        lines.sort(key=_line_number)
        count = len(lines)
        summary = f"\n({count} problems in this policy; check it with `assay policy check FILE`)" if count > 1 else ""
        raise BadInput("\n".join(lines) + summary)
    positions = locate_keys(text)
    located = []
    for index, rule in enumerate(rules):
        child_index = index if origin is None else origin.get(index)
        pos = find(positions, ("rules", child_index)) if child_index is not None else None
        located.append(replace(rule, line=pos.line if pos else 0))
    policy_name = name or doc_name or FsPath(source).stem or source
    return Policy(name=policy_name, hash=canonical_hash(document), rules=tuple(located), approvals=approvals,
                  description=description, source=source, document=document)


def load_policy(ref: str, base_dir: FsPath | str, packs: Mapping[str, str], *, _seen: tuple[str, ...] = ()) -> Policy:
    """Load the policy ``ref``: a registered pack name (``assay:standard``) or a TOML path.

    :param ref: the pack name or path (relative paths are relative to ``base_dir``).
    :param base_dir: the directory of the spec that names the policy.
    :param packs: pack name → TOML text, as collected through ``register_policies``.
    :raises BadInput: unknown pack, missing or unreadable file, or an invalid policy.
    """
    if ref in _seen or str(FsPath(base_dir) / ref) in _seen:
        raise BadInput(f"{_seen[-1]}: extends: {ref!r} extends itself (through {' -> '.join(_seen)})")
    if ref in packs:
        return parse_policy(packs[ref], source=ref, name=ref, packs=packs, _seen=_seen)
    path = FsPath(ref).expanduser()
    if not path.is_absolute():
        path = FsPath(base_dir) / path
    if _PACK_NAME.fullmatch(ref) and not path.exists():
        known = ", ".join(sorted(packs)) or "none registered"
        raise BadInput(f"gate.policy: unknown policy pack {ref!r}{_nearest(ref, sorted(packs))} (bundled packs: "
                       f"{known}); or give the path of a policy TOML file")
    if not path.is_file():
        raise BadInput(f"{path}: policy file not found (from {ref!r}); give a policy TOML path or a pack name "
                       f"({', '.join(sorted(packs)) or 'none registered'})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read policy file: {exc}") from exc
    return parse_policy(text, source=str(path), packs=packs, base_dir=path.parent, _seen=_seen)
