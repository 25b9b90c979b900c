"""``assay lineage``: where a model came from, and what used a dataset or a policy version.

Everything is read from the signed ledger once it verifies in full (:class:`assay.storage.signed.SignedLedger`),
never from the ``runs`` or ``model_versions`` tables beside it, so each item carries the sequence number
of the record that proves it. One way: data → spec → split → run → model → verdicts → promotions,
plus baselines, replays and monitoring, and the model version's history (verdicts, waivers, approvals,
promotions, monitor results). The other way: every run and model trained or evaluated on a dataset
(by fingerprint), and every verdict made under a policy version (by digest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click

from assay.errors import BadInput
from assay.kernel.types import EventKind


@dataclass
class Lineage:
    run_id: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)

    def node(self, node_id: str, kind: str, label: str, record: Any | None = None, **attrs: Any) -> str:
        entry = {"id": node_id, "kind": kind, "label": label, **attrs}
        if record is not None:
            entry.update(seq=record.seq, record_hash=record.hash, key_id=record.key_id, time=record.time)
        self.nodes.setdefault(node_id, entry)
        return node_id

    def edge(self, src: str, dst: str, relation: str) -> None:
        if (src, dst, relation) not in self.edges:
            self.edges.append((src, dst, relation))

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "nodes": list(self.nodes.values()),
                "edges": [{"from": a, "to": b, "relation": r} for a, b, r in self.edges]}

    def to_dot(self) -> str:
        shapes = {"data": "cylinder", "spec": "note", "run": "box", "model": "component", "verdict": "diamond",
                  "policy": "note", "promotion": "cds", "monitor": "ellipse", "split": "folder", "replay": "box"}
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for n in self.nodes.values():
            label = n["label"].replace('"', "'")
            lines.append(f'  "{n["id"]}" [label="{label}", shape={shapes.get(n["kind"], "box")}];')
        for a, b, r in self.edges:
            lines.append(f'  "{a}" -> "{b}" [label="{r}"];')
        lines.append("}")
        return "\n".join(lines)


def _short(digest: str | None) -> str:
    return (digest or "?").removeprefix("sha256:")[:12]


def build_lineage(ledger: Any, run_id: str) -> Lineage:
    """The lineage of one run from its ledger records (and records that refer to it)."""
    records = ledger.records(run_id=run_id)
    if not records:
        raise BadInput(f"run {run_id!r} has no ledger records (list runs with `assay audit log`)")
    g = Lineage(run_id)
    run_node = g.node(f"run:{run_id}", "run", f"run {run_id[:10]}…", records[0], status="incomplete")
    model_node = None
    for rec in records:
        p = rec.payload
        if rec.kind == "run_started":
            spec = p.get("spec", {})
            spec_node = g.node(f"spec:{p.get('spec_hash')}", "spec", f"spec {_short(p.get('spec_hash'))}", rec,
                               hash=p.get("spec_hash"), path=p.get("spec_path"))
            g.edge(spec_node, run_node, "configures")
            git = p.get("environment", {}).get("git", {})
            if git.get("commit"):
                code = g.node(f"git:{git['commit']}", "code", f"git {git['commit'][:10]}{'+dirty' if git.get('dirty') else ''}",
                              commit=git["commit"], dirty=git.get("dirty"))
                g.edge(code, run_node, "code")
            baseline = spec.get("evaluate", {}).get("baseline", "dummy")
            if baseline != "dummy":
                g.edge(g.node(f"model:{baseline}", "model", baseline), run_node, "baseline")
            target_domain = spec.get("data", {}).get("target_domain")
            if target_domain:
                g.edge(g.node(f"data:{target_domain}", "data", f"target domain {target_domain}"), run_node, "evaluates on")
        elif rec.kind == "data":
            data = g.node(f"data:{p.get('fingerprint')}", "data", f"{p.get('source')} ({p.get('rows')} rows)", rec,
                          fingerprint=p.get("fingerprint"), source=p.get("source"), rows=p.get("rows"))
            g.edge(data, run_node, "trains")
        elif rec.kind == "split":
            for part in ("train", "test"):
                info = p.get(part, {})
                node = g.node(f"split:{info.get('fingerprint')}", "split", f"{part} {info.get('rows')} rows", rec,
                              fingerprint=info.get("fingerprint"), rows=info.get("rows"), part=part)
                g.edge(run_node, node, part)
        elif rec.kind == "model":
            ref = f"{p.get('name')}@{p.get('version')}"
            model_node = g.node(f"model:{ref}", "model", f"{ref} {p.get('family')}", rec, artifact=p.get("artifact"),
                                family=p.get("family"))
            g.edge(run_node, model_node, "produces")
        elif rec.kind == "verdict":
            verdict = g.node(f"verdict:{rec.seq}", "verdict", f"{p.get('decision')} ({p.get('policy')})", rec,
                             decision=p.get("decision"), policy=p.get("policy"), policy_hash=p.get("policy_hash"))
            g.edge(model_node or run_node, verdict, "gated")
        elif rec.kind in ("run_finished", "run_failed"):
            g.nodes[run_node]["status"] = p.get("status", "errored" if rec.kind == "run_failed" else "finished")
        elif rec.kind in ("monitor", "replay", "promotion", "approval", "waiver"):
            label = {"monitor": "monitor", "replay": "replay of", "promotion": f"→ {p.get('stage', p.get('to', ''))}",
                     "approval": "approved", "waiver": f"waiver {p.get('rule', '')}"}[rec.kind]
            node = g.node(f"{rec.kind}:{rec.seq}", rec.kind, label, rec)
            g.edge(model_node or run_node, node, rec.kind)
    return g


# --------------------------------------------------------------------------- reading the signed ledger


class SignedRecords:
    """A ``Ledger``-like reader for :func:`build_lineage` over the records of a verified ledger."""

    def __init__(self, records: list[Any]) -> None:
        self._records = records

    def records(self, run_id: str | None = None, kind: str | None = None) -> list[Any]:
        return [r for r in self._records if (run_id is None or r.run_id == run_id) and (kind is None or r.kind == kind)]


def resolve_run_id(signed: Any, ref: str) -> str:
    """A run id (or unique prefix), or ``NAME@VERSION`` / ``NAME@latest`` / ``NAME@<stage>``, from signed records."""
    if "@" in ref:
        return str(signed.resolve(ref).run_id)
    return str(signed.resolve_run(ref))


# --------------------------------------------------------------------------- digest queries

HEX = frozenset("0123456789abcdef")
MIN_PREFIX = 6


def parse_digest(text: str, option: str) -> str:
    """The hex of a ``sha256:HEX`` digest or a prefix of one (at least 6 hex digits); BadInput otherwise."""
    value = text.strip().lower()
    hexpart = value.removeprefix("sha256:")
    if not hexpart or len(hexpart) > 64 or not set(hexpart) <= HEX:
        raise BadInput(f"{option} {text!r}: expected a SHA-256 digest (sha256:HEX, or at least {MIN_PREFIX} of its "
                       "leading hex digits), as `assay lineage RUN_ID` shows it")
    if len(hexpart) < MIN_PREFIX:
        raise BadInput(f"{option} {text!r}: give at least {MIN_PREFIX} leading hex digits of the digest")
    return hexpart


def match_digest(hexpart: str, known: list[str], what: str, option: str) -> str:
    """The one known ``sha256:HEX`` digest that ``hexpart`` is (a prefix of); BadInput naming every match."""
    full = f"sha256:{hexpart}"
    if full in known:
        return full
    matches = sorted({d for d in known if d.startswith(full)})
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise BadInput(f"{option} {full}: the prefix matches {len(matches)} {what} digests; give more digits of one "
                       "of them:\n" + "\n".join(f"  {m}" for m in matches))
    raise BadInput(f"{option} {full}: no {what} with that digest in the signed ledger "
                   f"({len(set(known))} known; `assay lineage RUN_ID` shows a run's)")


def _run_facts(signed: Any) -> dict[str, dict[str, Any]]:
    """Per run: model ref and artifact, and its status, from the run's signed records."""
    facts: dict[str, dict[str, Any]] = {}
    for rec in signed.records:
        if rec.run_id is None:
            continue
        f = facts.setdefault(rec.run_id, {"model": None, "artifact": None, "status": "incomplete",
                                          "project": None})
        p = rec.payload if isinstance(rec.payload, dict) else {}
        if rec.kind == "run_started":
            f["project"] = p.get("project")
        elif rec.kind == "model":
            f["model"], f["artifact"] = f"{p.get('name')}@{p.get('version')}", p.get("artifact")
        elif rec.kind == "run_finished":
            f["status"] = str(p.get("status", "passed"))
        elif rec.kind == "run_failed":
            f["status"] = "errored"
    return facts


def data_uses(signed: Any) -> dict[str, list[dict[str, Any]]]:
    """Every use of a dataset, by fingerprint: training data, its split parts, target domains, monitored batches."""
    facts = _run_facts(signed)
    uses: dict[str, list[dict[str, Any]]] = {}

    def add(fp: Any, rec: Any, role: str, **extra: Any) -> None:
        if not isinstance(fp, str) or not fp.startswith("sha256:"):
            return
        f = facts.get(rec.run_id or "", {})
        uses.setdefault(fp, []).append({"role": role, "seq": rec.seq, "time": rec.time, "run_id": rec.run_id,
                                        "model": f.get("model"), "artifact": f.get("artifact"),
                                        "run_status": f.get("status"), **extra})

    for rec in signed.records:
        p = rec.payload if isinstance(rec.payload, dict) else {}
        if rec.kind == "data":
            add(p.get("fingerprint"), rec, "training data", source=p.get("source"), rows=p.get("rows"))
        elif rec.kind == "split":
            for part in ("train", "test"):
                info = p.get(part) or {}
                add(info.get("fingerprint"), rec, f"{part} split", rows=info.get("rows"))
        elif rec.kind == "evidence":
            target = (p.get("domain") or {}).get("target") or {}
            add(target.get("fingerprint"), rec, "target domain", source=target.get("source"), rows=target.get("rows"))
        elif rec.kind == "monitor":
            current = ((p.get("evidence") or {}).get("data") or {}).get("current") or {}
            add(current.get("fingerprint"), rec, "monitored batch", source=current.get("source"),
                rows=current.get("rows"), monitor_id=p.get("monitor_id"), status=p.get("status"),
                decision=(p.get("verdict") or {}).get("decision"))
    return uses


def data_lineage(signed: Any, query: str) -> dict[str, Any]:
    """``assay lineage --data FINGERPRINT --json``: the runs and models trained or evaluated on that data."""
    uses = data_uses(signed)
    fingerprint = match_digest(parse_digest(query, "--data"), list(uses), "dataset", "--data")
    found = uses[fingerprint]
    runs = list(dict.fromkeys(u["run_id"] for u in found if u["run_id"]))
    models = list(dict.fromkeys(u["model"] for u in found if u["model"]))
    sources = list(dict.fromkeys(u["source"] for u in found if u.get("source")))
    return {"mode": "data", "fingerprint": fingerprint, "sources": sources, "runs": runs, "models": models,
            "uses": found}


def _rules_signature(verdict: dict[str, Any]) -> str:
    rules = verdict.get("rules")
    shown = [{k: r.get(k) for k in ("id", "outcome", "measured", "threshold")} for r in rules] \
        if isinstance(rules, list) else verdict.get("reasons")
    return json.dumps(shown, sort_keys=True, default=str)


def _blocked_by(verdict: dict[str, Any]) -> list[str]:
    return [str(r.get("id")) for r in verdict.get("rules") or [] if r.get("outcome") in ("block", "error")]


def _waived(verdict: dict[str, Any]) -> list[str]:
    return [str(r.get("id")) for r in verdict.get("rules") or [] if r.get("outcome") == "waived"]


def policy_verdicts(signed: Any) -> dict[str, list[dict[str, Any]]]:
    """Every verdict by policy digest: gate verdicts and monitor results, in ledger order."""
    facts = _run_facts(signed)
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in signed.records:
        p = rec.payload if isinstance(rec.payload, dict) else {}
        if rec.kind == "verdict":
            verdict, kind = p, "gate"
            extra = {"evidence_digest": p.get("evidence_digest")}
        elif rec.kind == "monitor":
            verdict, kind = p.get("verdict") or {}, "monitor"
            current = ((p.get("evidence") or {}).get("data") or {}).get("current") or {}
            extra = {"monitor_id": p.get("monitor_id"), "status": p.get("status"),
                     "data_fingerprint": current.get("fingerprint")}
        else:
            continue
        digest = verdict.get("policy_hash")
        if not isinstance(digest, str):
            continue
        f = facts.get(rec.run_id or "", {})
        out.setdefault(digest, []).append({
            "kind": kind, "seq": rec.seq, "time": rec.time, "run_id": p.get("run_id") or rec.run_id,
            "model": p.get("model") or f.get("model"), "artifact": p.get("artifact") or f.get("artifact"),
            "decision": verdict.get("decision"), "policy": verdict.get("policy"), "policy_hash": digest,
            "blocked_by": _blocked_by(verdict), "key_id": rec.key_id, **extra,
            "_same": json.dumps([kind, rec.run_id, verdict.get("decision"), p.get("artifact"), extra.get("evidence_digest"),
                                 extra.get("data_fingerprint"), _rules_signature(verdict)], default=str)})
    return out


def collapse(entries: list[dict[str, Any]], consecutive: bool) -> list[dict[str, Any]]:
    """Identical results as one entry with ``count`` and every ``seqs`` (``seq`` and ``time``: the first).

    ``consecutive``: only results next to each other collapse (a timeline, where what came between
    matters); otherwise every repeat of a result does.
    """
    out: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}
    for entry in entries:
        key = entry.get("_same")
        target = (out[-1] if out and out[-1].get("_same") == key else None) if consecutive else by_key.get(str(key))
        if key is not None and target is not None:
            target["count"] += 1
            target["seqs"].append(entry["seq"])
            target["last_time"] = entry["time"]
            continue
        item = {**entry, "count": 1, "seqs": [entry["seq"]], "last_time": entry["time"]}
        out.append(item)
        if key is not None:
            by_key[str(key)] = item
    for item in out:
        item.pop("_same", None)
    return out


def policy_lineage(signed: Any, query: str) -> dict[str, Any]:
    """``assay lineage --policy DIGEST --json``: every verdict made under that policy version."""
    verdicts = policy_verdicts(signed)
    digest = match_digest(parse_digest(query, "--policy"), list(verdicts), "policy", "--policy")
    found = verdicts[digest]
    decisions: dict[str, int] = {}
    for v in found:
        decisions[str(v["decision"])] = decisions.get(str(v["decision"]), 0) + 1
    names = list(dict.fromkeys(str(v["policy"]) for v in found if v.get("policy")))
    return {"mode": "policy", "policy_hash": digest, "policy": names[-1] if names else None, "names": names,
            "decisions": decisions, "total": len(found), "verdicts": collapse(found, consecutive=False)}


# --------------------------------------------------------------------------- a model version's history

HISTORY_KINDS: tuple[EventKind, ...] = ("verdict", "waiver", "approval", "promotion", "monitor", "monitor_failed", "replay")


def _history_entry(rec: Any, signed: Any) -> dict[str, Any]:
    p = rec.payload if isinstance(rec.payload, dict) else {}
    base: dict[str, Any] = {"kind": rec.kind, "seq": rec.seq, "time": rec.time, "key_id": rec.key_id,
                            "signer": signed.signer(rec.key_id).get("identity") if rec.key_id else None}
    if rec.kind == "verdict":
        base.update(decision=p.get("decision"), policy=p.get("policy"), policy_hash=p.get("policy_hash"),
                    blocked_by=_blocked_by(p), evidence_digest=p.get("evidence_digest"),
                    waived=_waived(p),
                    summary=f"gate {p.get('decision')} under {p.get('policy')}"
                    + (f" (blocked by {', '.join(_blocked_by(p))})" if _blocked_by(p) else "")
                    + (f" (waived: {', '.join(_waived(p))})" if _waived(p) else ""),
                    _same=json.dumps(["verdict", p.get("decision"), p.get("policy_hash"), p.get("artifact"),
                                      p.get("evidence_digest"), _rules_signature(p)], default=str))
    elif rec.kind == "waiver":
        base.update(rule=p.get("rule"), approver=p.get("approver"), expires=p.get("expires"), reason=p.get("reason"),
                    summary=f"waiver of {p.get('rule')} by {p.get('approver')} until {p.get('expires')}: {p.get('reason')}")
    elif rec.kind == "approval":
        base.update(approver=p.get("approver"), verdict_seq=p.get("verdict_seq"), comment=p.get("comment"),
                    summary=f"approved by {p.get('approver')}"
                    + (f" (verdict seq {p['verdict_seq']})" if p.get("verdict_seq") else "")
                    + (f": {p['comment']}" if p.get("comment") else ""))
    elif rec.kind == "promotion":
        base.update(stage_from=p.get("from"), stage=p.get("to"), verdict_seq=p.get("verdict_seq"),
                    decision=p.get("decision"), policy=p.get("policy"),
                    summary=f"promoted {p.get('from')} → {p.get('to')}"
                    + (f" (verdict seq {p['verdict_seq']})" if p.get("verdict_seq") else ""))
    elif rec.kind == "monitor":
        verdict = p.get("verdict") or {}
        ev = p.get("evidence") or {}
        current = (ev.get("data") or {}).get("current") or {}
        share = (ev.get("drift") or {}).get("share_drifted")
        base.update(monitor_id=p.get("monitor_id"), status=p.get("status"), decision=verdict.get("decision"),
                    policy=verdict.get("policy"), policy_hash=verdict.get("policy_hash"),
                    blocked_by=_blocked_by(verdict), source=current.get("source"), rows=current.get("rows"),
                    data_fingerprint=current.get("fingerprint"), share_drifted=share,
                    summary=f"monitor {str(p.get('status')).replace('_', ' ')}: {current.get('rows')} rows"
                    + (f", share drifted {share:.3f}" if isinstance(share, (int, float)) else "")
                    + (f" (beyond policy: {', '.join(_blocked_by(verdict))})" if _blocked_by(verdict) else ""),
                    _same=json.dumps(["monitor", current.get("fingerprint"), verdict.get("decision"),
                                      _rules_signature(verdict)], default=str))
    elif rec.kind == "monitor_failed":
        base.update(error=p.get("error"), summary=f"monitor failed: {p.get('error')}")
    else:
        base.update(summary=rec.kind.replace("_", " "))
    return base


def model_history(signed: Any, ref: str) -> dict[str, Any]:
    """A model version's verdicts, waivers, approvals, promotions and monitor results, from signed records.

    Identical consecutive results (``assay gate`` re-run on the same evidence) collapse into one entry
    with a ``count`` and all their ``seqs``.
    """
    entry = signed.resolve(ref)
    events = [_history_entry(rec, signed) for rec in signed.run_records(entry.run_id) if rec.kind in HISTORY_KINDS]
    others = [rec for rec in signed.records if rec.kind == "promotion" and isinstance(rec.payload, dict)
              and rec.payload.get("to") == "production" and str(rec.payload.get("model", "")) != entry.ref
              and str(rec.payload.get("model", "")).rpartition("@")[0] == entry.name]
    in_production = False
    for item in sorted([*events, *({"_other": rec, "seq": rec.seq} for rec in others)], key=lambda e: e["seq"]):
        rec = item.get("_other")
        if rec is None:
            if item["kind"] == "promotion":
                in_production = item.get("stage") == "production"
            continue
        if in_production:  # a newer version promoted to production archives this one
            by = str(rec.payload.get("model"))
            events.append({"kind": "archived", "seq": rec.seq, "time": rec.time, "key_id": rec.key_id,
                           "signer": signed.signer(rec.key_id).get("identity") if rec.key_id else None,
                           "by": by, "summary": f"archived: {by} was promoted to production"})
            in_production = False
    events.sort(key=lambda e: e["seq"])
    return {"ref": entry.ref, "run_id": entry.run_id, "artifact": entry.artifact, "stage": entry.stage,
            "model_seq": entry.seq, "events": collapse(events, consecutive=True),
            "siblings": seed_siblings(signed, entry.run_id)}


def seed_siblings(signed: Any, run_id: str) -> dict[str, Any]:
    """Every run in the ledger, before or after this one, on the same data with a spec that differs
    only in ``split.seed`` or ``train.budget``, with its holdout metric and where this run ranks:
    a promoted lucky seed shows here (``assay run --seeds N`` makes such a family on purpose)."""
    from assay.kit import metric, sibling_runs, sibling_summary

    started = {r.run_id: r.payload for r in signed.records if r.kind == "run_started" and r.run_id}
    data = {r.run_id: r.payload.get("fingerprint") for r in signed.records if r.kind == "data" and r.run_id}
    metrics = {r.run_id: r for r in signed.records if r.kind == "metrics" and r.run_id}
    mine = started.get(run_id) or {}
    name = str(((mine.get("spec") or {}).get("train") or {}).get("metric") or "") or next(
        (str(r.payload.get("metric")) for r in signed.run_records(run_id) if r.kind == "evidence"), "")
    kin = sorted(sibling_runs(started, data, run_id) & set(metrics), key=lambda rid: metrics[rid].seq)
    siblings = [{"run_id": rid, "seq": metrics[rid].seq, "spec": started[rid].get("spec") or {},
                 "test": (metrics[rid].payload.get("metrics") or {}).get("test") or {}} for rid in kin]
    own = ((metrics[run_id].payload.get("metrics") or {}).get("test") or {}).get(name) if run_id in metrics else None
    try:
        better = metric(name).greater_is_better
    except KeyError:
        return {"count": 0, "runs": [], "metric": name}
    return sibling_summary(mine.get("spec") or {}, siblings, name, own if isinstance(own, (int, float)) else None,
                           better)


# --------------------------------------------------------------------------- the command

LINEAGE_HELP = """Show where RUN_ID or MODEL@VERSION came from, or what used a dataset or policy version.

\b
assay lineage RUN_ID|MODEL@VERSION [--json|--dot]
    data, spec, code, split, model, verdicts (the graph), then the model
    version's history: verdicts, waivers, approvals, promotions and monitor
    results with their ledger seq numbers; identical consecutive results
    (a gate re-run on the same evidence) are one line with a count.
assay lineage --data FINGERPRINT [--json]
    every run and model trained or evaluated on that data: training data,
    train/test split parts, target domains and monitored batches.
assay lineage --policy DIGEST [--json]
    every verdict under that policy version: gate verdicts and monitor
    results (run, model, outcome, seq); repeats of a result are one entry.

A digest may be given as sha256:HEX, HEX, or a unique prefix of at least
6 hex digits; a prefix that matches several is an error that lists them.
Everything shown is read from the signed ledger after it verifies in full
(the runs and registry tables are not read): exit 1 if it does not verify.

\b
JSON shapes (one object on stdout):
  RUN_ID|MODEL@VERSION: {"run_id", "nodes": [{"id", "kind", "label",
    "seq", "record_hash", "key_id", "time", ...}], "edges": [{"from", "to",
    "relation"}], "history": {"ref", "run_id", "artifact", "stage",
    "model_seq", "events": [{"kind", "seq", "seqs", "count", "time",
    "last_time", "key_id", "signer", "summary", ...}]} | null}
  --data: {"mode": "data", "fingerprint", "sources", "runs", "models",
    "uses": [{"role", "seq", "time", "run_id", "model", "artifact",
    "run_status", "source", "rows", ...}]}
  --policy: {"mode": "policy", "policy_hash", "policy", "names",
    "decisions": {DECISION: N}, "total", "verdicts": [{"kind": "gate" |
    "monitor", "seq", "seqs", "count", "time", "last_time", "run_id",
    "model", "artifact", "decision", "policy", "policy_hash", "blocked_by",
    "key_id", ...}]}
"""


@click.command(help=LINEAGE_HELP)
@click.argument("ref", required=False)
@click.option("--data", "data_query", metavar="FINGERPRINT", help="List what was trained or evaluated on this data.")
@click.option("--policy", "policy_query", metavar="DIGEST", help="List every verdict under this policy version.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--dot", "as_dot", is_flag=True, help="Print the graph in Graphviz DOT (RUN_ID or MODEL@VERSION).")
@click.pass_obj
def lineage(state: Any, ref: str | None, data_query: str | None, policy_query: str | None, as_json: bool,
            as_dot: bool) -> None:
    given = [name for name, value in (("RUN_ID|MODEL@VERSION", ref), ("--data", data_query),
                                      ("--policy", policy_query)) if value]
    if len(given) != 1:
        raise BadInput("assay lineage: give one of RUN_ID|MODEL@VERSION, --data FINGERPRINT or --policy DIGEST"
                       + (f" (got {' and '.join(given)})" if given else ""))
    if as_dot and not ref:
        raise BadInput(f"assay lineage {given[0]}: --dot draws one run's graph; use --json or the text listing")
    from assay.storage.signed import SignedLedger

    signed = SignedLedger.open(state)
    if data_query:
        found = data_lineage(signed, data_query)
        if as_json:
            click.echo(json.dumps(found, sort_keys=True))
        else:
            _print_data(found)
        return
    if policy_query:
        found = policy_lineage(signed, policy_query)
        if as_json:
            click.echo(json.dumps(found, sort_keys=True))
        else:
            _print_policy(found)
        return
    assert ref is not None
    run_id = resolve_run_id(signed, ref)
    graph = build_lineage(SignedRecords(signed.records), run_id)
    model_node = next((n for n in graph.nodes.values() if n["kind"] == "model" and n.get("seq")), None)
    model_ref = ref if "@" in ref else (str(model_node["id"]).removeprefix("model:") if model_node else None)
    history = model_history(signed, model_ref) if model_ref else None
    if as_json:
        click.echo(json.dumps({**graph.to_json(), "history": history}, sort_keys=True))
    elif as_dot:
        click.echo(graph.to_dot())
    else:
        _print_graph(graph, history)


def _console() -> Any:
    from assay.commands.terminal import make_console

    return make_console()


def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(show_edge=False)
    for col in columns:
        table.add_column(col, overflow="fold")  # ids and digests are copied from here: wrap them, never cut them
    return table


def _count(entry: dict[str, Any]) -> str:
    if entry["count"] == 1:
        return str(entry["seq"])
    return f"{entry['seq']} ×{entry['count']} ({', '.join(str(s) for s in entry['seqs'])})"


def _full_label(node: dict[str, Any]) -> str:
    """A node's label with its id or digest in full (the graph's labels shorten them for drawing)."""
    kind, node_id = node["kind"], str(node["id"])
    if kind == "run":
        return f"run {node_id.removeprefix('run:')}"
    if kind == "spec" and node.get("hash"):
        return f"spec {node['hash']}"
    if kind == "code" and node.get("commit"):
        return f"git {node['commit']}{'+dirty' if node.get('dirty') else ''}"
    if kind in ("data", "split") and node.get("fingerprint"):
        return f"{node['label']} {node['fingerprint']}"
    return str(node["label"])


def _print_graph(graph: Lineage, history: dict[str, Any] | None) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    console = _console()
    root = Tree(f"[bold]run {graph.run_id}[/] ({graph.nodes[f'run:{graph.run_id}']['status']})")
    for a, b, relation in graph.edges:
        src, dst = graph.nodes[a], graph.nodes[b]
        seq = dst.get("seq", src.get("seq"))
        root.add(f"{escape(_full_label(src))} [dim]—{relation}→[/] {escape(_full_label(dst))}"
                 + (f"  [dim]#{seq}[/]" if seq else ""))
    console.print(root)
    if history is None:
        return
    events = history["events"]
    console.print(f"\n[bold]{escape(history['ref'])}[/] stage {history['stage']}, artifact {history['artifact']}, "
                  f"model record seq {history['model_seq']}", soft_wrap=True)
    for kind in ("verdict", "monitor"):  # the newest result of each kind is what stands
        latest = next((e for e in reversed(events) if e["kind"] == kind or (kind == "monitor" and e["kind"] ==
                                                                            "monitor_failed")), None)
        if latest is not None and (latest.get("decision") == "block" or latest["kind"] == "monitor_failed"):
            console.print(f"[red]needs attention:[/] the latest {'gate verdict' if kind == 'verdict' else 'monitor result'}"
                          f" (seq {latest['seq']}) {escape(latest['summary'])}", soft_wrap=True)
    from rich.text import Text

    if not events:
        console.print("no verdict, waiver, approval, promotion or monitor result yet")
    else:
        table = _table("seq", "time (UTC)", "event", "detail", "signed by")
        for e in events:
            table.add_row(Text(_count(e)), Text(str(e["time"])[:19].replace("T", " ")), Text(e["kind"]),
                          Text(str(e["summary"])), Text(str(e.get("signer") or "")))
        console.print(table)
    _print_siblings(console, history)


def _print_siblings(console: Any, history: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.text import Text

    sib = history.get("siblings") or {}
    if not sib.get("runs"):
        return
    name = sib["metric"]
    where = f"ranks {sib['rank']} of {sib['of']}" if sib.get("rank") else "has no recorded holdout metric"
    spread = f", {sib['sd']:.4f} sd, z = {sib['z']:.2f}" if sib.get("sd") is not None else ""
    console.print(f"\n{escape(history['ref'])} {where} among the runs on the same data that differed only in seed or "
                  f"budget ({name} mean of the others {sib.get('mean', float('nan')):.4f}{spread})", soft_wrap=True)
    table = _table("seq", "run", "seed", "budget", name)
    for r in sib["runs"]:
        table.add_row(Text(str(r["seq"])), Text(r["run_id"]), Text(str(r["seed"])), Text(str(r["budget"])),
                      Text(f"{r['value']:.4f}"))
    console.print(table)


def _print_data(found: dict[str, Any]) -> None:
    from rich.text import Text

    console = _console()
    uses = found["uses"]
    blocked = [u for u in uses if u.get("decision") == "block" or u.get("run_status") in ("blocked", "errored")]
    console.print(f"data [bold]{found['fingerprint']}[/]" + (f" ({', '.join(found['sources'])})" if found["sources"]
                                                              else ""), soft_wrap=True)
    console.print(f"{len(found['runs'])} run(s), {len(found['models'])} model version(s), {len(uses)} use(s)"
                  + (f"; {len(blocked)} of them blocked, errored or beyond policy" if blocked else ""), soft_wrap=True)
    table = _table("seq", "role", "run", "model", "outcome", "rows", "source")
    for u in uses:
        outcome = u.get("status") or u.get("run_status") or ""
        table.add_row(*(Text(str(v)) for v in (u["seq"], u["role"], u["run_id"], u.get("model") or "—",
                                               str(outcome).replace("_", " "), u.get("rows") or "",
                                               u.get("source") or "")))
    console.print(table)


def _print_policy(found: dict[str, Any]) -> None:
    from rich.text import Text

    console = _console()
    counts = ", ".join(f"{n} {d}" for d, n in sorted(found["decisions"].items(), key=lambda kv: (kv[0] == "pass", kv[0])))
    console.print(f"policy [bold]{found['policy']}[/] {found['policy_hash']}", soft_wrap=True)
    console.print(f"{found['total']} verdict(s): {counts}", soft_wrap=True)
    table = _table("seq", "kind", "run", "model", "outcome", "blocked by")
    for v in found["verdicts"]:
        table.add_row(*(Text(str(x)) for x in (_count(v), v["kind"], v["run_id"], v.get("model") or "—", v["decision"],
                                               ", ".join(v["blocked_by"]))))
    console.print(table)
