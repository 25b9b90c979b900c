"""``assay report``: the evidence pack of one run, for reviewers and auditors.

``--template card`` (the default) is one self-contained HTML page (or CommonMark with
``--format markdown``) read top to bottom: the verdict and what it rests on (model, artifact,
policy, the ledger and the checkpoint it was verified against), what needs attention first,
the model card, charts drawn from the recorded evidence (``assay.commands.charts``), the check results,
lineage, environment and the run's ledger records. ``--template annex-iv`` is the EU AI Act
Annex IV technical documentation as far as the ledger knows it (``assay.commands.annex``).

Everything shown comes from signed ledger records — the run's evidence, verdict and spec, the
model's monitor, waiver, approval and promotion records — never from a refit. The ledger is
verified before writing: against the home's newest checkpoint when there is one (the records
after it in full, and each of this run's records proven inside it), else in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import click

from assay.commands.charts import fmt
from assay.errors import BadInput
from assay.kernel.types import EventKind

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:1220px;color:#1d2330;padding:0 1.2rem}
h1{font-size:1.45rem;margin:.2rem 0} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
h3{font-size:1rem;margin:1.2rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px;max-width:100%} td,th{padding:.25rem .6rem;border-bottom:1px solid #eef;text-align:left;vertical-align:top}
th{background:#f5f6fa} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass,.passed,.stable{color:#137333;font-weight:600} .block,.blocked,.fail,.error,.errored,.beyond_policy{color:#b3261e;font-weight:600}
.warn,.waived{color:#a15c00;font-weight:600} code{font-size:12px;background:#f5f6fa;padding:0 .2rem;overflow-wrap:anywhere}
.na{color:#667} .fix{display:block;margin-top:.2rem;color:#1d2330} .fix b{color:#a15c00}
.muted{color:#667} .badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;background:#f5f6fa}
.verdict{font-size:1.05rem;padding:.3rem .9rem;border-radius:.4rem;font-weight:700}
.verdict.pass{background:#e6f4ea}.verdict.block,.verdict.error{background:#fce8e6}.verdict.none{background:#f5f6fa;color:#445}
header.pack{border-bottom:2px solid #1d2330;padding-bottom:.6rem}
table.facts th{width:11rem;background:none;color:#445;font-weight:600}
ul.attention{list-style:none;padding:0;margin:.5rem 0}
ul.attention li{border-left:4px solid #a15c00;background:#fff;padding:.45rem .8rem;margin:.35rem 0;box-shadow:0 1px 2px #0002}
ul.attention li.level-block,ul.attention li.level-error,ul.attention li.level-fail{border-left-color:#b3261e}
ul.attention li.level-waived{border-left-color:#8ab4f8}
.what{font-weight:600} .message{display:block;margin-top:.15rem} .technical{display:block;color:#667;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:1rem}
figure.chart{margin:0;background:#fff;border:1px solid #e3e5ee;border-radius:.3rem;padding:.5rem .6rem;break-inside:avoid}
figure.chart.wide{grid-column:1/-1}
figcaption{font-weight:600;margin-bottom:.2rem} p.caption{color:#556;font-size:12px;margin:.2rem 0 0}
svg.plot{width:100%;height:auto;display:block}
svg.plot text{font:11px system-ui,sans-serif;fill:#334}
svg.plot .axis-label{fill:#556} svg.plot .row-label{fill:#1d2330} svg.plot .value{fill:#1d2330;font-size:10px}
svg.plot .frame{fill:none;stroke:#ccd} svg.plot .grid{stroke:#eef} svg.plot .diag{stroke:#aab;stroke-dasharray:4 4}
svg.plot .line{fill:none;stroke-width:2} svg.plot .ref{stroke:#b3261e;stroke-dasharray:5 4;stroke-width:1.5}
svg.plot text.t-ref{fill:#b3261e} svg.plot .ref2{stroke:#a15c00;stroke-dasharray:2 3;stroke-width:1.5} svg.plot text.t-ref2{fill:#a15c00} svg.plot text.value.inside{fill:#fff}
svg.plot .band{fill:#fce8e6;opacity:.8} svg.plot .band-ok{fill:#e6f4ea;opacity:.8}
svg.plot .whisker{stroke:#1d2330;stroke-width:1.2} svg.plot .na{fill:#889}
.s0{stroke:#1a57c9;fill:#1a57c9} .s1{stroke:#9aa3b5;fill:#9aa3b5} .s2{stroke:#e8710a;fill:#e8710a}
.s3{stroke:#137333;fill:#137333} .s4{stroke:#9334e6;fill:#9334e6} .s5{stroke:#b3261e;fill:#b3261e}
svg.plot .line.s0,svg.plot .line.s1,svg.plot .line.s2,svg.plot .line.s3,svg.plot .line.s4{fill:none}
.heat0{fill:#f3f6fd}.heat1{fill:#e1e9fb}.heat2{fill:#cbd9f8}.heat3{fill:#b3c8f4}.heat4{fill:#97b3ef}
.heat5{fill:#7a9de9}.heat6{fill:#5c86e2}.heat7{fill:#3f6fdb}.heat8{fill:#2a5cd0}.heat9{fill:#1a4bbf}
svg.plot .cell{stroke:#fff} svg.plot .cell-text{font-size:12px;fill:#1d2330} svg.plot .cell-text.light{fill:#fff}
.legend{display:flex;gap:1rem;font-size:12px;color:#445;margin:.1rem 0} .legend .key{display:inline-flex;gap:.3rem;align-items:center}
.legend svg{display:inline-block}
details{margin:.4rem 0} summary{cursor:pointer;color:#1a57c9}
dl.detail{display:grid;grid-template-columns:max-content 1fr;gap:0 .6rem;margin:0;font-size:12px} dl.detail dt{color:#556}
dl.detail dd{margin:0;overflow-wrap:anywhere} dl.detail dl.detail dd{overflow-wrap:normal}
.todo{background:#fef7e0;border-left:4px solid #a15c00;padding:.3rem .7rem;margin:.4rem 0}
.evidence-ref{color:#556;font-size:12px}
@media (max-width:900px){.charts{grid-template-columns:1fr}}
@media print{body{max-width:none;margin:0;font-size:11px} h2{break-after:avoid} .charts{grid-template-columns:repeat(2,1fr)}
 details::details-content{content-visibility:visible;display:block} summary{color:#1d2330} a{color:inherit;text-decoration:none}
 table,figure.chart,ul.attention li{break-inside:avoid} @page{size:A4;margin:14mm}}
"""

_URGENCY = {"block": 0, "error": 0, "fail": 0, "warn": 1, "waived": 2, "pass": 3, "n/a": 4, "skip": 4}
KEY_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "fairlearn", "skops", "assay")


# --------------------------------------------------------------------------- what the pack is built from


@dataclass
class Pack:
    """One run's recorded facts, read from the ledger: what every template renders."""

    run_id: str
    project: str
    status: str
    error: str | None
    evidence: dict[str, Any]
    verdict: dict[str, Any] | None
    records: list[Any]
    integrity: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)
    signers: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_records: list[Any] = field(default_factory=list)  # monitor, waiver, approval, promotion of the model
    generated: str = ""

    def seqs(self, *kinds: EventKind) -> list[int]:
        return [r.seq for r in self.records if r.kind in kinds]

    def identity(self, key_id: str) -> str:
        info = self.signers.get(key_id) or {}
        return str(info.get("identity") or key_id)

    @property
    def monitors(self) -> list[Any]:
        return [r for r in self.model_records if r.kind == "monitor"]


def _outcome(rule: dict[str, Any]) -> str:
    from assay.policies.evaluate import NOT_APPLICABLE

    outcome = str(rule.get("outcome"))
    if outcome == "pass" and str(rule.get("reason", "")).startswith(NOT_APPLICABLE):
        return "n/a"  # verdicts recorded before n/a existed said pass
    return outcome


def split_reason(text: str) -> tuple[str, str, str | None]:
    """A rule's reason as (human message, technical comparison, fix)."""
    body, sep, fix = text.partition(". Fix: ")
    human, dash, technical = body.partition(" — ")
    if not dash:
        human, technical = body, ""
    return human, technical, (fix if sep else None)


def attention(pack: Pack) -> list[dict[str, Any]]:
    """Blocks and errors, then warnings, then waivers: each with its message and what would fix it."""
    items: list[dict[str, Any]] = []
    if not pack.integrity.get("ok", True):
        items.append({"level": "block", "what": "ledger", "message": str(pack.integrity.get("summary")),
                      "technical": "", "fix": "run `assay audit verify` and restore the database from a copy"})
    if pack.error:
        items.append({"level": "error", "what": "run failed", "message": pack.error, "technical": "", "fix": None})
    covered: set[str] = set()
    for r in (pack.verdict or {}).get("rules", []) or []:
        outcome = _outcome(r)
        if outcome not in ("block", "error", "warn", "waived"):
            continue
        human, technical, fix = split_reason(str(r.get("reason", "")))
        path = str(r.get("path", ""))
        if path.startswith("checks.") and path.endswith(".status"):
            covered.add(path[len("checks."):-len(".status")])
        items.append({"level": outcome, "what": str(r.get("id")), "message": human, "technical": technical,
                      "fix": fix, "measured": r.get("measured"), "threshold": r.get("threshold")})
    checks = pack.evidence.get("checks") or {}
    for group, named in checks.items() if isinstance(checks, dict) else ():
        for name, c in (named or {}).items() if isinstance(named, dict) else ():
            if not isinstance(c, dict) or c.get("status") not in ("fail", "error", "warn"):
                continue
            if f"{group}.{name}" in covered:
                continue
            detail = c["detail"] if isinstance(c.get("detail"), dict) else {}
            message = str(c.get("message") or detail.get("error") or detail.get("reason") or f"value {fmt(c.get('value'))}")
            items.append({"level": str(c.get("status")), "what": f"check {group}.{name}", "message": message,
                          "technical": "", "fix": detail.get("fix")})
    # The same finding under two rules (a blocking and a warning one) is said once, at its worst level.
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for item in sorted(items, key=lambda i: _URGENCY.get(i["level"], 1)):
        seen.setdefault((item["message"], str(item.get("fix"))), item)
    return list(seen.values())


# --------------------------------------------------------------------------- small HTML pieces


def _v(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value) and len(value) == 2:
        return escape(f"{fmt(value[0])} to {fmt(value[1])}")
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        return "<br>".join(escape(_inline(v)) for v in value)
    if isinstance(value, (list, tuple)):
        return escape(", ".join(fmt(v) if isinstance(v, (int, float)) else str(v) for v in value))
    if isinstance(value, dict):
        return _dl(value)
    return escape(fmt(value))


def _inline(d: dict[str, Any]) -> str:
    """A small mapping on one line: ``key value, key value`` (nested values as lists)."""
    def one(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(one(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + _inline(v) + "}"
        return fmt(v) if isinstance(v, (int, float)) else str(v)

    return ", ".join(f"{k} {one(v)}" for k, v in d.items())


def _dl(detail: dict[str, Any], depth: int = 0) -> str:
    """A check's detail as a readable list of fields (nested dicts one level deep, lists in full)."""
    if not detail:
        return '<span class="muted">—</span>'
    rows = []
    for k, v in detail.items():
        if k in ("fix",):
            continue
        if isinstance(v, dict) and depth == 0:
            shown = _dl(v, 1) if v else '<span class="muted">none</span>'
        elif isinstance(v, dict):
            shown = escape(_inline(v))
        elif isinstance(v, list) and not v:
            shown = '<span class="muted">none</span>'
        else:
            shown = _v(v)
        rows.append(f"<dt>{escape(str(k))}</dt><dd>{shown}</dd>")
    return f'<dl class="detail">{"".join(rows)}</dl>'


def _table(headers: list[str], rows: list[list[Any]], raw: bool = False, cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if isinstance(c, (int, float)) and not isinstance(c, bool) else ""}>'
                         f"{c if raw and isinstance(c, str) else _v(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table{f" class={cls}" if cls else ""}><tr>{head}</tr>{body}</table>'


def _status(value: str) -> str:
    css = "na" if value in ("n/a", "skip") else value
    return f'<span class="{escape(css)}">{escape(value)}</span>'


def when(time: Any) -> str:
    """A record's UTC time to the second: ``2026-12-01 14:01:17 UTC``."""
    text = str(time or "")
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def _seq_list(seqs: list[int]) -> str:
    if not seqs:
        return "none"
    if len(seqs) > 3 and seqs == list(range(seqs[0], seqs[-1] + 1)):
        return f"{seqs[0]}–{seqs[-1]}"
    return ", ".join(str(s) for s in seqs)


# --------------------------------------------------------------------------- sections


def header_html(pack: Pack) -> str:
    ev = pack.evidence
    model = ev.get("model") or {}
    decision = (pack.verdict or {}).get("decision")
    integ = pack.integrity
    verdict = (f'<span class="verdict {escape(str(decision))}">{escape(str(decision).upper())}</span>' if decision
               else '<span class="verdict none">NO VERDICT</span>')
    if not integ.get("ok"):  # what the records say cannot be relied on: say so before anything they say
        verdict = ('<span class="verdict block">LEDGER NOT VERIFIED</span> <span class="muted">recorded verdict '
                   f"(untrusted): {escape(str(decision or 'none'))}</span>")
    ledger_line = ("✓ verified" if integ.get("ok") else "✗ NOT verified") + f" — {integ.get('summary', '')}"
    cp = integ.get("checkpoint") or {}
    rows = [
        ["run", f"<code>{escape(pack.run_id)}</code> ({_status(pack.status)})"],
        ["model", f"<code>{escape(str(model.get('ref') or '—'))}</code> · {escape(str(model.get('family') or '—'))}"],
        ["artifact", f"<code>{escape(str(model.get('artifact') or '—'))}</code>"],
        ["policy", f"{escape(str((pack.verdict or {}).get('policy') or '—'))} "
                   f"<code>{escape(str((pack.verdict or {}).get('policy_hash') or ev.get('policy_hash') or ''))}</code>"],
        ["ledger", escape(ledger_line)],
    ]
    if cp:
        rows.append(["checkpoint", f"tree size {cp.get('size'):,}, root <code>{escape(str(cp.get('root')))}</code>"
                                   f" ({escape(str(cp.get('file', '')))})"])
    cosigners = integ.get("cosignatures") or []
    if cosigners:
        rows.append(["witnesses", escape(", ".join(cosigners)) + ' <span class="muted">(cosigned the checkpoint; '
                                                                 "check with <code>assay audit verify --witness-key</code>)</span>"])
    if pack.generated:
        rows.append(["written", escape(pack.generated)])
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<header class="pack"><p class="muted">assay evidence pack</p>'
            f"<h1>{escape(pack.project)} — {verdict}</h1>"
            f'<table class="facts">{facts}</table></header>')


def attention_html(pack: Pack) -> str:
    items = attention(pack)
    if not items:
        return ('<section id="attention"><h2>What needs attention first (0)</h2>'
                '<p class="pass">Nothing: every rule and check passed or did not apply.</p></section>')
    lis = []
    for i in items:
        fix = f'<span class="fix"><b>Fix:</b> {escape(str(i["fix"]))}</span>' if i.get("fix") else ""
        tech = f'<span class="technical">{escape(i["technical"])}</span>' if i.get("technical") else ""
        lis.append(f'<li class="level-{escape(i["level"])}">{_status(i["level"])} <span class="what">'
                   f'{escape(i["what"])}</span><span class="message">{escape(i["message"])}</span>{tech}{fix}</li>')
    return (f'<section id="attention"><h2>What needs attention first ({len(items)})</h2>'
            f'<ul class="attention">{"".join(lis)}</ul></section>')


def card_html(pack: Pack) -> str:
    ev, spec = pack.evidence, pack.spec
    project = spec.get("project") or {}
    data_spec = spec.get("data") or {}

    def stated(key: str, label: str) -> str:
        value = project.get(key)
        if value:
            return escape(str(value))
        return f'<span class="muted">not stated: add <code>[project] {key} = "…"</code> ({escape(label)})</span>'

    model = ev.get("model") or {}
    data, split = ev.get("data") or {}, ev.get("split") or {}
    sources = [["dataset", str(data.get("source") or data_spec.get("source") or "—"), data.get("rows"),
                f"<code>{escape(str(data.get('fingerprint')))}</code>"]]
    for part in ("train", "test"):
        if split.get(part):
            sources.append([f"{part} part ({split.get('strategy')})", "", split[part].get("rows"),
                            f"<code>{escape(str(split[part].get('fingerprint')))}</code>"])
    target = (ev.get("domain") or {}).get("target") or {}
    if target.get("fingerprint"):
        sources.append(["target domain", str(target.get("source")), target.get("rows"),
                        f"<code>{escape(str(target.get('fingerprint')))}</code>"])
    rows = [["description", stated("description", "what the model does")],
            ["owner", stated("owner", "who answers for it")],
            ["intended use", stated("intended_use", "what it is for, and not for")],
            ["task", escape(f"{ev.get('task', data_spec.get('task', '—'))} · target {data_spec.get('target', '—')}"
                            f" · primary metric {ev.get('metric', '—')}")],
            ["sensitive features", escape(", ".join(data.get("sensitive") or data_spec.get("sensitive") or []) or "none")],
            ["model family", escape(str(model.get("family") or "—"))],
            ["parameters", _dl(model.get("params") or {}) if model.get("params") else
             '<span class="muted">the family\'s defaults</span>']]
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    out = [f'<section id="card"><h2>Model card</h2><table class="facts">{facts}</table>',
           "<h3>Data sources</h3>", _table(["", "source", "rows", "fingerprint"], sources, raw=True)]
    candidates = model.get("candidates") or []
    if candidates:
        out.append("<h3>Model selection</h3>")
        out.append(_table(["family", "cv mean", "cv std", "settings tried", "fit s", "best parameters"],
                          [[c.get("family"), c.get("cv_mean"), c.get("cv_std"), c.get("n_candidates"), c.get("fit_s"),
                            c.get("params") or "defaults"] for c in candidates]))
    out.append("</section>")
    return "".join(out)


def charts_html(pack: Pack) -> str:
    from assay.commands.figures import charts

    found = charts(pack)
    if not found:
        return ('<section id="charts"><h2>Charts</h2><p class="muted">This run recorded no evidence to chart '
                "(it has no evidence record).</p></section>")
    return f'<section id="charts"><h2>Charts</h2><div class="charts">{"".join(found)}</div></section>'


def gate_html(pack: Pack) -> str:
    verdict = pack.verdict
    if not verdict:
        return '<section id="gate"><h2>Gate</h2><p>No verdict was recorded for this run.</p></section>'
    rules = sorted(verdict.get("rules", []) or [], key=lambda r: _URGENCY.get(_outcome(r), 1))
    counts: dict[str, int] = {}
    for r in rules:
        counts[_outcome(r)] = counts.get(_outcome(r), 0) + 1
    seq = pack.seqs("verdict")

    def rows(which: list[dict[str, Any]]) -> str:
        return _table(["rule", "outcome", "measured", "threshold", "why"],
                      [[f"<code>{escape(str(r.get('id')))}</code>", _status(_outcome(r)), _v(r.get("measured")),
                        escape(f"{r.get('op', '')} ") + _v(r.get("threshold")),
                        escape(split_reason(str(r.get("reason", "")))[0])] for r in which], raw=True)

    attention_rules = [r for r in rules if _outcome(r) not in ("pass", "n/a")]
    passed = [r for r in rules if _outcome(r) == "pass"]
    na = [r for r in rules if _outcome(r) == "n/a"]
    out = [f'<section id="gate"><h2>Gate: {_status(str(verdict.get("decision")))} under '
           f'{escape(str(verdict.get("policy")))}</h2>',
           f'<p class="muted">policy <code>{escape(str(verdict.get("policy_hash", "")))}</code> · '
           + escape(", ".join(f"{n} {k}" for k, n in counts.items()))
           + (f" · verdict record seq {_seq_list(seq)}" if seq else "") + "</p>"]
    if attention_rules:
        out.append(rows(attention_rules))
    if passed:
        out.append(f"<details><summary>{len(passed)} rules passed</summary>{rows(passed)}</details>")
    if na:
        out.append(f"<details><summary>{len(na)} rules did not apply</summary>{rows(na)}</details>")
    out.append("</section>")
    return "".join(out)


def checks_html(pack: Pack) -> str:
    checks = pack.evidence.get("checks") or {}
    if not checks:
        return ""
    out = ['<section id="checks"><h2>Checks</h2>']
    for group, named in checks.items():
        if not isinstance(named, dict):
            continue
        found = sorted(named.items(), key=lambda kv: _URGENCY.get(str(kv[1].get("status")), 1))
        bad = [(n, c) for n, c in found if c.get("status") not in ("pass", "skip")]
        good = [(n, c) for n, c in found if c.get("status") in ("pass", "skip")]

        def table(items: list[tuple[str, dict[str, Any]]]) -> str:
            rows = []
            for name, c in items:
                detail = c.get("detail") if isinstance(c.get("detail"), dict) else {}
                message = str(c.get("message") or (detail or {}).get("reason") or "")
                fix = (detail or {}).get("fix") if c.get("status") not in ("pass", "skip") else None
                finding = escape(message) + (f'<span class="fix"><b>Fix:</b> {escape(str(fix))}</span>' if fix else "")
                rows.append([escape(name), _status(str(c.get("status"))), _v(c.get("value")), finding,
                             _dl(detail or {})])
            return _table(["check", "status", "value", "finding", "detail"], rows, raw=True)

        out.append(f"<h3>{escape(group)} ({len(bad)} need attention, {len(good)} passed or skipped)</h3>")
        if bad:
            out.append(table(bad))
        if good:
            out.append(f"<details><summary>{len(good)} passed or skipped</summary>{table(good)}</details>")
    out.append("</section>")
    return "".join(out)


def fairness_html(pack: Pack) -> str:
    out = []
    for feature, info in (pack.evidence.get("fairness") or {}).items():
        if not isinstance(info, dict):
            continue
        out.append(f"<h2>Fairness: {escape(feature)}</h2>")
        summary = {k: v for k, v in info.items() if not isinstance(v, (dict, list)) and not k.endswith("_ci")}
        rows = [[k.replace("_", " "), v, info.get(f"{k}_ci")] for k, v in summary.items()]
        out.append(_table(["measure", "value", "95% interval"], rows))
        by_group = info.get("by_group") or {}
        if isinstance(by_group, dict) and by_group:
            cols = [c for c in ("count", "selection_rate", "false_positive_rate", "false_negative_rate", "accuracy",
                                "roc_auc", "mae", "exposure") if any(c in g for g in by_group.values() if isinstance(g, dict))]
            out.append(_table(["group", *[c.replace("_", " ") for c in cols]],
                              [[g, *[vals.get(c) for c in cols]] for g, vals in by_group.items() if isinstance(vals, dict)]))
    return f'<section id="fairness">{"".join(out)}</section>' if out else ""


def metrics_html(pack: Pack) -> str:
    ev = pack.evidence
    metrics = ev.get("metrics") or {}
    test, cv, train = metrics.get("test") or {}, metrics.get("cv") or {}, metrics.get("train") or {}
    base = (ev.get("baseline") or {}).get("test") or {}
    rows = []
    for name, value in test.items():
        if isinstance(value, (list, dict)) or name.endswith("_ci"):
            continue
        cv_mean = cv.get(name, {}).get("mean") if isinstance(cv.get(name), dict) else None
        label = f"<b>{escape(name)}</b> (primary)" if name == ev.get("metric") else escape(name)
        rows.append([label, _v(train.get(name)), _v(cv_mean), _v(value), _v(test.get(f"{name}_ci")),
                     _v(base.get(name)), _v((ev.get("gap") or {}).get(name))])
    if not rows:
        return ""
    return (f'<section id="metrics"><h2>Metrics (baseline: {escape(str((ev.get("baseline") or {}).get("name")))})</h2>'
            + _table(["metric", "train", "cv mean", "holdout", "holdout 95% interval", "baseline", "gap (train − holdout)"],
                     rows, raw=True) + "</section>")


def lineage_html(pack: Pack) -> str:
    rows = []
    first: dict[str, Any] = {}
    for r in pack.records:
        first.setdefault(r.kind, r)
    ev = pack.evidence
    steps: list[tuple[EventKind, str, str]] = [("run_started", "spec", f"spec {(pack.spec and ev.get('spec_hash')) or ''}"),
             ("data", "data", f"{(ev.get('data') or {}).get('source', '')} {(ev.get('data') or {}).get('fingerprint', '')}"),
             ("split", "split", f"{(ev.get('split') or {}).get('strategy', '')}"),
             ("model", "model", f"{(ev.get('model') or {}).get('ref', '')} {(ev.get('model') or {}).get('artifact', '')}"),
             ("evidence", "evidence", ""),
             ("verdict", "verdict", f"{(pack.verdict or {}).get('decision', '')} under {(pack.verdict or {}).get('policy', '')}")]
    for kind, label, what in steps:
        rec = first.get(kind)
        if rec is not None:
            rows.append([rec.seq, label, f"<code>{escape(what.strip())}</code>" if what.strip() else "",
                         escape(when(rec.time)), escape(pack.identity(rec.key_id))])
    for rec in pack.model_records:
        p = rec.payload or {}
        what = {"waiver": f"waiver of {p.get('rule')} by {p.get('approver')} until {p.get('expires')}: {p.get('reason')}",
                "approval": f"approved by {p.get('approver')}" + (f": {p.get('comment')}" if p.get("comment") else ""),
                "promotion": f"{p.get('from')} → {p.get('to')}",
                "monitor": f"monitor {p.get('status')}: batch "
                           f"{(((p.get('evidence') or {}).get('data') or {}).get('current') or {}).get('source', '')}"
                }.get(rec.kind, "")
        rows.append([rec.seq, rec.kind, escape(what), escape(when(rec.time)), escape(pack.identity(rec.key_id))])
    return ('<section id="lineage"><h2>Lineage</h2>'
            + _table(["seq", "step", "what", "time", "signed by"], rows, raw=True) + "</section>")


def environment_html(pack: Pack) -> str:
    env, cost = pack.evidence.get("environment") or {}, pack.evidence.get("cost") or {}
    missing = "not recorded in this run's evidence"
    rows: list[tuple[str, Any]] = []
    if env:
        git = env.get("git") or {}
        packages = env.get("packages") or {}
        implementation = f" ({env['implementation']})" if env.get("implementation") else ""
        rows += [("python", f"{env['python']}{implementation}" if env.get("python") else missing),
                 ("platform", env.get("platform") or missing),
                 ("git", (f"{git.get('commit') or 'not a git checkout'}"
                          + (" (uncommitted changes)" if git.get("dirty") else "")) if "git" in env else missing),
                 ("packages", ", ".join(f"{p} {packages[p]}" for p in KEY_PACKAGES if p in packages) or missing)]
    else:
        rows.append(("environment", f"{missing} (python, platform, git and packages unknown)"))
    rows.append(("cost", f"{fmt(cost.get('wall_s'))} s wall, {fmt(cost.get('cpu_s'))} s CPU, "
                         f"peak {fmt(cost.get('peak_mb'))} MB" if cost else missing))
    return ('<section id="environment"><h2>Environment and cost</h2><table class="facts">'
            + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table></section>")


def records_html(pack: Pack) -> str:
    integ = pack.integrity
    state = "verified" if integ.get("ok") else "NOT verified"
    return (f'<section id="records"><h2>Ledger records ({len(pack.records)}) — ledger {state}</h2>'
            f'<p class="muted">{escape(str(integ.get("summary", "")))}</p>'
            + _table(["seq", "kind", "time", "signed by", "record hash"],
                     [[r.seq, escape(r.kind), escape(when(r.time)), escape(pack.identity(r.key_id)),
                       f"<code>{escape(r.hash)}</code>"] for r in pack.records], raw=True) + "</section>")


def body_sections(pack: Pack) -> list[str]:
    """The sections after the attention list: what the web view's run page shows under its own header."""
    return [card_html(pack), charts_html(pack), gate_html(pack), metrics_html(pack), checks_html(pack),
            fairness_html(pack), lineage_html(pack), environment_html(pack)]


def page(pack: Pack) -> str:
    parts = [header_html(pack), attention_html(pack), *body_sections(pack), records_html(pack)]
    return (f"<!doctype html><html lang=en><head><meta charset='utf-8'><meta name=viewport "
            f"content='width=device-width, initial-scale=1'><title>assay report {escape(pack.run_id)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def _pack(run: Any, evidence: dict[str, Any], verdict: dict[str, Any] | None, records: list[Any],
          integrity: dict[str, Any], context: dict[str, Any] | None = None) -> Pack:
    ctx = context or {}
    return Pack(run_id=run.run_id, project=str(evidence.get("project") or run.project), status=run.status,
                error=run.error, evidence=evidence, verdict=verdict, records=list(records), integrity=integrity,
                spec=dict(ctx.get("spec") or {}), signers=dict(ctx.get("signers") or {}),
                model_records=list(ctx.get("model_records") or []), generated=str(ctx.get("generated") or ""))


def render(run: Any, evidence: dict[str, Any], verdict: dict[str, Any] | None, records: list[Any],
           integrity: dict[str, Any], context: dict[str, Any] | None = None) -> str:
    """The whole self-contained page. ``context``: ``spec``, ``signers``, ``model_records``, ``generated``."""
    return page(_pack(run, evidence, verdict, records, integrity, context))


def render_body(run: Any, evidence: dict[str, Any], verdict: dict[str, Any] | None, records: list[Any],
                integrity: dict[str, Any], context: dict[str, Any] | None = None) -> str:
    """The model card, charts, gate, metrics, checks, fairness, lineage and environment sections."""
    return "".join(body_sections(_pack(run, evidence, verdict, records, integrity, context)))


# --------------------------------------------------------------------------- reading the ledger


def _records(src: Any, where: str, args: tuple[Any, ...]) -> list[Any]:
    from assay.audit.format import Record

    rows = src.query(f"SELECT seq, body, hash, signature FROM ledger_records WHERE {where} ORDER BY seq", args)
    return [Record.from_row(int(q), bytes(b), bytes(h), bytes(g)) for q, b, h, g in rows]


def resolve_run(src: Any, ref: str) -> str:
    """A run id, or a unique prefix of one (six characters or more), that has records in the ledger."""
    if src.query("SELECT seq FROM ledger_records WHERE run_id = ? LIMIT 1", (ref,)):
        return ref
    found = []
    if len(ref) >= 6 and ref.isalnum():
        found = [r for (r,) in src.query("SELECT DISTINCT run_id FROM ledger_records WHERE run_id LIKE ?", (ref + "%",))]
    if len(found) == 1:
        return str(found[0])
    if found:
        raise BadInput(f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(found)[:5])}")
    raise BadInput(f"run {ref!r} has no records in the ledger (`assay audit log` lists the runs it holds)")


def ledger_status(state: Any, run_id: str) -> tuple[dict[str, Any], list[Any], dict[str, dict[str, Any]]]:
    """Verify the ledger and this run's records; (integrity, the run's records, signers).

    With a checkpoint in the home, the ledger is proven to extend it (the records after it
    checked in full) and each of the run's records is re-hashed from its signed bytes, its
    signature checked and its inclusion in the checkpoint's Merkle tree proven; without one,
    every record is verified. The database is opened read-only, through the verifier's source.
    """
    import base64

    from assay.audit import verify as V
    from assay.audit.format import record_hash
    from assay.audit.merkle import ProofError, inclusion_proof, leaf_hash, verify_inclusion
    from assay.audit.note import NoteError, parse_checkpoint, parse_note

    trust_file = Path(state.home) / "keys" / "trust.json"
    trust = trust_file if trust_file.exists() else None
    src = V.Source(state.db_url)
    try:
        ledger_id = src.meta("ledger_id") or ""
        records = _records(src, "run_id = ?", (run_id,))
        cp_path = V.newest_home_checkpoint(Path(state.home), ledger_id)
        if cp_path is None:
            rep = V.verify_ledger(state.db_url, trust=trust, home=state.home)
            return {"ok": rep.ok, "summary": rep.summary(), "mode": "full"}, records, dict(rep.signers)
        rep = V.verify_extension(state.db_url, cp_path, trust=trust)
        try:
            body, sigs = parse_note(cp_path.read_text(encoding="utf-8"))
            cp = parse_checkpoint(body)
        except NoteError as exc:
            raise BadInput(f"checkpoint {cp_path}: not a valid signed checkpoint note: {exc}") from None
        integrity: dict[str, Any] = {"ok": rep.ok, "mode": "checkpoint", "checkpoint": {
            "size": cp.size, "root": base64.b64encode(cp.root).decode(), "file": str(cp_path)}}
        witnessed = Path(state.home) / "checkpoints" / f"{ledger_id}.witnessed.note"
        if witnessed.exists():
            try:
                w_body, w_sigs = parse_note(witnessed.read_text(encoding="utf-8"))
                if parse_checkpoint(w_body).size == cp.size:
                    integrity["cosignatures"] = sorted({x.name for x in w_sigs} - {x.name for x in sigs})
            except (NoteError, OSError):
                integrity["cosignatures"] = []
        if not rep.ok:
            integrity["summary"] = rep.summary()
            return integrity, records, dict(rep.signers)
        problems: list[str] = []
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        for r in records:
            h = bytes.fromhex(r.hash)
            if record_hash(bytes.fromhex(r.prev_hash), r.body) != h:
                problems.append(f"record {r.seq}: its bytes do not hash to its stored hash (hash mismatch)")
                continue
            public = (rep.signers.get(r.key_id) or {}).get("public_key")
            try:
                Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(public))).verify(bytes.fromhex(r.signature), h)
            except (InvalidSignature, ValueError, TypeError):
                problems.append(f"record {r.seq}: its signature does not verify with a trusted key")
                continue
            if r.seq <= cp.size:
                try:
                    proof = inclusion_proof(r.seq - 1, cp.size, src.stored_node)
                    verify_inclusion(r.seq - 1, cp.size, leaf_hash(h), proof, cp.root)
                except ProofError as exc:
                    problems.append(f"record {r.seq}: not proven inside the checkpoint ({exc})")
    finally:
        src.close()
    after = sum(1 for r in records if r.seq > cp.size)
    if problems:
        integrity.update(ok=False, summary="tampering found: " + "; ".join(problems[:3]))
    else:
        integrity["summary"] = (f"ledger extends the checkpoint of size {cp.size:,} ({rep.size:,} records now); "
                                f"this run's {len(records) - after} record(s) re-hashed, signatures checked and proven "
                                f"inside it" + (f", {after} newer one(s) verified in full" if after else "")
                                + " (`assay audit verify` re-checks every record)")
    return integrity, records, dict(rep.signers)


def collect(state: Any, ref: str) -> Pack:
    """The run's pack, read from its signed records (and its model's) only."""
    import datetime as dt

    from assay.audit import verify as V
    from assay.audit.canonical import decode_special

    src = V.Source(state.db_url)
    try:
        run_id = resolve_run(src, ref)
    finally:
        src.close()
    integrity, records, signers = ledger_status(state, run_id)
    by_kind: dict[str, Any] = {}
    for r in records:
        by_kind[r.kind] = r  # the newest of each kind
    started = next((r for r in records if r.kind == "run_started"), None)
    evidence = decode_special(by_kind["evidence"].payload) if "evidence" in by_kind else {}
    verdict = dict(by_kind["verdict"].payload) if "verdict" in by_kind else None
    if "run_finished" in by_kind:
        status = str(by_kind["run_finished"].payload.get("status", "passed"))
    elif "run_failed" in by_kind:
        status = "errored"
    else:
        status = "running"
    error = str(by_kind["run_failed"].payload.get("error")) if "run_failed" in by_kind else None
    spec = dict((started.payload or {}).get("spec") or {}) if started is not None else {}
    ref_ = str((evidence.get("model") or {}).get("ref") or "")
    model_records: list[Any] = []
    if ref_:
        src = V.Source(state.db_url)
        try:
            kinds = ("waiver", "approval", "promotion", "monitor")
            model_records = [r for r in _records(src, "kind IN (?, ?, ?, ?)", kinds)
                             if (r.payload or {}).get("model") == ref_]
        finally:
            src.close()
    project = str(evidence.get("project") or ((started.payload or {}).get("project", "") if started else ""))
    return Pack(run_id=run_id, project=project, status=status, error=error, evidence=evidence, verdict=verdict,
                records=records, integrity=integrity, spec=spec, signers=signers, model_records=model_records,
                generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))


@click.command()
@click.argument("run_id")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--template", type=click.Choice(["card", "annex-iv"]), default="card", show_default=True,
              help="card: the evidence pack for reviewers; annex-iv: EU AI Act Annex IV technical documentation.")
@click.option("--format", "fmt_", type=click.Choice(["html", "markdown", "cyclonedx"]), default="html",
              show_default=True, help="html: one self-contained page; markdown: CommonMark; "
                                      "cyclonedx: a signed CycloneDX 1.6 ML-BOM (JSON).")
@click.pass_obj
def report(state: Any, run_id: str, output: str, fmt_: str = "html", template: str = "card") -> None:
    """Write the evidence pack of RUN_ID: verdict, what needs attention, model card, charts, checks, ledger."""
    target = Path(output)
    if not target.parent.is_dir():  # said before the ledger is read and verified, which takes a while
        raise BadInput(f"--output {output}: folder {target.parent} does not exist (create it, or pick another path)")
    if fmt_ == "cyclonedx":
        if template != "card":
            raise BadInput("--format cyclonedx writes the ML-BOM of the model card: leave --template out")
        from assay.commands.bom import save_bom

        click.echo(save_bom(state, run_id, target))
        return
    pack = collect(state, run_id)
    if template == "annex-iv":
        from assay.commands.annex import annex_html, annex_markdown

        text = annex_markdown(pack) if fmt_ == "markdown" else annex_html(pack)
    elif fmt_ == "markdown":
        from assay.commands.annex import card_markdown

        text = card_markdown(pack)
    else:
        text = page(pack)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write the report: {exc.strerror or exc}") from None
    decision = (pack.verdict or {}).get("decision", "none")
    click.echo(f"wrote {output} (run {pack.run_id}, {pack.status}, verdict {decision}; "
               f"ledger {'intact' if pack.integrity.get('ok') else 'NOT intact'})")
