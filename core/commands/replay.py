"""``assay replay`` and ``assay diff``: reproduce a recorded run; say what changed between two runs.

Replay retrains from the run's recorded spec and data through the normal runner, so the
replay is itself a recorded run, linked to the original by a ``replay`` ledger record.
It checks the data first: if the content fingerprint differs from the recorded one there
is nothing to reproduce, and it says so without training. Otherwise it compares the
holdout predictions hash and the metrics (within a tolerance) and explains a mismatch:
the environment changed (packages, Python, numeric libraries, code), or — same data,
same environment — training is not deterministic.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from assay.errors import BadInput
from assay.kernel.runner import Runner
from assay.storage.settings import redact_url

DEFAULT_TOLERANCE = 1e-6
DATA_SUMMARY_KEYS = ("rows", "columns", "dtypes", "missing", "labels")


# --------------------------------------------------------------------------- comparing


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists and scalars are leaves."""
    if not isinstance(data, Mapping):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def same_value(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """Equal, with numbers (and lists of numbers) compared within an absolute ``tolerance``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= tolerance
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def changed(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, tolerance: float = 0.0) -> dict[str, list[Any]]:
    """Leaves that differ between two nested mappings: ``{dotted.key: [a, b]}`` (``None`` = absent)."""
    fa, fb = flatten(a or {}), flatten(b or {})
    return {key: [fa.get(key), fb.get(key)] for key in sorted(fa.keys() | fb.keys())
            if key not in fa or key not in fb or not same_value(fa[key], fb[key], tolerance)}


def _library_key(info: Mapping[str, Any]) -> str:
    return f"{info.get('user_api')}:{info.get('internal_api')}"


def environment_changes(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    """What differs between two captured environments that could change results.

    Package versions, the interpreter, the platform, the numeric libraries (BLAS/OpenMP, not
    their thread counts), reproducibility variables and the git commit of the project.
    """
    a, b = a or {}, b or {}
    out: dict[str, Any] = {}
    for key in ("python", "implementation", "platform", "machine"):
        if a.get(key) != b.get(key):
            out[key] = [a.get(key), b.get(key)]
    packages = changed(a.get("packages"), b.get("packages"))
    if packages:
        out["packages"] = packages
    libs_a = {_library_key(i): i.get("version") for i in a.get("numeric_libraries", [])}
    libs_b = {_library_key(i): i.get("version") for i in b.get("numeric_libraries", [])}
    if "numeric_libraries" in a and "numeric_libraries" in b and libs_a != libs_b:
        out["numeric_libraries"] = changed(libs_a, libs_b)
    variables = changed(a.get("variables"), b.get("variables"))
    if variables:
        out["variables"] = variables
    git = changed(a.get("git"), b.get("git"))
    if git:
        out["git"] = git
    return out


def metric_changes(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None,
                   tolerance: float = 0.0) -> dict[str, dict[str, Any]]:
    """Metric leaves that differ by more than ``tolerance``, with the change."""
    out: dict[str, dict[str, Any]] = {}
    for key, (x, y) in changed(a, b, tolerance).items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        out[key] = {"a": x, "b": y, "delta": (y - x) if numeric else None}
    return out


def _describe_environment(changes: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in changes.items():
        if key in ("packages", "numeric_libraries", "variables", "git"):
            lines += [f"{key}.{name}: {_show(old)} → {_show(new)}" for name, (old, new) in value.items()]
        else:
            lines.append(f"{key}: {_show(value[0])} → {_show(value[1])}")
    return lines


def environment_summary(changes: Mapping[str, Any], shown: int = 3) -> str:
    """The environment's differences on one line: how many, the first few, and how to see them all."""
    lines = _describe_environment(changes)
    more = f"; {len(lines) - shown} more (-v lists them)" if len(lines) > shown else ""
    return f"{len(lines)} difference{'s' * (len(lines) != 1)}: " + "; ".join(lines[:shown]) + more


def _show(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


# --------------------------------------------------------------------------- replay


class _SameVersion:
    """The run store, except that a replay's model is the version it reproduces, not a new one."""

    def __init__(self, store: Any, version: Any) -> None:
        self._store, self._version = store, version

    def add_model_version(self, name: str, run_id: str, artifact: str, family: str) -> Any:
        return self._version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class ReplayRunner(Runner):
    """The normal runner, but registering no model version: a replay retrains one, it does not add one."""

    def __init__(self, pm: Any, settings: Any, spec: Any, spec_path: Path, version: Any, replay_of: str = "") -> None:
        super().__init__(pm, settings, spec, spec_path, replay_of=replay_of)
        self.version = version

    def _stages(self, run: Any, dataset: Any, policy: Any, evidence: dict[str, Any], store: Any) -> Any:
        return super()._stages(run, dataset, policy, evidence, _SameVersion(store, self.version))


def _replayed_version(row: Any, model: Mapping[str, Any]) -> Any:
    """The registry entry of the version ``row`` trained, from its signed evidence (not the index table)."""
    from assay.storage.store import ModelVersionRow

    version = model.get("version")
    return ModelVersionRow(name=str(model.get("name") or row.project), version=version if isinstance(version, int) else 0,
                           run_id=row.run_id, artifact=str(model.get("artifact", "")), family=str(model.get("family", "")))


def data_changes(recorded: Mapping[str, Any], dataset: Any) -> dict[str, Any]:
    """How the data now differs from the recorded data summary (rows, schema, labels, missing)."""
    from assay.kernel.dataset import summarize

    now = summarize(dataset.frame, dataset.roles, dataset.target)
    out: dict[str, Any] = {"fingerprint": [recorded.get("fingerprint"), dataset.fingerprint]}
    for key in DATA_SUMMARY_KEYS:
        if key in recorded and not same_value(recorded[key], now.get(key)):
            diff = changed(recorded[key], now.get(key)) if isinstance(recorded[key], Mapping) else None  # type: ignore[arg-type]
            out[key] = diff if diff else [recorded[key], now.get(key)]
    return out


def replay_run(pm: Any, settings: Any, run_id: str, tolerance: float = DEFAULT_TOLERANCE) -> tuple[dict[str, Any], int]:
    """Retrain ``run_id`` from its recorded spec and data; return ``(report, exit code)``.

    The replay is a run of its own (recorded, gated) whose model is the version it reproduces:
    it registers no new version.
    """
    from assay.kernel.spec import RunSpec
    from assay.kernel.types import Run
    from assay.storage.store import RunStore

    store = RunStore(settings)
    row = store.signed_run(run_id)  # what the run signed, not what the table says
    recorded = row.evidence or {}
    if row.status == "running":
        raise BadInput(f"run {row.run_id} is still running (or was killed); replay a finished run")
    if "model" not in recorded or "data" not in recorded:
        reason = f": {row.error}" if row.error else ""
        raise BadInput(f"run {row.run_id} ({row.status}{reason}) recorded no trained model, so it cannot be replayed")
    try:
        spec = RunSpec.model_validate(_with_secrets(row))
    except ValueError as exc:
        raise BadInput(f"run {row.run_id}: its recorded spec is no longer valid: {exc}") from exc
    runner = Runner(pm, settings, spec, Path(row.spec_path))
    report: dict[str, Any] = {"run_id": row.run_id, "replay_run_id": None, "spec_hash": row.spec_hash,
                              "tolerance": tolerance, "reasons": []}
    run, dataset, policy = runner.prepare()
    if dataset.fingerprint != recorded["data"].get("fingerprint"):
        data = data_changes(recorded["data"], dataset)
        details = [f"{key}: {_show(v[0])} → {_show(v[1])}" if isinstance(v, list) else
                   f"{key}: " + ", ".join(f"{k} {_show(x)} → {_show(y)}" for k, (x, y) in list(v.items())[:8])
                   for key, v in data.items()]
        report.update(outcome="data_changed", reproduced=False, data=data,
                      reasons=[f"data changed: {redact_url(spec.data.source)} no longer matches the recorded fingerprint "
                               f"(not retrained)", *details])
        original = Run(run_id=row.run_id, spec=spec, spec_path=row.spec_path, settings=settings)
        runner.record(original, "replay", _ledger_payload(report))
        return report, 1

    replayed = _replayed_version(row, recorded["model"])
    replaying = ReplayRunner(pm, settings, spec, Path(row.spec_path), replayed, replay_of=row.run_id)
    result = replaying.execute(prepared=(run, dataset, policy))
    report["replay_run_id"] = result.run_id
    report["status"] = {"recorded": row.status, "replay": result.status}
    if result.status == "errored":
        report.update(outcome="errored", reproduced=False, reasons=[f"the replay run failed: {result.error}"])
        runner.record(run, "replay", _ledger_payload(report))
        return report, result.exit_code or 3

    replay = result.evidence
    hashes = [recorded["model"].get("predictions_hash"), replay["model"].get("predictions_hash")]
    metrics = metric_changes(recorded.get("metrics"), replay.get("metrics"), tolerance)
    model = changed({k: recorded["model"].get(k) for k in ("family", "params")},
                    {k: replay["model"].get(k) for k in ("family", "params")}, tolerance)
    environment = environment_changes(recorded.get("environment"), replay.get("environment"))
    report.update(predictions_hash={"recorded": hashes[0], "replay": hashes[1]}, metrics=metrics, model=model,
                  environment=environment)
    baseline = metric_changes(recorded.get("baseline"), replay.get("baseline"), tolerance)
    if baseline:  # informational: NAME@latest / NAME@production may resolve to another version now
        report["baseline"] = baseline
    notes: list[str] = []
    problems: list[str] = []
    if hashes[0] is None:
        notes.append("note: the recorded run has no predictions hash; compared metrics only")
    elif hashes[0] != hashes[1]:
        problems.append(f"holdout predictions differ: {_show(hashes[0])} (recorded) vs {_show(hashes[1])} (replay)")
    problems += [f"{key}: {_show(c['a'])} → {_show(c['b'])}" + (f" (Δ {c['delta']:+.3g})" if c["delta"] is not None else "")
                 for key, c in metrics.items()]
    problems += [f"model.{key}: {_show(a)} → {_show(b)}" for key, (a, b) in model.items()]
    if not problems:
        if environment:
            notes.append(f"note: the environment differs ({environment_summary(environment)}) but results match")
        report.update(outcome="reproduced", reproduced=True, reasons=notes)
        runner.record(run, "replay", _ledger_payload(report))
        return report, 0
    if environment:
        head = f"environment changed ({environment_summary(environment)})"
        report["outcome"] = "environment_changed"
    else:
        head = ("nondeterminism: same data and environment, different results "
                "(a trainer or tuner is not seeded from run.seed, or depends on thread timing)")
        report["outcome"] = "nondeterministic"
    report.update(reproduced=False, reasons=[head, *problems, *notes])
    runner.record(run, "replay", _ledger_payload(report))
    return report, 1


def _redacted(value: Any, path: str = "") -> list[str]:
    """Dotted keys of the URLs in a recorded spec whose password the record hides."""
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _redacted(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, str) and "://" in value and ("***" in value or "%2A%2A%2A" in value):
        return [path]
    return []


def _restore(recorded: Any, on_disk: Any) -> Any:
    """``recorded`` with each redacted URL replaced by the spec file's, where that one redacts to it."""
    if isinstance(recorded, Mapping):
        disk = on_disk if isinstance(on_disk, Mapping) else {}
        return {k: _restore(v, disk.get(k)) for k, v in recorded.items()}
    if _redacted(recorded) and isinstance(on_disk, str) and redact_url(on_disk) == recorded:
        return on_disk
    return recorded


def _with_secrets(row: Any) -> dict[str, Any]:
    """The run's recorded spec, with the passwords it redacted read back from its spec file.

    Records never hold a URL's password, so replaying a run whose data sits behind one needs the
    spec file the run was started from (its path is recorded); the rest of the spec (``--set``
    overrides included) is the recorded one.
    """
    from assay.kernel.spec import load_spec

    recorded = row.spec
    hidden = _redacted(recorded)
    if not hidden:
        return recorded
    spec_path = Path(row.spec_path)
    names = ", ".join(hidden)
    if not spec_path.is_file():
        raise BadInput(f"run {row.run_id} recorded {names} with its password redacted, and the spec file "
                       f"{spec_path} that holds the real URL is gone; restore it to replay the run")
    on_disk, _ = load_spec(spec_path)
    restored = _restore(recorded, on_disk.model_dump(mode="json"))
    changed_keys = _redacted(restored)
    if changed_keys:
        raise BadInput(f"{spec_path}: {', '.join(changed_keys)} is no longer the URL run {row.run_id} recorded "
                       "(its password is redacted in the record, so replay takes it from this file); "
                       "restore the URL to replay the run")
    return dict(restored)


def _ledger_payload(report: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("run_id", "replay_run_id", "outcome", "reproduced", "spec_hash", "tolerance", "predictions_hash",
            "data", "environment", "metrics", "model", "reasons")
    return {("replay_of" if k == "run_id" else k): report[k] for k in keep if k in report}


# --------------------------------------------------------------------------- diff


def diff_runs(row_a: Any, row_b: Any, tolerance: float = 0.0) -> dict[str, Any]:
    """What changed from run A to run B: spec, data, environment, model, params, metrics, verdict."""
    ev_a, ev_b = row_a.evidence or {}, row_b.evidence or {}
    model_a, model_b = ev_a.get("model", {}), ev_b.get("model", {})

    def pick(ev: Mapping[str, Any]) -> dict[str, Any]:
        split = ev.get("split", {})
        return {"source": ev.get("data", {}).get("source"), "fingerprint": ev.get("data", {}).get("fingerprint"),
                "rows": ev.get("data", {}).get("rows"),
                "train": {k: split.get("train", {}).get(k) for k in ("rows", "fingerprint")},
                "test": {k: split.get("test", {}).get(k) for k in ("rows", "fingerprint")}}

    keys = ("family", "artifact", "predictions_hash")
    out: dict[str, Any] = {
        "run_a": row_a.run_id,
        "run_b": row_b.run_id,
        "status": [row_a.status, row_b.status],
        "spec": changed(row_a.spec, row_b.spec),
        "data": changed(pick(ev_a), pick(ev_b)),
        "environment": environment_changes(ev_a.get("environment"), ev_b.get("environment")),
        "model": changed({k: model_a.get(k) for k in keys}, {k: model_b.get(k) for k in keys}),
        "params": changed(model_a.get("params"), model_b.get("params"), tolerance),
        "metrics": metric_changes({"metrics": ev_a.get("metrics"), "baseline": ev_a.get("baseline"),
                                   "gap": ev_a.get("gap")},
                                  {"metrics": ev_b.get("metrics"), "baseline": ev_b.get("baseline"),
                                   "gap": ev_b.get("gap")}, tolerance),
        "verdict": changed({"decision": (row_a.verdict or {}).get("decision"), "policy_hash": ev_a.get("policy_hash")},
                           {"decision": (row_b.verdict or {}).get("decision"), "policy_hash": ev_b.get("policy_hash")}),
    }
    sections = ("spec", "data", "environment", "model", "params", "metrics", "verdict")
    out["identical"] = not any(out[s] for s in sections)
    return out


def render_diff(result: Mapping[str, Any]) -> list[str]:
    lines = [f"diff {result['run_a']} ({result['status'][0]}) → {result['run_b']} ({result['status'][1]})"]
    if result["identical"]:
        return [*lines, "no differences in spec, data, environment, model, params, metrics or verdict"]
    for section in ("spec", "data", "params", "model", "metrics", "verdict"):
        entries = result[section]
        if not entries:
            continue
        lines.append(section)
        for key, value in entries.items():
            if section == "metrics":
                delta = f" ({value['delta']:+.4g})" if value["delta"] is not None else ""
                lines.append(f"  {key}: {_show(value['a'])} → {_show(value['b'])}{delta}")
            else:
                lines.append(f"  {key}: {_show(value[0])} → {_show(value[1])}")
    if result["environment"]:
        lines.append("environment")
        lines += [f"  {line}" for line in _describe_environment(result["environment"])]
    return lines


# --------------------------------------------------------------------------- commands


@click.command()
@click.argument("run_id")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=DEFAULT_TOLERANCE, show_default=True,
              help="Largest absolute difference allowed in a metric.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.option("-v", "--verbose", is_flag=True, help="List every environment difference, not a summary line.")
@click.pass_obj
def replay(state: Any, run_id: str, tolerance: float, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Retrain RUN_ID from its recorded spec and data, and compare (exit 0 reproduced, 1 not).

    The replay is recorded as a run of its own; it registers no new model version.
    """
    extra: tuple[tuple[str, object], ...] = ()
    if not quiet and not as_json and sys.stderr.isatty():
        from assay.commands.terminal import TerminalReporter, make_console

        extra = (("terminal", TerminalReporter(make_console(stderr=True))),)
    report, code = replay_run(state.plugin_manager(extra), state, run_id, tolerance)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True, default=str))
    else:
        verdict = "reproduced" if report["reproduced"] else f"NOT reproduced ({report['outcome'].replace('_', ' ')})"
        click.echo(f"replay of {report['run_id']}: {verdict}"
                   + (f" — replay run {report['replay_run_id']}" if report.get("replay_run_id") else ""))
        for line in report["reasons"]:
            click.echo(f"  {line}")
        if verbose and report.get("environment"):
            click.echo("  environment differences:")
            for line in _describe_environment(report["environment"]):
                click.echo(f"    {line}")
    sys.exit(code)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=1e-9, show_default=True,
              help="Ignore metric and parameter changes up to this absolute size (rounding noise).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def diff(state: Any, run_a: str, run_b: str, tolerance: float, as_json: bool) -> None:
    """Show what changed from RUN_A to RUN_B: spec, data, environment, params, metrics."""
    from assay.storage.signed import SignedLedger
    from assay.storage.store import RunStore

    store, signed = RunStore(state), SignedLedger.open(state)
    result = diff_runs(store.signed_run(run_a, signed), store.signed_run(run_b, signed), tolerance)
    if as_json:
        click.echo(json.dumps(result, sort_keys=True, default=str))
    else:
        for line in render_diff(result):
            click.echo(line)
