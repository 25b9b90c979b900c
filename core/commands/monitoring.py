"""A monitoring run: a production batch against a training run, judged by the policy.

``assay monitor RUN_ID --current DATA`` (:mod:`assay.commands.monitor`) is a run of stages
like ``assay run``, and like it calls no hook itself: the runner does
(:func:`assay.kernel.runner.monitor_stored_run`).

1. prepare (here) — resolve the run from its signed records and check its evidence, read the
   batch and validate its schema against the stored reference's, load the policy. Anything
   wrong is a :class:`~assay.errors.BadInput` (exit 2) and nothing is written: a missing
   feature or a column of the wrong type names the column; new categories are findings in
   the evidence, not errors.
2. ``load`` (runner) — the reference sample, the model and the holdout predictions from the
   artifact store, into one frozen :class:`~assay.kernel.types.MonitorContext`.
3. ``monitor`` hook (runner) — drift, prediction drift, and for labelled batches
   performance and fairness; the results are merged into a *monitor evidence* document that
   also carries the training run's ``metric``, ``model``, ``metrics.test`` and ``baseline``,
   so rules such as ``metrics.current.roc_auc >= metrics.test.roc_auc - 0.05`` can be evaluated.
4. ``gate`` hook with stage ``monitor`` (runner) — the policy's ``stage = "monitor"`` rules
   → a :class:`~assay.kernel.types.Verdict`; a policy with none blocks (fail closed).
5. ``record`` hook (runner) — a ``monitor`` record linked to the run (the ledger is the
   record of truth); then a row in ``monitor_results`` (:mod:`assay.commands.monitor_history`,
   the index for ``assay monitor history``).

The batch is read and checked by :mod:`assay.commands.monitor_batch`; the command line and its
formats are :mod:`assay.commands.monitor`.

Exit codes: 0 stable, 1 beyond policy, 2 bad input, 3 plugin or internal error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assay.commands.monitor_batch import read_batch, validate_batch
from assay.errors import BadInput
from assay.kernel.types import Verdict, to_jsonable

if TYPE_CHECKING:
    from assay.kernel.manager import PluginManager
    from assay.storage.settings import Settings
    from assay.storage.store import RunRow

#: A monitored batch is ``stable`` when the monitor-stage gate passes, else ``beyond_policy`` (exit 1).
MonitorStatus = Literal["stable", "beyond_policy"]


@dataclass
class MonitorResult:
    """What ``assay monitor`` reports (``--format json`` prints :meth:`to_json`)."""

    monitor_id: str
    run_id: str
    evidence: dict[str, Any]
    verdict: Verdict
    policy: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> MonitorStatus:
        return "stable" if self.verdict.decision == "pass" else "beyond_policy"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict.decision == "pass" else 1

    @property
    def html(self) -> str | None:
        return self.evidence.get("report", {}).get("html")

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({**self.evidence, "status": self.status, "exit_code": self.exit_code,
                            "verdict": self.verdict.to_json(), "warnings": self.warnings})


# --------------------------------------------------------------------------- resolving the run


def resolve_run(settings: Settings, ref: str) -> RunRow:
    """A run by id (or unique prefix), or the run that trained ``NAME@VERSION``, from its signed records."""
    from assay.storage.store import RunStore

    return RunStore(settings).signed_run(ref)


def training_evidence(row: RunRow) -> dict[str, Any]:
    """The training run's evidence, checked against the schema, with a model and a stored reference sample."""
    from assay.kernel.evidence import validate_evidence

    evidence = row.evidence or {}
    document = validate_evidence(evidence)
    if document.model is None:
        raise BadInput(f"run {row.run_id} has no trained model (status {row.status}); only a run that trained "
                       "and evaluated a model can be monitored")
    if document.monitoring is None or document.monitoring.reference is None:
        raise BadInput(f"run {row.run_id} stored no reference sample for monitoring (was the monitoring plugin "
                       "disabled when it ran?); re-run `assay run` with the plugin enabled")
    return evidence


# --------------------------------------------------------------------------- the run


def run_monitor(pm: PluginManager, settings: Settings, run_ref: str, current_path: str, *, labels: bool = False,
                policy_ref: str | None = None, today: date | None = None) -> MonitorResult:
    """Monitor one batch against a training run; see the module docstring for the steps."""
    from assay.commands.monitor_history import save_row
    from assay.commands.waivers import trusted_waivers
    from assay.kernel.dataset import fingerprint_frame
    from assay.kernel.runner import add_results, collect_policies, monitor_stored_run
    from assay.kernel.spec import RunSpec
    from assay.policies import load_policy
    from assay.storage.signed import SignedLedger

    # 1. prepare: nothing is written until the inputs are known to be good
    row = resolve_run(settings, run_ref)
    training = training_evidence(row)
    spec = RunSpec.model_validate(row.spec)
    spec_path = Path(row.spec_path)
    policy = load_policy(policy_ref or spec.gate.policy, spec_path.parent, collect_policies(pm))
    info = training["monitoring"]["reference"]
    raw = read_batch(current_path)
    current, schema, schema_checks = validate_batch(raw, info, labels=labels, source=current_path, run_id=row.run_id)
    warnings = []
    if not policy.rules_for("monitor"):
        warnings.append(f"policy {policy.name} has no monitor-stage rules: the batch cannot pass it")

    source = str(Path(current_path).absolute())
    model = training["model"]
    evidence: dict[str, Any] = {
        "kind": "monitor",
        "run_id": row.run_id,
        "project": training.get("project", spec.project.name),
        "task": training.get("task"),
        "metric": training.get("metric"),
        "policy_hash": policy.hash,
        "model": {k: model.get(k) for k in ("name", "version", "ref", "family", "artifact")},
        "metrics": {"test": training.get("metrics", {}).get("test", {})},
        "baseline": training.get("baseline", {}),
        "data": {
            "reference": {"artifact": info["artifact"], "rows": info["rows"], "fingerprint": info.get("fingerprint"),
                          "part": info.get("part", "train")},
            "current": {"source": source, "rows": len(raw), "fingerprint": fingerprint_frame(raw), "labelled": labels},
        },
        "schema": schema,
    }
    add_results(evidence, [schema_checks])
    waivers: list[Any] = []
    if model.get("ref"):  # monitor-stage rules waived for this model version (`assay waive`)
        waivers, ignored = trusted_waivers(SignedLedger.open(settings), model["ref"], model.get("artifact"))
        warnings += ignored

    # 2. load, 3. the monitor hook, 4. the gate, 5. the record: the runner's stages
    document, verdict = monitor_stored_run(pm, settings, spec, spec_path, row.run_id, training, current, evidence,
                                           policy, labelled=labels, source=source,
                                           waivers=[w.to_json() for w in waivers], today=today)
    result = MonitorResult(document["monitor_id"], row.run_id, document, verdict, policy, warnings)
    save_row(settings, result, row)
    return result
