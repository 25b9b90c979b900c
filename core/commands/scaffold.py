"""``assay init``: a working assay.toml for a given table, a policy file and a signing key."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assay.errors import BadInput
from assay.storage.settings import Settings

SENSITIVE_HINTS = re.compile(r"^(sex|gender|race|ethnicity|age_group|religion|nationality|native_country|marital_status)$",
                             re.IGNORECASE)
# names a label column often has; any of them beats "the last column" as a guess
TARGET_HINTS = re.compile(r"^(target|label|labels|class|y|outcome|response|churn(ed)?|default(ed)?|survived|fraud|"
                          r"income|diagnosis|is_.+|has_.+)$", re.IGNORECASE)
# bookkeeping columns that often come last and are never the label
NOT_TARGETS = re.compile(r"^(split|fold|set|subset|partition|id|index|row|weight|sample_weight|date|time|timestamp|"
                         r".+_id)$", re.IGNORECASE)
POLICY_TEMPLATE = """\
# The gate for {name}. Start from the bundled standard pack and tighten as you learn.
# Each rule: id, description, evidence path, comparison, threshold, severity.
extends = "assay:standard"
"""


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _poor_target(y: Any) -> str:
    """Why ``y`` (the last column) is unlikely to be the label, or '' when it is a fair guess."""
    import pandas as pd

    n = int(y.nunique(dropna=True))
    if n <= 2:
        return ""
    if n == len(y.dropna()) and not pd.api.types.is_float_dtype(y.dtype):
        return f"its {n} values are all different, like an id"
    if pd.api.types.is_integer_dtype(y.dtype) and n <= 50 and int(y.min()) >= 0:
        return f"it holds small whole numbers ({int(y.min())} to {int(y.max())}), like a count"
    return ""


def _guess_target(frame: Any, columns: list[str], data: Path) -> str:
    """The last column, unless that is a poor guess: then ask on a terminal, else say to pass --target."""
    import click

    last = columns[-1]
    named = [c for c in columns[:-1] if TARGET_HINTS.match(c)]
    why = ""
    if not TARGET_HINTS.match(last):
        why = ("it is named like a bookkeeping column" if NOT_TARGETS.match(last)
               else _poor_target(frame[frame.columns[-1]]) or
               (f"{named[0]!r} is named like a label" if named else ""))
    if not why:
        return last
    suggestion = f"; {named[0]!r} looks like a label" if named and named[0] not in why else ""
    if sys.stdin.isatty():
        return str(click.prompt(f"The last column {last!r} may not be the label ({why}){suggestion}. Target column",
                                type=click.Choice(columns), default=named[0] if named else last))
    raise BadInput(f"--target: the last column of {data}, {last!r}, may not be the label: {why}{suggestion}; "
                   f"name the label with --target COLUMN (columns: {', '.join(columns)})")


def scaffold(settings: Settings, directory: Path, data_path: str | None, target: str | None,
             force: bool) -> Iterator[str]:
    """Write ``assay.toml`` (and ``policy.toml``) into ``directory``; yield what was done."""
    import json

    from assay.kit import SEPARATORS, infer_task, read_table, sniff_separator

    directory.mkdir(parents=True, exist_ok=True)
    spec_file = directory / "assay.toml"
    if spec_file.exists() and not force:
        if target:
            raise BadInput(f"{spec_file} already exists: to train on {target!r} set data.target = {target!r} in it "
                           f"(or try it first: assay run {spec_file} --set data.target={target}); "
                           "--force writes a new assay.toml and policy.toml over the old ones")
        raise BadInput(f"{spec_file} already exists (edit it, or use --force to write a new one over it)")
    if data_path is None:
        found = sorted(p for p in directory.rglob("*") if p.suffix in (".csv", ".parquet") and ".assay" not in p.parts)
        if not found:
            raise BadInput(f"init: no .csv or .parquet file under {directory}; pass --data FILE")
        data = found[0]
    else:
        data = Path(data_path)
    sep = sniff_separator(data.resolve()) if data.name.endswith((".csv", ".csv.gz")) else ","
    frame = read_table(str(data.resolve()), str(directory), field="--data", sep=sep)
    columns = [str(c).strip() for c in frame.columns]
    target = target or _guess_target(frame, columns, data)
    if target not in columns:
        raise BadInput(f"--target: column {target!r} is not in {data} (columns: {', '.join(columns)})")
    y = frame[target]
    if y.dtype == object:
        y = y.astype(str).str.strip().str.rstrip(".")
    task = infer_task(y)
    sensitive = [c for c in columns if SENSITIVE_HINTS.match(c) and c != target]
    try:
        source = data.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        source = data.resolve().as_posix()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name).strip("-") or "model"
    strategy = "stratified" if task in ("binary", "multiclass") else "random"
    sep_line = "" if sep == "," else f"sep = {json.dumps(sep)}                            # fields separated by {SEPARATORS[sep]}\n"
    spec_file.write_text(f"""\
[project]
name = "{name}"

[data]
source = "{source}"
{sep_line}target = "{target}"
task = "{task}"
sensitive = {_toml_list(sensitive)}   # fairness checks per group; kept out of the features

[split]
strategy = "{strategy}"
test_size = 0.2
cv_folds = 5
seed = 42

[train]
tuning = "halving_random"
# budget left out: scaled to the training rows (each family's defaults below 2,000 rows, then 3 or 9
# settings per family); set budget = N to try N settings per family

[evaluate]
baseline = "dummy"

[gate]
policy = "policy.toml"
""", encoding="utf-8")
    read = "" if sep == "," else f", fields separated by {SEPARATORS[sep]}"
    yield f"wrote {spec_file} (task {task}, target {target!r}, {len(frame):,} rows{read})"
    policy_file = directory / "policy.toml"
    if not policy_file.exists() or force:
        policy_file.write_text(POLICY_TEMPLATE.format(name=name), encoding="utf-8")
        yield f"wrote {policy_file}"
    try:
        from assay.audit.keys import ensure_signing_key
    except ImportError:
        return
    key = ensure_signing_key(settings.home)
    yield f"signing key {getattr(key, 'key_id', key)} in {settings.home / 'keys'}"
    yield f"next: assay run {spec_file}"
