"""EU AI Act Annex IV technical documentation, and the model card as CommonMark.

Annex IV lists what the technical documentation of a high-risk AI system holds. A training
platform knows part of it — what was trained on which data, how it was selected and tested,
who signed which step and when, what monitoring found since — and each section here cites the
ledger records (by seq) that prove what it says. What only the provider can know (the
system's wider purpose, its users, human oversight, the risk-management system...) is marked
"To be completed by the provider", never guessed.

Both templates are built as a list of blocks (heading, paragraph, table, to-do) rendered to
HTML or to CommonMark, so the two formats always say the same thing.
"""

from __future__ import annotations

from html import escape
from typing import Any

from assay.commands.charts import fmt

TODO = "To be completed by the provider"

Block = tuple[str, Any]  # ("h2"|"h3"|"p"|"todo"|"table"|"refs", content)


def _v(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"{fmt(value[0])} to {fmt(value[1])}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(fmt(v)) for v in value)
    return fmt(value) if value is not None else "—"


def _refs(pack: Any, *kinds: str) -> Block:
    seqs = pack.seqs(*kinds)
    return ("refs", f"Ledger records: {', '.join(f'seq {s}' for s in seqs) if seqs else 'none recorded'}.")


def _metric_rows(pack: Any) -> list[list[str]]:
    ev = pack.evidence
    test = (ev.get("metrics") or {}).get("test") or {}
    base = (ev.get("baseline") or {}).get("test") or {}
    return [[n, _v(v), _v(test.get(f"{n}_ci")), _v(base.get(n)), _v((ev.get("gap") or {}).get(n))]
            for n, v in test.items() if not n.endswith("_ci") and not isinstance(v, (dict, list))]


def annex_blocks(pack: Any) -> list[Block]:
    from assay.commands.figures import monitor_point
    from assay.commands.report import attention, split_reason, when

    ev, spec = pack.evidence, pack.spec
    project, data_spec = spec.get("project") or {}, spec.get("data") or {}
    model = ev.get("model") or {}
    data, split = ev.get("data") or {}, ev.get("split") or {}
    verdict = pack.verdict or {}
    b: list[Block] = [("h1", f"Technical documentation (EU AI Act, Annex IV): {pack.project}"),
                      ("p", f"Run {pack.run_id}; model {model.get('ref', '—')}, artifact {model.get('artifact', '—')}. "
                            f"Ledger: {pack.integrity.get('summary', '')}. Generated {pack.generated or 'from the ledger'}."),
                      ("p", f"Five sections cover Annex IV points 1–9 as far as the ledger knows them. Every "
                            f"statement cites the signed ledger records (seq numbers) it comes from; \"{TODO}\" "
                            "marks what assay cannot know.")]

    b += [("h2", "1. General description of the AI system"),
          ("table", (["item", "recorded"], [
              ["intended purpose", project.get("intended_use") or f"{TODO} (or set [project] intended_use)"],
              ["description", project.get("description") or f"{TODO} (or set [project] description)"],
              ["provider / owner", project.get("owner") or f"{TODO} (or set [project] owner)"],
              ["model name and version", str(model.get("ref", "—"))],
              ["task", f"{ev.get('task', data_spec.get('task', '—'))}, predicting {data_spec.get('target', '—')}"],
              ["software versions", ", ".join(f"{k} {v}" for k, v in ((ev.get("environment") or {}).get("packages") or {}).items()
                                              if k in ("assay", "scikit-learn", "numpy", "pandas", "fairlearn"))],
          ])),
          _refs(pack, "run_started", "model"),
          ("todo", f"{TODO}: how the system interacts with hardware or software beyond the model; the forms in "
                   "which it is placed on the market; the hardware it runs on; instructions for use and the "
                   "user interface shown to deployers (Annex IV 1(b)–(h)).")]

    candidates = model.get("candidates") or []
    search = model.get("search") or {}
    tuner = search.get("tuner", (spec.get("train") or {}).get("tuning", "—"))
    folds = search.get("folds", (spec.get("split") or {}).get("cv_folds", "—"))
    how = (f"No hyperparameter search (train.tuning = none): each family at its defaults, scored by {folds}-fold "
           "cross-validation" if tuner == "none" else f"Selection by {tuner} search on {folds}-fold cross-validation")
    b += [("h2", "2. Development process"),
          ("h3", "2(a–b) Design choices, model family and selection"),
          ("p", f"Selected family: {model.get('family', '—')} with parameters "
                f"{', '.join(f'{k}={v}' for k, v in (model.get('params') or {}).items()) or 'at the family defaults'}. "
                f"{how}, metric {ev.get('metric', '—')}; the holdout was not used for selection "
                f"(check leakage.holdout_used_in_tuning)."),
          ("table", (["family", "cv mean", "cv std", "settings tried"],
                     [[str(c.get("family")), _v(c.get("cv_mean")), _v(c.get("cv_std")), _v(c.get("n_candidates"))]
                      for c in candidates])),
          _refs(pack, "model"),
          ("h3", "2(d) Data: provenance, preparation and labelling"),
          ("table", (["data", "rows", "fingerprint (SHA-256)"], [
              [f"dataset {data.get('source', data_spec.get('source', '—'))}", _v(data.get("rows")), str(data.get("fingerprint"))],
              *[[f"{p} part ({split.get('strategy')})", _v((split.get(p) or {}).get("rows")),
                 str((split.get(p) or {}).get("fingerprint"))] for p in ("train", "test") if split.get(p)]])),
          ("p", f"Features: every column but the target, identifiers and {', '.join(data_spec.get('drop') or []) or 'none'} "
                f"(dropped); sensitive features kept out of the model: "
                f"{', '.join(data.get('sensitive') or data_spec.get('sensitive') or []) or 'none'}. "
                "Preprocessing is fitted inside each cross-validation fold (check leakage.preprocessing_inside_cv)."),
          _refs(pack, "data", "split"),
          ("todo", f"{TODO}: where the data came from and under what terms, how labels were obtained and checked, "
                   "data cleaning beyond what the spec records, and the assessment of data suitability and bias "
                   "in collection (Annex IV 2(d)); human oversight measures (2(e)); pre-determined changes (2(f)).")]

    fairness_rows = []
    for key, info in (ev.get("fairness") or {}).items():
        if not isinstance(info, dict):
            continue
        for g, vals in (info.get("by_group") or {}).items():
            if isinstance(vals, dict):
                fairness_rows.append([key, str(g), _v(vals.get("count")), _v(vals.get("accuracy")),
                                      _v(vals.get("selection_rate")), _v(vals.get("false_positive_rate")),
                                      _v(vals.get("false_negative_rate"))])
    robustness = []
    for group in ("generalization", "leakage", "data"):
        for name, c in ((ev.get("checks") or {}).get(group) or {}).items():
            if isinstance(c, dict):
                robustness.append([f"{group}.{name}", str(c.get("status")), _v(c.get("value")),
                                   str(c.get("message") or "")])
    b += [("h2", "3. Validation and testing"),
          ("h3", "Metrics on the holdout"),
          ("table", (["metric", "holdout", "95% interval", "baseline", "gap (train − holdout)"], _metric_rows(pack))),
          _refs(pack, "metrics", "evidence"),
          ("h3", "Per-group accuracy and discriminatory impact"),
          ("table", (["feature", "group", "rows", "accuracy", "selection rate", "false positive rate",
                      "false negative rate"], fairness_rows)) if fairness_rows else
          ("p", "No sensitive features were named (data.sensitive), so no per-group results were recorded."),
          ("h3", "Robustness: generalization, leakage and data checks"),
          ("table", (["check", "status", "value", "finding"], robustness)),
          _refs(pack, "check"),
          ("todo", f"{TODO}: validation beyond the holdout (field tests, adversarial and cybersecurity testing, "
                   "Annex IV 2(g)–(h)), and the metrics' appropriateness for the intended purpose (point 4).")]

    rules = verdict.get("rules") or []
    findings = attention(pack)
    b += [("h2", "4. Test log: signed and dated"),
          ("table", (["seq", "time (UTC)", "record", "signed by", "key id"],
                     [[str(r.seq), when(r.time), r.kind, pack.identity(r.key_id), r.key_id] for r in pack.records])),
          ("p", f"Gate decision: {verdict.get('decision', 'none recorded')} under policy {verdict.get('policy', '—')} "
                f"({verdict.get('policy_hash', '—')}): {len(rules)} rules judged, {len(findings)} finding(s)."),
          ("table", (["level", "what", "finding", "fix"],
                     [[i["level"], i["what"], i["message"], str(i.get("fix") or "")] for i in findings])),
          _refs(pack, "verdict")]

    changes = [r for r in pack.model_records if r.kind in ("waiver", "approval", "promotion")]
    monitors = pack.monitors
    b += [("h2", "5. Changes and post-market monitoring"),
          ("table", (["seq", "time (UTC)", "change", "detail", "signed by"],
                     [[str(r.seq), when(r.time), r.kind, _change(r), pack.identity(r.key_id)] for r in changes]))
          if changes else ("p", "No waiver, approval or promotion of this model version is recorded."),
          ("table", (["seq", "time (UTC)", "batch", "status", "drift share", "live metric", "findings"],
                     [[str(m["seq"]), m["time"], str(m["source"]), str(m["status"]), _v(m["share"]), _v(m["current"]),
                       "; ".join(split_reason(x)[0] for x in m["reasons"])]
                      for m in (monitor_point(r, ev.get("metric")) for r in monitors)]))
          if monitors else ("p", "The model has not been monitored yet (`assay monitor` records each batch)."),
          ("refs", "Ledger records: " + (", ".join(f"seq {r.seq}" for r in [*changes, *monitors]) or "none recorded") + "."),
          ("todo", f"{TODO}: the post-market monitoring plan (Annex IV point 9, Article 72), the "
                   "risk-management system (point 5, Article 9), standards applied (point 7) and the EU "
                   "declaration of conformity (point 8).")]
    return b


def _change(r: Any) -> str:
    p = r.payload or {}
    if r.kind == "waiver":
        return f"waiver of {p.get('rule')} by {p.get('approver')} until {p.get('expires')}: {p.get('reason')}"
    if r.kind == "approval":
        return f"approved by {p.get('approver')}" + (f": {p.get('comment')}" if p.get("comment") else "")
    return f"{p.get('from')} → {p.get('to')}"


# --------------------------------------------------------------------------- rendering


def _todo(content: str) -> str:
    """What the provider completes, as a sentence after the marker."""
    text = content.removeprefix(TODO + ": ")
    return text[:1].upper() + text[1:]


def _md_cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_text(text: str) -> str:
    out = str(text)
    for ch in ("\\", "`", "*", "_", "[", "]", "<", ">", "#"):
        out = out.replace(ch, "\\" + ch)
    return out


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {_md_text(content)}")
        elif kind in ("p", "refs"):
            out.append(_md_text(content) if kind == "p" else f"*{_md_text(content)}*")
        elif kind == "todo":
            out.append(f"> **{TODO}.** {_md_text(_todo(content))}")
        elif kind == "table":
            headers, rows = content
            if not rows:
                out.append("*None recorded.*")
                continue
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], title: str) -> str:
    from assay.commands.report import CSS

    out: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{escape(content)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{escape(content)}</p>")
        elif kind == "refs":
            out.append(f'<p class="evidence-ref">{escape(content)}</p>')
        elif kind == "todo":
            out.append(f'<p class="todo"><b>{TODO}.</b> {escape(_todo(content))}</p>')
        elif kind == "table":
            headers, rows = content
            if not rows:
                out.append('<p class="muted">None recorded.</p>')
                continue
            head = "".join(f"<th>{escape(h)}</th>" for h in headers)
            body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f"<table><tr>{head}</tr>{body}</table>")
    return (f"<!doctype html><html lang=en><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(out)}</body></html>")


def annex_html(pack: Any) -> str:
    return to_html(annex_blocks(pack), f"Annex IV technical documentation — {pack.project}")


def annex_markdown(pack: Any) -> str:
    return to_markdown(annex_blocks(pack))


def card_blocks(pack: Any) -> list[Block]:
    from assay.commands.report import attention, when

    ev, spec = pack.evidence, pack.spec
    project = spec.get("project") or {}
    model = ev.get("model") or {}
    verdict = pack.verdict or {}
    data, split = ev.get("data") or {}, ev.get("split") or {}
    items = attention(pack)
    return [
        ("h1", f"Evidence pack: {pack.project} — {str(verdict.get('decision', 'no verdict')).upper()}"),
        ("table", (["", ""], [["run", pack.run_id], ["model", str(model.get("ref"))], ["artifact", str(model.get("artifact"))],
                              ["policy", f"{verdict.get('policy', '—')} {verdict.get('policy_hash', '')}"],
                              ["ledger", str(pack.integrity.get("summary", ""))]])),
        ("h2", f"What needs attention first ({len(items)})"),
        ("table", (["level", "what", "finding", "fix"], [[i["level"], i["what"], i["message"], str(i.get("fix") or "")]
                                                         for i in items])),
        ("h2", "Model card"),
        ("table", (["", ""], [["description", project.get("description") or "not stated"],
                              ["owner", project.get("owner") or "not stated"],
                              ["intended use", project.get("intended_use") or "not stated"],
                              ["task", str(ev.get("task"))], ["model family", str(model.get("family"))],
                              ["data", f"{data.get('source')} ({_v(data.get('rows'))} rows) {data.get('fingerprint')}"],
                              *[[f"{p} part", f"{_v((split.get(p) or {}).get('rows'))} rows "
                                              f"{(split.get(p) or {}).get('fingerprint')}"] for p in ("train", "test")
                                if split.get(p)]])),
        ("h2", "Metrics"),
        ("table", (["metric", "holdout", "95% interval", "baseline", "gap (train − holdout)"], _metric_rows(pack))),
        ("h2", f"Ledger records ({len(pack.records)})"),
        ("table", (["seq", "kind", "time (UTC)", "signed by", "hash"],
                   [[str(r.seq), r.kind, when(r.time), pack.identity(r.key_id), r.hash] for r in pack.records])),
    ]


def card_markdown(pack: Any) -> str:
    return to_markdown(card_blocks(pack))
