"""``assay init``: a working assay.toml for a given table, a policy file and a signing key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from assay.errors import BadInput
from assay.settings import Settings

SENSITIVE_HINTS = re.compile(r"^(sex|gender|race|ethnicity|age_group|religion|nationality|native_country|marital_status)$",
                             re.IGNORECASE)
POLICY_TEMPLATE = """\
# The gate for {name}. Start from the bundled standard pack and tighten as you learn.
# Each rule: id, description, evidence path, comparison, threshold, severity.
extends = "assay:standard"
"""


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def scaffold(settings: Settings, directory: Path, data_path: str | None, target: str | None,
             force: bool) -> Iterator[str]:
    """Write ``assay.toml`` (and ``policy.toml``) into ``directory``; yield what was done."""
    from assay.plugins.loaders import infer_task, read_table

    directory.mkdir(parents=True, exist_ok=True)
    spec_file = directory / "assay.toml"
    if spec_file.exists() and not force:
        raise BadInput(f"{spec_file} already exists (use --force to overwrite)")
    if data_path is None:
        found = sorted(p for p in directory.rglob("*") if p.suffix in (".csv", ".parquet") and ".assay" not in p.parts)
        if not found:
            raise BadInput(f"init: no .csv or .parquet file under {directory}; pass --data FILE")
        data = found[0]
    else:
        data = Path(data_path)
    frame = read_table(str(data.resolve()), str(directory), field="--data")
    columns = [str(c).strip() for c in frame.columns]
    target = target or columns[-1]
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
    spec_file.write_text(f"""\
[project]
name = "{name}"

[data]
source = "{source}"
target = "{target}"
task = "{task}"
sensitive = {_toml_list(sensitive)}   # fairness checks per group; kept out of the features

[split]
strategy = "{strategy}"
test_size = 0.2
cv_folds = 5
seed = 42

[train]
tuning = "halving_random"
budget = 10

[evaluate]
baseline = "dummy"

[gate]
policy = "policy.toml"
""", encoding="utf-8")
    yield f"wrote {spec_file} (task {task}, target {target!r}, {len(frame)} rows)"
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
