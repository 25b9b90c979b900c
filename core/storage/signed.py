"""What deciding commands read: the signed ledger, verified in full, and nothing beside it.

Gate, verify, promote, approve, waive, monitor, replay and ``NAME@production`` decide from
ledger records only. :meth:`SignedLedger.open` verifies the whole ledger (every record
re-hashed from its body, chained, signed by a key valid at its position, consistent with the
home's newest checkpoint), then reads the records once and checks that what it read is
exactly what was verified. The ``runs`` and ``model_versions`` tables are an index: where a
command uses a row, the row is compared with the records and a difference is a
:class:`~assay.errors.Finding` that names both sides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import BadInput, Finding

if TYPE_CHECKING:
    from assay.audit.format import Record
    from assay.storage.settings import Settings

STAGES = ("none", "staging", "production", "archived")


def digest_of(payload: Any) -> str:
    """``sha256:HEX`` of a payload's canonical JSON: what a verdict commits to for its evidence."""
    from assay.audit.canonical import canonical

    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    """A model version as the ledger records it (its ``model`` record, and its stage from promotions)."""

    name: str
    version: int
    run_id: str
    artifact: str
    family: str
    seq: int
    stage: str = "none"
    time: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def pick_version(versions: Sequence[Any], which: str) -> Any | None:
    """The version ``which`` names among a model's ``versions``: a number, ``latest`` (the newest
    registered) or a stage (the version that entered it last); ``None`` when none matches."""
    if which.isdigit():
        match = [v for v in versions if v.version == int(which)]
    elif which == "latest":
        match = sorted(versions, key=lambda v: v.seq)[-1:]
    else:
        match = [v for v in versions if v.stage == which][-1:]
    return match[0] if match else None


class SignedLedger:
    """The records of a ledger that verified in full; build it with :meth:`open`."""

    def __init__(self, records: Sequence[Record], report: Any, settings: Settings) -> None:
        self.records = list(records)
        self.report = report
        self.settings = settings
        self._by_run: dict[str, list[Record]] = {}
        for record in self.records:
            if record.run_id is not None:
                self._by_run.setdefault(record.run_id, []).append(record)

    # -------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, settings: Settings, trust: Path | list[Any] | None = None,
             checkpoint: Path | None = None) -> SignedLedger:
        """Verify the ledger in ``settings`` and read it; Finding when it does not verify.

        :param trust: a trust file or trusted keys replacing the home's trust list.
        :param checkpoint: a checkpoint file the ledger must extend (besides the home's newest).
        """
        from assay.audit.ledger import Ledger

        ledger = Ledger.open(settings)
        try:
            report = ledger.verify(checkpoint=checkpoint, trusted_keys=trust)
            if not report.ok:
                raise Finding(f"the ledger does not verify, so nothing is decided from it: {report.summary()} "
                              "(see `assay audit verify`)")
            records = ledger.records()
        finally:
            ledger.close()
        return cls(_verified_prefix(records, report), report, settings)

    # -------------------------------------------------------------------------- runs
    def run_records(self, run_id: str) -> list[Record]:
        return self._by_run.get(run_id, [])

    def last(self, run_id: str, kind: str) -> Record | None:
        found = [r for r in self.run_records(run_id) if r.kind == kind]
        return found[-1] if found else None

    def resolve_run(self, ref: str) -> str:
        """A run id, or a unique prefix of one, that has records in the ledger."""
        if ref in self._by_run:
            return ref
        matches = [run_id for run_id in self._by_run if run_id.startswith(ref)] if len(ref) >= 6 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise BadInput(f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(matches)[:5])}")
        raise BadInput(f"run {ref!r} not found in the ledger (see `assay audit runs`)")

    def evidence(self, run_id: str) -> tuple[dict[str, Any], Record]:
        """The run's signed evidence (the document the gate judges) and its record."""
        record = self.last(run_id, "evidence")
        if record is None:
            ended = self.last(run_id, "run_failed")
            why = f"it failed in stage {ended.payload.get('stage')!r}" if ended is not None else "it did not finish"
            raise BadInput(f"run {run_id} has no signed evidence record ({why}); it cannot be gated or deployed")
        from assay.audit.canonical import decode_special

        evidence = decode_special(record.payload)
        self.check_selection(run_id, evidence)
        return evidence, record

    def check_selection(self, run_id: str, evidence: dict[str, Any]) -> None:
        """Recompute the evidence's ``selection`` (earlier evaluations of the holdout, seed siblings)
        from the verified records before the run's split; Finding when the signed evidence differs.

        The selection plugin counted them while the run evaluated, from records it read without a
        full verification; a record hidden or altered at that moment and restored afterwards would
        leave a verifying ledger with a lowered count. Recomputing here closes that. (Records cannot
        be removed from a verifying ledger, so a run that has a split record keeps it.)
        """
        selection = evidence.get("selection")
        if not isinstance(selection, dict) or not isinstance(selection.get("holdout"), dict):
            return
        from assay.kit import SELECTION_KINDS, selection_history

        records = [r for r in self.records if r.kind in SELECTION_KINDS]
        if not any(r.kind == "split" and r.run_id == run_id for r in records):
            return  # evidence written without a split (imported, or assembled by hand): nothing to recount from
        derived = selection_history(records, run_id)
        holdout = selection["holdout"]
        claims = {"selection.holdout.earlier": [e.get("run_id") for e in holdout.get("earlier") or []],
                  "selection.holdout.evaluations": holdout.get("evaluations")}
        truth = {"selection.holdout.earlier": [e["run_id"] for e in derived["earlier"]],
                 "selection.holdout.evaluations": len(derived["earlier"]) + 1}
        siblings = selection.get("siblings")
        if isinstance(siblings, dict) and "runs" in siblings:
            claims["selection.siblings.runs"] = [r.get("run_id") for r in siblings.get("runs") or []]
            truth["selection.siblings.runs"] = [r["run_id"] for r in derived["siblings"]
                                                if isinstance(r["test"].get(str(siblings.get("metric"))), (int, float))]
        reusable = holdout.get("reusable")
        if isinstance(reusable, dict):  # a reusable holdout's budget: spent by earlier runs, as the ledger says
            from assay.kit import reusable_budget

            state = reusable_budget(derived)
            for key in ("budget", "spent_before", "seed", "threshold_seed"):
                claims[f"selection.holdout.reusable.{key}"] = reusable.get(key)
                truth[f"selection.holdout.reusable.{key}"] = state[key]
        wrong = [f"{key}: evidence {claims[key]!r}, ledger {truth[key]!r}" for key in claims if claims[key] != truth[key]]
        if wrong:
            raise Finding(f"run {run_id}: the signed evidence's selection does not match the verified ledger before "
                          f"the run's split (seq {derived['split_seq']}): {'; '.join(wrong)}. A record was hidden or "
                          "altered while the run read the ledger; nothing is decided from this run")

    def started(self, run_id: str) -> dict[str, Any]:
        """The ``run_started`` payload: the validated spec, its hash and the spec file's path."""
        record = next((r for r in self.run_records(run_id) if r.kind == "run_started"), None)
        if record is None:
            raise BadInput(f"run {run_id} has no run_started record in the ledger")
        return dict(record.payload)

    def check_run_row(self, run_id: str, row: Any, evidence: dict[str, Any]) -> None:
        """Compare the runs table's evidence for ``run_id`` with the signed evidence; Finding on a difference."""
        if row is None or not row.evidence_json:
            return
        try:
            table = json.loads(row.evidence_json)
        except ValueError:
            raise Finding(f"runs table: the evidence of run {run_id} is not JSON; the table was altered "
                          "(the signed evidence record is intact)") from None
        differences = _differences(evidence, table)
        if differences:
            shown = "; ".join(f"{path}: ledger {a!r}, runs table {b!r}" for path, a, b in differences[:5])
            more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
            raise Finding(f"runs table disagrees with the signed evidence of run {run_id}: {shown}{more}. "
                          "The table beside the ledger was altered; nothing was decided from it")

    def run_row(self, ref: str, table_row: Any = None) -> Any:
        """A ``runs``-table-shaped row built from the run's signed records (``assay.storage.store.RunRow``).

        ``table_row``, the index's row when there is one, is checked against the signed evidence
        (Finding on a difference); only its ``running``/``killed`` status is taken, which the
        ledger cannot know while a run is under way.
        """
        from assay.storage.store import RunRow

        run_id = self.resolve_run(ref)
        started = self.started(run_id)
        evidence_record = self.last(run_id, "evidence")
        evidence = None
        if evidence_record is not None:
            evidence, _ = self.evidence(run_id)
            self.check_run_row(run_id, table_row, evidence)
        finished, failed = self.last(run_id, "run_finished"), self.last(run_id, "run_failed")
        if finished is not None:
            status = str(finished.payload.get("status", "passed"))
        elif failed is not None:
            status = "errored"
        else:
            status = table_row.status if table_row is not None and table_row.status in ("running", "killed") \
                else "running"
        verdict = self.last(run_id, "verdict")
        return RunRow(run_id=run_id, project=str(started.get("project", "")), status=status,
                      spec_path=str(started.get("spec_path", "")), spec_json=json.dumps(started.get("spec") or {}),
                      spec_hash=str(started.get("spec_hash", "")),
                      evidence_json=json.dumps(evidence) if evidence is not None else None,
                      verdict_json=json.dumps(verdict.payload) if verdict is not None else None,
                      error=str(failed.payload.get("error")) if failed is not None else None)

    # -------------------------------------------------------------------------- registry
    def models(self, name: str | None = None) -> list[ModelEntry]:
        """Model versions in ledger order, each with the stage its newest promotion gave it."""
        entries: dict[tuple[str, int], ModelEntry] = {}
        for record in self.records:
            p = record.payload or {}
            if record.kind == "model" and record.run_id and isinstance(p.get("version"), int):
                key = (str(p.get("name")), int(p["version"]))
                if key not in entries:
                    entries[key] = ModelEntry(key[0], key[1], record.run_id, str(p.get("artifact")),
                                              str(p.get("family", "")), record.seq, "none", record.time)
            elif record.kind == "promotion":
                ref = str(p.get("model", ""))
                model_name, _, version = ref.rpartition("@")
                key = (model_name, int(version)) if version.isdigit() else ("", 0)
                if key in entries and p.get("to") in STAGES:
                    if p["to"] == "production":
                        for other_key, other in entries.items():
                            if other_key[0] == model_name and other.stage == "production":
                                entries[other_key] = _with_stage(other, "archived")
                    entries[key] = _with_stage(entries[key], str(p["to"]))
        out = sorted(entries.values(), key=lambda e: (e.name, e.version))
        return [e for e in out if name is None or e.name == name]

    def resolve(self, ref: str, exclude_run: str = "") -> ModelEntry:
        """``NAME@VERSION``, ``NAME@latest`` or ``NAME@<stage>`` from the ledger's records.

        ``exclude_run`` leaves out what that run registered: a run's baseline ``NAME@latest``
        is the newest model before it, never its own.
        """
        name, sep, which = ref.partition("@")
        if not sep or not name or not which:
            raise BadInput(f"model reference {ref!r}: expected NAME@VERSION, NAME@latest or NAME@production")
        versions = [v for v in self.models(name) if not exclude_run or v.run_id != exclude_run]
        if not versions:
            raise BadInput(f"model {name!r} has no versions in the ledger (see `assay models list`)")
        match = pick_version(versions, which)
        if match is None:
            raise BadInput(f"model reference {ref!r}: no such version (known: {', '.join(v.ref for v in versions)})")
        return match

    def check_model_row(self, entry: ModelEntry, row: Any) -> None:
        """Compare the registry table's row for ``entry`` with the ledger; Finding on a difference."""
        if row is None:
            return
        fields = (("run_id", entry.run_id, row.run_id), ("artifact", entry.artifact, row.artifact),
                  ("stage", entry.stage, row.stage))
        wrong = [(f, a, b) for f, a, b in fields if a != b]
        if wrong:
            shown = "; ".join(f"{f}: ledger {a!r}, model_versions table {b!r}" for f, a, b in wrong)
            raise Finding(f"model registry disagrees with the ledger for {entry.ref} (model record seq {entry.seq}): "
                          f"{shown}. The table beside the ledger was altered; nothing was decided from it")

    # -------------------------------------------------------------------------- keys
    def revoked_at(self, key_id: str) -> int | None:
        """The seq of the first ``key_revoked`` record for ``key_id``, if any."""
        for record in self.records:
            if record.kind == "key_revoked" and (record.payload or {}).get("key_id") == key_id:
                return record.seq
        return None

    def signer(self, key_id: str) -> dict[str, Any]:
        """Identity and roles of a signing key, as the verifier replayed them from the trust root."""
        signers = getattr(self.report, "signers", None) or {}
        info = dict(signers.get(key_id) or {})
        info.setdefault("identity", key_id)
        info.setdefault("roles", [])
        return info


def _with_stage(entry: ModelEntry, stage: str) -> ModelEntry:
    from dataclasses import replace

    return replace(entry, stage=stage)


def _verified_prefix(records: Sequence[Record], report: Any) -> list[Record]:
    """The records read that verification covered, checked to be exactly those (same chain, same root).

    Records appended after verification finished are left out: nothing unverified is decided from.
    """
    from assay.audit.format import GENESIS_PREV, record_hash
    from assay.audit.merkle import Frontier, leaf_hash

    verified = list(records[: report.size])
    if len(verified) < report.size:
        raise Finding("records disappeared from the ledger while it was being read; run `assay audit verify`")
    prev = GENESIS_PREV
    frontier = Frontier()
    for expected, record in enumerate(verified, start=1):
        h = bytes.fromhex(record.hash)
        if record.seq != expected or record.prev_hash != prev.hex() or record_hash(prev, record.body) != h:
            raise Finding(f"ledger record {expected} changed while it was being read; run `assay audit verify`")
        frontier.append(leaf_hash(h))
        prev = h
    if report.root and frontier.root().hex() != report.root:
        raise Finding("the ledger read differs from the ledger verified; run `assay audit verify`")
    return verified


def _differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Paths where two JSON values differ (numbers compared as numbers)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append((sub, a.get(key, "<absent>"), b.get(key, "<absent>")))
            else:
                out += _differences(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [(path, f"{len(a)} items", f"{len(b)} items")]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return [] if a == b else [(path, a, b)]
    return [] if a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b)) else [(path, a, b)]
