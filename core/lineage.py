"""``assay lineage``: where a model came from, read from the signed ledger.

The graph is built from ledger records only (not the convenience tables), so each node
carries the sequence number and hash of the record that proves it: data → spec → split →
run → model → verdicts → promotions, plus baselines, replays and monitoring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click

from assay.errors import BadInput


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


def resolve_run_id(ledger: Any, ref: str) -> str:
    """A run id (or unique prefix), or ``NAME@VERSION`` resolved through the ledger's model records."""
    if "@" in ref:
        name, _, version = ref.partition("@")
        for rec in reversed(ledger.records(kind="model")):
            if rec.payload.get("name") == name and str(rec.payload.get("version")) == version:
                return str(rec.run_id)
        for rec in reversed(ledger.records(kind="promotion")):  # NAME@production
            if rec.payload.get("model", "").startswith(f"{name}@") and rec.payload.get("stage", rec.payload.get("to")) == version:
                return resolve_run_id(ledger, rec.payload["model"])
        raise BadInput(f"model {ref!r} is not in the ledger (see `assay models list`)")
    runs = [r["run_id"] for r in ledger.runs() if r["run_id"].startswith(ref)]
    if len(runs) != 1:
        raise BadInput(f"run {ref!r} {'is ambiguous' if runs else 'is not in the ledger'} (see `assay audit log`)")
    return str(runs[0])


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as one JSON object.")
@click.option("--dot", "as_dot", is_flag=True, help="Print the graph in Graphviz DOT.")
@click.pass_obj
def lineage(state: Any, ref: str, as_json: bool, as_dot: bool) -> None:
    """Show where RUN_ID or MODEL@VERSION came from: data, spec, code, model, verdicts."""
    from assay.audit.ledger import Ledger

    ledger = Ledger.open(state)
    graph = build_lineage(ledger, resolve_run_id(ledger, ref))
    if as_json:
        click.echo(json.dumps(graph.to_json(), sort_keys=True))
    elif as_dot:
        click.echo(graph.to_dot())
    else:
        from rich.console import Console
        from rich.tree import Tree

        root = Tree(f"[bold]run {graph.run_id}[/] ({graph.nodes[f'run:{graph.run_id}']['status']})")
        for a, b, relation in graph.edges:
            src, dst = graph.nodes[a], graph.nodes[b]
            seq = dst.get("seq", src.get("seq"))
            root.add(f"{src['label']} [dim]—{relation}→[/] {dst['label']}" + (f"  [dim]#{seq}[/]" if seq else ""))
        Console().print(root)
