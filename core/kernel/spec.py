"""The run spec (``assay.toml``): parsing, validation, overrides and clear errors.

Every user mistake becomes a :class:`~assay.errors.BadInput` naming the file, the field
and a fix: a missing file, a TOML syntax error, an unknown key (with the nearest valid
key suggested), a wrong type or value.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from assay.errors import BadInput

DEFAULT_METRIC = {
    "binary": "roc_auc",
    "multiclass": "f1_macro",
    "regression": "r2",
    "ranking": "ndcg@10",
    "text": "f1_macro",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- time expressions

#: Units of a ``data.decision_time`` / ``data.available_at`` offset, in seconds (singular or plural).
TIME_UNITS = {"minute": 60, "hour": 3_600, "day": 86_400}
TIME_EXPRESSION_SYNTAX = '"<column>" or "<column> - <N> minutes|hours|days" (or +), e.g. "departure - 2 hours"'
_MAX_OFFSET_S = 100 * 366 * 86_400
_OFFSET = re.compile(r"(?P<sign>[+-])\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>minute|hour|day)s?\s*$", re.IGNORECASE)
_SIGN_AFTER_SPACE = re.compile(r"\s[+-]")


@dataclass(frozen=True)
class TimeExpression:
    """A time per row: the value of a date/time ``column``, shifted by ``seconds`` (signed)."""

    column: str
    seconds: float = 0.0

    def __str__(self) -> str:
        if not self.seconds:
            return self.column
        size = abs(self.seconds)
        unit, per = next(((u, n) for u, n in reversed(TIME_UNITS.items()) if size % n == 0), ("minute", 60))
        amount = size / per
        number = f"{Decimal(repr(amount)).normalize():f}"  # positional and exact: reads back to the same float
        return f"{self.column} {'-' if self.seconds < 0 else '+'} {number} {unit}{'' if amount == 1 else 's'}"


def parse_time_expression(text: str) -> TimeExpression:
    """``"col"``, ``"col - 1 days"``, ``"col + 90 minutes"`` → :class:`TimeExpression`; ValueError says how to write one."""
    stripped = text.strip()
    match = _OFFSET.search(stripped)
    column = stripped[:match.start()].strip() if match else stripped
    unread = _SIGN_AFTER_SPACE.search(column)  # a sign after a space starts an offset, never a name
    if unread:
        raise ValueError(f"cannot read the offset {stripped[unread.start():].strip()!r} (one sign, a number, then "
                         f"minutes, hours or days); write {TIME_EXPRESSION_SYNTAX}")
    seconds = 0.0
    if match:
        size = float(match["amount"]) * TIME_UNITS[match["unit"].lower()]
        if size > _MAX_OFFSET_S:
            raise ValueError(f"offset {match.group(0).strip()!r} is more than 100 years; write {TIME_EXPRESSION_SYNTAX}")
        seconds = -size if match["sign"] == "-" else size
    if not column or column[-1] in "+-":
        raise ValueError(f"names no column; write {TIME_EXPRESSION_SYNTAX}")
    return TimeExpression(column, seconds)


def _time_expression(value: str) -> str:
    parse_time_expression(value)
    return value


def _time_expression_or_empty(value: str) -> str:
    return _time_expression(value) if value.strip() else value


class ProjectSpec(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    owner: str = ""  # who answers for the model (shown in the report's model card)
    intended_use: str = ""  # what it is for and what it is not for (model card, Annex IV section 1)

    @model_serializer(mode="wrap")
    def _without_empty_card(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Specs that leave the model-card keys out keep the dump, and so the hash, they had before.
        data: dict[str, Any] = handler(self)
        for key in ("owner", "intended_use"):
            if not data.get(key):
                data.pop(key, None)
        return data


class DataSpec(_Section):
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    task: Literal["", "binary", "multiclass", "regression", "ranking", "text"] = ""
    query: str = ""
    sensitive: list[str] = []
    features: list[str] = []
    drop: list[str] = []
    id_column: str = ""
    group_column: str = ""
    time_column: str = ""
    text_column: str = ""
    target_domain: str = ""
    roles: dict[str, Literal["numeric", "categorical", "text", "datetime", "id", "group", "drop"]] = {}
    positive_label: str = ""
    #: the CSV field separator of data.source and data.target_domain: one character ("\t" for tabs)
    sep: str = ","
    #: drop rows equal to an earlier row (every column but ids) before the split; the count is in the evidence
    dedupe: bool = False
    #: when the prediction is made, per row: a date/time column, optionally shifted (TIME_EXPRESSION_SYNTAX)
    decision_time: Annotated[str, AfterValidator(_time_expression_or_empty)] = ""
    #: when a column's value becomes known, per row (same syntax); a column left out is known by the decision
    available_at: dict[str, Annotated[str, AfterValidator(_time_expression)]] = {}

    @field_validator("sep", mode="before")
    @classmethod
    def _sep(cls, value: Any) -> Any:
        value = {"\\t": "\t", "tab": "\t"}.get(value, value) if isinstance(value, str) else value
        if isinstance(value, str) and (len(value) != 1 or value in "\"\r\n" or value.isalnum()):
            raise ValueError("must be one separator character, e.g. \",\", \";\", \"|\" or \"\\t\" (tab)")
        return value

    @model_serializer(mode="wrap")
    def _without_unset_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Specs that leave these keys out (comma-separated, no decision time) keep the dump, and so
        # the hash, they had before the keys existed.
        data: dict[str, Any] = handler(self)
        if self.sep == ",":
            data.pop("sep", None)
        for key in ("decision_time", "available_at", "dedupe"):
            if not data.get(key):
                data.pop(key, None)
        return data

    def timing_columns(self) -> list[tuple[str, str]]:
        """``(spec key, column)`` for each column ``decision_time`` and ``available_at`` name (keys included)."""
        named: list[tuple[str, str]] = []
        if self.decision_time.strip():
            named.append(("data.decision_time", parse_time_expression(self.decision_time).column))
        for column, when in self.available_at.items():
            named += [("data.available_at", column),
                      (f"data.available_at.{column}", parse_time_expression(when).column)]
        return named

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        if self.target in self.drop:
            raise ValueError(f"target {self.target!r} is also listed in drop; remove it from drop")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed in features; remove it from features")
        if self.task == "text" and not self.text_column:
            raise ValueError("task = 'text' needs text_column = '<column with the documents>'")
        if self.task == "ranking" and not self.group_column:
            raise ValueError("task = 'ranking' needs group_column = '<query id column>'")
        if self.available_at and not self.decision_time.strip():
            raise ValueError("available_at says when columns become known, but there is no decision time to "
                             f"compare with; add decision_time = {TIME_EXPRESSION_SYNTAX}")
        return self


#: Thresholdout's defaults (Dwork et al. 2015, Science 349; docs/leakage.md says why)
HOLDOUT_DEFAULTS = {"holdout": "plain", "holdout_budget": 10, "holdout_threshold": 0.04, "holdout_sigma": 0.01}


class SplitSpec(_Section):
    strategy: Literal["random", "stratified", "group", "time"] = "stratified"
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    cv_folds: int = Field(5, ge=2, le=50)
    seed: int = 42
    #: "reusable": the primary holdout metric is answered through Thresholdout (plugins/selection.py)
    holdout: Literal["plain", "reusable"] = "plain"
    #: overfitting detections the holdout allows in reusable mode (fixed by its first reusable evaluation)
    holdout_budget: int = Field(10, ge=1, le=10_000)
    holdout_threshold: float = Field(0.04, gt=0.0, lt=1.0)
    holdout_sigma: float = Field(0.01, gt=0.0, lt=1.0)

    @model_serializer(mode="wrap")
    def _without_default_holdout(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Specs on a plain holdout keep the dump, and so the hash, they had before the keys existed.
        data: dict[str, Any] = handler(self)
        for key, default in HOLDOUT_DEFAULTS.items():
            if data.get(key) == default:
                data.pop(key, None)
        return data


class TrainSpec(_Section):
    # budget, n_jobs and class_weight left out (or "auto") are scaled to the data at training
    # time (assay.plugins.training.scaled_defaults), which records the value used and why;
    # None keeps "not given" apart from any value a user gives, and a given value always wins.
    candidates: list[str] = []
    tuning: str = "halving_random"
    budget: int | None = Field(None, ge=1, le=10_000)
    metric: str = ""
    executor: str = "local"
    n_jobs: int | None = Field(None, ge=-1)
    class_weight: Literal["balanced", "none"] | None = None
    domain_weighting: bool = False

    @field_validator("budget", "n_jobs", "class_weight", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        return None if value == "auto" else value

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        if value != "local" and not value.startswith("dask://"):
            raise ValueError("must be 'local' or 'dask://HOST:PORT'")
        return value


class CostSpec(_Section):
    fp: float = Field(ge=0)
    fn: float = Field(ge=0)
    tp: float = 0.0
    tn: float = 0.0


class EvaluateSpec(_Section):
    baseline: str = "dummy"
    cost: CostSpec | None = None
    bootstrap: int = Field(200, ge=0, le=10_000)
    min_group_size: int = Field(30, ge=1)


class GateSpec(_Section):
    policy: str = "assay:standard"


class MonitorSpec(_Section):
    reference_rows: int = Field(5000, ge=100)
    #: Unlabelled batches without sensitive columns: rows scored for prediction drift (a uniform sample).
    score_rows: int = Field(20_000, ge=1000)


class RunSpec(_Section):
    """A validated ``assay.toml``."""

    project: ProjectSpec
    data: DataSpec
    split: SplitSpec = SplitSpec()
    train: TrainSpec = TrainSpec()
    evaluate: EvaluateSpec = EvaluateSpec()
    gate: GateSpec = GateSpec()
    monitor: MonitorSpec = MonitorSpec()
    #: ``[plugins.NAME]`` tables, each validated by the plugin NAME (:func:`check_plugin_sections`).
    plugins: dict[str, dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _without_empty_plugins(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Specs without plugin tables keep the dump, and so the hash, they had before the section existed.
        data: dict[str, Any] = handler(self)
        if not self.plugins:
            data.pop("plugins", None)
        return data

    @property
    def metric(self) -> str:
        return self.train.metric or DEFAULT_METRIC.get(self.data.task or "binary", "roc_auc")

    def canonical_json(self) -> bytes:
        import json

        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()

    @property
    def hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_json()).hexdigest()


# --------------------------------------------------------------------------- loading


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _section_model(loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> type[BaseModel]:
    model: type[BaseModel] = root or RunSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            break
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nested is None:
            break
        model = nested
    return model


def _as_list(given: str) -> list[str]:
    """``"sex"`` → ``["sex"]``; ``"sex, race"`` → ``["sex", "race"]`` (what a list value was probably meant to be)."""
    return [part.strip() for part in given.split(",") if part.strip()] or [given]


def _describe(err: dict[str, Any], overridden: frozenset[str] = frozenset(), root: type[BaseModel] | None = None,
              prefix: tuple[str, ...] = ()) -> str:
    """One validation error in words; ``root``/``prefix``: a plugin's table model and where it sits."""
    loc = (*prefix, *err["loc"])
    dotted = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _section_model(tuple(err["loc"])[:-1], root)
        key = str(loc[-1])
        near = difflib.get_close_matches(key, _allowed_keys(parent), n=1, cutoff=0.5)
        hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), near[0]])!r}?" if near else ""
        valid = ", ".join(_allowed_keys(parent))
        return f"unknown key {dotted!r}{hint} (valid keys here: {valid})"
    if kind == "missing":
        return f"missing required key {dotted!r}"
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    hint = ""
    if kind == "list_type" and isinstance(given, str):
        import json

        wanted = json.dumps(_as_list(given))
        hint = (f"; write it as a list: --set '{dotted}={wanted}'" if dotted in overridden
                else f"; write it as a list: {loc[-1]} = {wanted}")
    return f"{dotted or 'spec'}: {msg}{shown}{hint}"


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``KEY=VALUE`` from ``--set``: the value is read as TOML, else taken as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise BadInput(f"--set {item!r}: expected KEY=VALUE, e.g. --set split.seed=7")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return [p.strip() for p in key.strip().split(".")], value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadInput(f"--set {item!r}: {part!r} is not a table")
            node = child
        node[path[-1]] = value
    return raw


def load_spec(path: str | Path, overrides: list[str] | None = None) -> tuple[RunSpec, Path]:
    """Read, override and validate a spec file; return the spec and the file's directory."""
    spec_path = Path(path)
    if spec_path.is_dir():
        spec_path = spec_path / "assay.toml"
    if not spec_path.exists():
        raise BadInput(f"{spec_path}: spec file not found (create one with `assay init`)")
    try:
        raw = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{spec_path}: TOML syntax error: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{spec_path}: cannot read spec file: {exc}") from exc
    raw = apply_overrides(raw, overrides or [])
    overridden = frozenset(".".join(parse_override(item)[0]) for item in overrides or [])
    try:
        spec = RunSpec.model_validate(raw)
    except ValidationError as exc:
        # an unknown key usually explains a "missing" one (a typo), so report it first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        described = [_describe(dict(e), overridden) for e in errors]
        # a key reported missing that a typo's suggestion names is that typo, not a second problem
        suggested = {m for d in described for m in re.findall(r"did you mean '([^']+)'\?", d)}
        problems = [d for e, d in zip(errors, described, strict=True)
                    if not (e["type"] == "missing" and ".".join(map(str, e["loc"])) in suggested)]
        problems = list(dict.fromkeys(problems))
        if len(problems) == 1:
            raise BadInput(f"{spec_path}: {problems[0]}") from None
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise BadInput(f"{spec_path}: {len(problems)} problems: {listed}") from None
    return spec, spec_path.resolve().parent


# --------------------------------------------------------------------------- plugin tables

#: The attribute through which a plugin module (or object) names the pydantic model of its
#: ``[plugins.NAME]`` table, NAME being the plugin's entry-point name.
SPEC_SECTION_ATTRIBUTE = "ASSAY_SPEC_SECTION"


def plugin_sections(pm: Any) -> dict[str, type[BaseModel]]:
    """The table models of the plugins registered in ``pm``, by plugin name."""
    out: dict[str, type[BaseModel]] = {}
    for name, plugin in pm.list_name_plugin():
        model = getattr(plugin, SPEC_SECTION_ATTRIBUTE, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            out[str(name)] = model
    return out


def check_plugin_sections(spec: RunSpec, spec_path: Path, pm: Any) -> dict[str, BaseModel]:
    """Validate every ``[plugins.NAME]`` table with plugin NAME's model; BadInput lists every problem."""
    sections = plugin_sections(pm)
    problems: list[str] = []
    validated: dict[str, BaseModel] = {}
    for name, table in spec.plugins.items():
        model = sections.get(name)
        if model is None:
            if pm.is_blocked(name):
                problems.append(f"[plugins.{name}]: plugin {name!r} is blocked (-p no:{name} or ASSAY_DISABLE_PLUGINS); "
                                "unblock it or remove the table")
                continue
            near = difflib.get_close_matches(name, list(sections), n=1, cutoff=0.5)
            hint = f"; did you mean 'plugins.{near[0]}'?" if near else ""
            known = ", ".join(sorted(sections)) or "none"
            problems.append(f"unknown key 'plugins.{name}'{hint} (no loaded plugin of that name takes settings; "
                            f"plugins that do: {known}; see `assay plugins`)")
            continue
        try:
            validated[name] = model.model_validate(table)
        except ValidationError as exc:
            errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
            described = [_describe(dict(e), root=model, prefix=("plugins", name)) for e in errors]
            suggested = {m for d in described for m in re.findall(r"did you mean '([^']+)'\?", d)}
            problems += [d for e, d in zip(errors, described, strict=True)
                         if not (e["type"] == "missing" and ".".join(map(str, ("plugins", name, *e["loc"]))) in suggested)]
    problems = list(dict.fromkeys(problems))
    if len(problems) == 1:
        raise BadInput(f"{spec_path}: {problems[0]}")
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise BadInput(f"{spec_path}: {len(problems)} problems: {listed}")
    return validated
