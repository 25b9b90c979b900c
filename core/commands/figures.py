"""The evidence pack's figures: which chart shows which recorded numbers (``assay.commands.charts`` draws them).

Each function reads one part of a run's evidence (or its model's monitor records) and returns
a chart, or nothing when the run did not record that part: ``curves`` comes from the
``curves`` plugin, ``fairness`` from the fairness plugin, ``domain`` from the domain plugin.
Policy thresholds drawn in come from the run's verdict (the rule that judged the number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assay.commands.charts import (
    Axis,
    Bar,
    Series,
    bar_chart,
    fmt,
    heatmap,
    histogram,
    line_chart,
    padded,
    time_chart,
)

Chart = Callable[[Any], list[str]]

#: metrics on a 0..1 scale, drawn together; the rest (log loss, MAE, cost...) are in the metrics table
UNIT_SCALE = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_weighted",
              "precision", "recall", "brier", "r2", "ndcg@10", "ndcg@5", "ndcg", "map", "mrr", "precision@10",
              "recall@10")


def _rule_threshold(pack: Any, path: str) -> tuple[float, str] | None:
    """The threshold and rule id of the verdict's rule that judged evidence ``path``."""
    for r in (pack.verdict or {}).get("rules", []) or []:
        if r.get("path") == path and isinstance(r.get("threshold"), (int, float)):
            return float(r["threshold"]), str(r.get("id"))
    return None


def _labelled(axis: Axis, label: str) -> Axis:
    axis.label = label
    return axis


def metrics_vs_baseline(pack: Any) -> list[str]:
    ev = pack.evidence
    test = (ev.get("metrics") or {}).get("test") or {}
    base = (ev.get("baseline") or {}).get("test") or {}
    names = [n for n in test if (n in UNIT_SCALE or n.startswith("ndcg@")) and isinstance(test[n], (int, float))]
    primary = ev.get("metric")
    names.sort(key=lambda n: (n != primary, n))
    if not names:
        return []

    def ci(d: dict[str, Any], n: str) -> tuple[float | None, float | None]:
        v = d.get(f"{n}_ci")
        return (v[0], v[1]) if isinstance(v, list) and len(v) == 2 else (None, None)

    rows = [(n + (" (primary)" if n == primary else ""),
             [Bar("model", test.get(n), *ci(test, n), cls="s0"), Bar(str((ev.get("baseline") or {}).get("name", "baseline")),
                                                                        base.get(n), *ci(base, n), cls="s1")])
            for n in names]
    return [bar_chart("metrics", "Holdout metrics: model against baseline", rows,
                      keys=[("model", "s0"), (f"baseline ({(ev.get('baseline') or {}).get('name', '')})", "s1")],
                      caption="Whiskers: 95% bootstrap intervals, where recorded (the model and the baseline share "
                              "each holdout resample). Metrics on other scales are in the metrics table.")]


def gap(pack: Any) -> list[str]:
    ev = pack.evidence
    name = ev.get("metric")
    metrics = ev.get("metrics") or {}
    train = (metrics.get("train") or {}).get(name)
    cv = (metrics.get("cv") or {}).get(name) or {}
    test = (metrics.get("test") or {}).get(name)
    if name is None or (train is None and test is None):
        return []
    mean, std = cv.get("mean") if isinstance(cv, dict) else None, cv.get("std") if isinstance(cv, dict) else None
    interval = (metrics.get("test") or {}).get(f"{name}_ci")
    lo, hi = (interval if isinstance(interval, list) and len(interval) == 2 else (None, None))
    bars = [("train", [Bar("train", train, cls="s1")]),
            ("cross-validation", [Bar("cv", mean, mean - std if mean is not None and std is not None else None,
                                      mean + std if mean is not None and std is not None else None, cls="s4",
                                      note="whisker: ± one standard deviation over folds")]),
            ("holdout", [Bar("holdout", test, lo, hi, cls="s0")])]
    g = (ev.get("gap") or {}).get(name)
    limit = _rule_threshold(pack, f"gap.{name}")
    caption = f"Gap train − holdout: {fmt(g)}" if g is not None else "Gap not recorded"
    if limit is not None:
        caption += f"; the policy allows {fmt(limit[0])} ({limit[1]})."
    return [bar_chart("gap", f"Train, cross-validation and holdout {name}", bars, caption=caption,
                      refs=[(train - limit[0], f"train − {fmt(limit[0])}", "ref")] if limit and train is not None else ())]


def roc(pack: Any) -> list[str]:
    c = (pack.evidence.get("curves") or {}).get("roc")
    if not c:
        return []
    auc = ((pack.evidence.get("metrics") or {}).get("test") or {}).get("roc_auc")
    return [line_chart("roc", "ROC curve (holdout)", [Series("model", c["fpr"], c["tpr"])],
                       Axis(0, 1, "false positive rate"), Axis(0, 1, "true positive rate"), diagonal=True,
                       caption=f"AUC {fmt(auc)}; the dashed diagonal is a model that guesses.")]


def pr(pack: Any) -> list[str]:
    c = (pack.evidence.get("curves") or {}).get("pr")
    if not c:
        return []
    ap = ((pack.evidence.get("metrics") or {}).get("test") or {}).get("average_precision")
    prevalence = c.get("prevalence")
    return [line_chart("pr", "Precision–recall curve (holdout)", [Series("model", c["recall"], c["precision"])],
                       Axis(0, 1, "recall"), Axis(0, 1.02, "precision"),
                       refs=[(prevalence, f"positive rate {fmt(prevalence)}")] if prevalence is not None else (),
                       caption=f"Average precision {fmt(ap)}; the line is what guessing achieves.")]


def calibration(pack: Any) -> list[str]:
    c = (pack.evidence.get("curves") or {}).get("calibration")
    if not c:
        return []
    labels = [f"predicted {fmt(p)}, observed {fmt(o)} ({n:,} rows)" for p, o, n in
              zip(c["predicted"], c["observed"], c["count"], strict=False)]
    brier = ((pack.evidence.get("metrics") or {}).get("test") or {}).get("brier")
    return [line_chart("calibration", "Calibration (holdout)",
                       [Series("model", c["predicted"], c["observed"], labels=labels)],
                       Axis(0, 1, "mean predicted probability"), Axis(0, 1, "observed positive rate"), diagonal=True,
                       caption=f"{c.get('bins', 10)} equal-width bins of predicted probability (empty ones left out); "
                               f"on the diagonal, predictions are calibrated. Brier score {fmt(brier)}.")]


def confusion(pack: Any) -> list[str]:
    c = (pack.evidence.get("curves") or {}).get("confusion")
    if not c:
        return []
    note = " Classes beyond the 12 most frequent are pooled as 'other'." if c.get("pooled_other") else ""
    return [heatmap("confusion", "Confusion matrix (holdout)", c["labels"], c["matrix"],
                    caption="Rows: the true class; columns: the predicted one; shading: share of the row." + note)]


def residuals(pack: Any) -> list[str]:
    c = (pack.evidence.get("curves") or {}).get("residuals")
    if not c:
        return []
    target = ((pack.spec.get("data") or {}).get("target")) or "target"
    scatter = line_chart("residuals", "Residuals against prediction (holdout)",
                         [Series("row", c["predicted"], c["residual"], line=False)],
                         _labelled(padded(c["predicted"]), f"predicted {target}"),
                         _labelled(padded(c["residual"], 0.0, 0.0), "residual"), refs=[(0.0, "0")],
                         caption=f"A seeded sample of {c.get('sampled', len(c['predicted'])):,} of "
                                 f"{pack.evidence.get('curves', {}).get('rows', 0):,} holdout rows; residual = "
                                 f"true {target} − predicted.")
    hist = c.get("histogram") or {}
    out = [scatter]
    if hist.get("counts"):
        out.append(histogram("residual-histogram", "Distribution of residuals (every holdout row)", hist["edges"],
                             hist["counts"], f"true {target} − predicted", refs=[(0.0, "0")],
                             caption=f"Mean absolute residual {fmt(c.get('mean_absolute'))}."))
    return out


def ndcg(pack: Any) -> list[str]:
    c = (pack.evidence.get("curves") or {}).get("ndcg")
    if not c or not (c.get("histogram") or {}).get("counts"):
        return []
    h = c["histogram"]
    return [histogram("ndcg", f"NDCG@{c.get('k', 10)} per query (holdout)", h["edges"], h["counts"],
                      f"NDCG@{c.get('k', 10)}", refs=[(c["mean"], f"mean {fmt(c['mean'])}")] if c.get("mean") is not None
                      else (), caption=f"{c.get('queries', 0):,} holdout queries with a relevant item.")]


def fairness(pack: Any) -> list[str]:
    out = []
    for key, info in (pack.evidence.get("fairness") or {}).items():
        groups = (info or {}).get("by_group") if isinstance(info, dict) else None
        if not isinstance(groups, dict) or not groups:
            continue
        judged = {g: v for g, v in groups.items() if isinstance(v, dict)}
        rates = {g: float(v["selection_rate"]) for g, v in judged.items() if v.get("selection_rate") is not None}
        kind = "fairness-intersection" if "&" in key else "fairness"
        extra_caption = " Groups under the minimum size (grey, marked small) are left out of the ratio." \
            if any(v.get("small") for v in judged.values()) else ""
        if rates:
            judged_rates = [r for g, r in rates.items() if not judged[g].get("small")]
            top = max(judged_rates or rates.values())  # small groups are left out of the ratio
            threshold = _rule_threshold(pack, f"fairness.{key}.selection_rate_ratio") or (0.8, "four-fifths rule")
            line = top * threshold[0]
            rows = [(f"{g} (n={v.get('count', 0):,}{', small' if v.get('small') else ''})",
                     [Bar("selection rate", v.get("selection_rate"),
                          cls="s1" if v.get("small") else "s5" if (v.get("selection_rate") or 0) < line else "s0")])
                    for g, v in judged.items()]
            out.append(bar_chart(kind, f"Selection rate by {key}", rows,
                                 axis=Axis(0, max([*rates.values(), 0.05]) * 1.15),
                                 bands=[(0, line, f"below {fmt(threshold[0])} × the highest rate ({threshold[1]})", "band")],
                                 refs=[(line, f"{fmt(threshold[0])} × highest = {fmt(line)}", "ref")],
                                 caption=f"Shaded: below the four-fifths band — {fmt(threshold[0])} × the highest "
                                         f"group's rate, the policy's threshold ({threshold[1]}). Ratio recorded: "
                                         f"{fmt(info.get('selection_rate_ratio'))}." + extra_caption))
        errors = [(g, v) for g, v in judged.items() if v.get("false_positive_rate") is not None
                  or v.get("false_negative_rate") is not None]
        if errors:
            eo = _rule_threshold(pack, f"fairness.{key}.equalized_odds_difference")
            refs: list[tuple[float, str, str]] = []
            fprs = [float(v["false_positive_rate"]) for _, v in errors if v.get("false_positive_rate") is not None]
            fnrs = [float(v["false_negative_rate"]) for _, v in errors if v.get("false_negative_rate") is not None]
            if eo is not None and fprs:
                refs.append((min(fprs) + eo[0], f"lowest FPR + {fmt(eo[0])}", "ref"))
            if eo is not None and fnrs:
                refs.append((min(fnrs) + eo[0], f"lowest FNR + {fmt(eo[0])}", "ref2"))
            rows = [(g, [Bar("false positive rate", v.get("false_positive_rate"), cls="s2"),
                         Bar("false negative rate", v.get("false_negative_rate"), cls="s4")]) for g, v in errors]
            cap = f"Equalized-odds difference recorded: {fmt(info.get('equalized_odds_difference'))}"
            cap += f"; the policy allows {fmt(eo[0])} ({eo[1]}), drawn from the lowest group's rate." if eo else "."
            out.append(bar_chart(f"{kind}-errors", f"Error rates by {key}", rows,
                                 keys=[("false positive rate", "s2"), ("false negative rate", "s4")], refs=refs,
                                 caption=cap))
    return out


def domain(pack: Any) -> list[str]:
    d = pack.evidence.get("domain") or {}
    source = (d.get("source") or {}).get("metrics") or {}
    target = (d.get("target") or {}).get("metrics") or {}
    base = ((d.get("target") or {}).get("baseline") or {}).get("metrics") or {}
    names = [n for n in target if n in UNIT_SCALE]
    if not names:
        return []
    rows = [(n, [Bar("source holdout", source.get(n), cls="s0"), Bar("target domain", target.get(n), cls="s2"),
                 Bar("baseline on target", base.get(n), cls="s1")]) for n in names]
    return [bar_chart("domain", "Metrics per domain", rows,
                      keys=[("source holdout", "s0"), ("target domain", "s2"), ("baseline on target", "s1")],
                      caption=f"Target: {(d.get('target') or {}).get('source', '')}; adversarial AUC "
                              f"{fmt(d.get('adversarial_auc'))} (0.5: the domains look alike).")]


def monitor_point(record: Any, default_metric: Any = None) -> dict[str, Any]:
    """What one ``monitor`` record measured (its evidence) and the thresholds its verdict applied."""
    p = record.payload or {}
    ev = p.get("evidence") or {}
    rules = (p.get("verdict") or {}).get("rules", []) or []
    metric = ev.get("metric") or default_metric
    current = ((ev.get("metrics") or {}).get("current") or {}).get(metric) if metric else None
    fair = {k: v.get("selection_rate_ratio") for k, v in (ev.get("fairness") or {}).items()
            if isinstance(v, dict) and v.get("selection_rate_ratio") is not None}
    threshold = next((x.get("threshold") for x in rules if x.get("path") == "drift.share_drifted"
                      and isinstance(x.get("threshold"), (int, float))), None)
    reasons = [str(x.get("reason", "")) for x in rules if x.get("outcome") in ("block", "error", "warn")]
    return {"seq": record.seq, "time": str(record.time)[:10], "status": p.get("status"),
            "share": (ev.get("drift") or {}).get("share_drifted"), "threshold": threshold, "metric": metric,
            "current": current, "fairness": fair, "reasons": reasons,
            "source": ((ev.get("data") or {}).get("current") or {}).get("source")}


def monitoring(pack: Any) -> list[str]:
    rows = [monitor_point(r, pack.evidence.get("metric")) for r in pack.monitors]
    if not rows:
        return []
    labels = [f"#{r['seq']}" for r in rows]
    xs = list(range(len(rows)))
    tips = [f"record {r['seq']} ({r['time']}, {r['status']}): {fmt(r['share'])}" for r in rows]
    threshold = next((r["threshold"] for r in reversed(rows) if r["threshold"] is not None), None)
    out = [time_chart("monitoring-drift", "Monitoring: share of drifted features per batch",
                      [Series("share drifted", xs, [r["share"] for r in rows], labels=tips)],
                      padded([r["share"] for r in rows] + ([threshold] if threshold is not None else []), 0.0),
                      labels, refs=[(float(threshold), f"policy {fmt(threshold)}")] if threshold is not None else (),
                      caption="Each point is a monitor record (seq); above the line the batch was beyond policy.")]
    if any(r["current"] is not None for r in rows):
        metric = rows[-1]["metric"]
        test = ((pack.evidence.get("metrics") or {}).get("test") or {}).get(metric)
        out.append(time_chart("monitoring-metric", f"Monitoring: {metric} on labelled batches",
                              [Series(str(metric), xs, [r["current"] for r in rows], cls="s4")],
                              padded([r["current"] for r in rows] + ([test] if test is not None else [])), labels,
                              refs=[(float(test), f"holdout {fmt(test)}")] if test is not None else ()))
    features = sorted({k for r in rows for k in r["fairness"]})
    if features:
        series = [Series(f, xs, [r["fairness"].get(f) for r in rows], cls=f"s{i % 5}") for i, f in enumerate(features)]
        out.append(time_chart("monitoring-fairness", "Monitoring: selection-rate ratio per batch", series,
                              Axis(0, 1.05), labels, refs=[(0.8, "four-fifths 0.8")]))
    return out


FIGURES: tuple[Chart, ...] = (metrics_vs_baseline, gap, roc, pr, calibration, confusion, residuals, ndcg, fairness,
                              domain, monitoring)


def charts(pack: Any) -> list[str]:
    """Every figure the run's evidence and monitor records can show, in reading order."""
    out: list[str] = []
    for figure in FIGURES:
        out += figure(pack)
    return out
