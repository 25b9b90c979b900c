"""Selection leakage (``evaluate``): how often this holdout has been looked at, and seed shopping.

What inflates a reported holdout score most is selection: evaluating on the same test rows
again and again and keeping the best run. No check on one run can see that; the ledger can.
For each run this plugin counts the earlier runs in the ledger whose holdout had the same
content fingerprint (``split.test.fingerprint``) and that went on to record evidence, and
records:

- ``selection.holdout`` — ``evaluations`` (K: the earlier evaluations plus this one),
  ``earlier`` (each earlier run's id, project, spec hash and the seq of its ``split``
  record), ``configurations`` (distinct spec hashes among the K runs), ``fingerprint``;
- ``selection.holdout.metric`` — the primary metric on the holdout with a percentile
  bootstrap interval at 95 % (``ci``) and one Bonferroni-adjusted for the K evaluations
  (``ci_adjusted``: level ``1 − 0.05 / K``), from ``evaluate.bootstrap`` resamples seeded
  with ``split.seed``; and ``improvement`` over the baseline (model − baseline on the same
  resamples, sign-flipped for losses so that positive is better) with the same two intervals.
  ``assay:strict``'s ``beats-baseline-adjusted`` asks ``improvement.lower_adjusted > 0``;
- ``selection.siblings`` — the earlier runs on the same data (``data.fingerprint``) whose spec
  differs from this one's only in ``split.seed`` or ``train.budget``: each with its holdout
  metric; this run's ``rank`` among them (1 = best) ``of`` all; the siblings' ``mean`` and, with
  two or more, ``sd`` and ``z`` (how many of their standard deviations this run's metric lies
  above theirs; a kept lucky seed shows as a large ``z``);
- with ``split.holdout = "reusable"``, ``selection.holdout.reusable`` — the primary metric answered
  through Thresholdout (Dwork et al. 2015): the training value unless it differs from the holdout's
  by more than ``split.holdout_threshold`` plus Laplace noise, then the holdout value plus noise,
  spending one unit of the holdout's budget (``split.holdout_budget``, fixed by its first reusable
  evaluation); the budget already spent is read from the earlier evaluations' signed evidence
  (:func:`assay.kit.reusable_budget`), and check ``checks.selection.holdout_budget`` fails once it is
  spent (docs/leakage.md: what this guarantees and what it does not);
- check ``checks.selection.holdout_reuse`` — ``pass`` on a holdout's first evaluation,
  ``warn`` after that, with a message naming the earlier runs. Whether reuse blocks is the
  policy's decision (``assay:standard`` warns from 5 evaluations, ``assay:strict`` blocks at 10).

Resampling scheme (so the bound can be recomputed independently): ``numpy.random
.default_rng(split.seed)``, ``integers(0, n, size=(B, n))`` row indices (drawn in chunks of at most
2,000,000 cells, the same stream), the metric on each resample (resamples where it is undefined are
dropped; ROC AUC, accuracy, F1, losses and R² from weighted sums, the rest per resample),
``numpy.quantile`` at ``α/2`` and ``1 − α/2``.

The earlier runs are read from the ledger's ``split``, ``run_started``, ``data``, ``metrics`` and
``evidence`` records that precede this run's own ``split`` record (so the answer is a function of
the ledger's prefix, the same at run time and later). Every deciding command recomputes it from the
verified ledger (``assay.storage.signed.SignedLedger.evidence``) and refuses the run when the signed
evidence says otherwise: a record hidden or altered while the run read it cannot lower the count
that reaches a gate or a deployment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Status, hookimpl

if TYPE_CHECKING:
    import numpy as np

    from assay import Run, Scores

GROUP = "selection"
ALPHA = 0.05
SHOWN = 5  # earlier runs named in the check's message (all are in the evidence)


def ledger_history(settings: Any, run_id: str) -> dict[str, Any]:
    """:func:`assay.kit.selection_history` over the ledger's records of the kinds it reads."""
    from assay.audit.ledger import Ledger
    from assay.kit import SELECTION_KINDS, selection_history

    ledger = Ledger.open(settings)
    try:
        records = [r for kind in SELECTION_KINDS for r in ledger.records(kind=kind)]
    finally:
        ledger.close()
    return selection_history(records, run_id)


def bootstrap_interval(values: np.ndarray, level: float) -> list[float] | None:
    """Percentile interval of the finite replicates; None when under 90 % of them are defined."""
    from assay.kit import interval

    return interval(values, level)


def _bounds(point: float | None, values: np.ndarray, k: int, greater_is_better: bool) -> dict[str, Any]:
    ci, adjusted = bootstrap_interval(values, 1 - ALPHA), bootstrap_interval(values, 1 - ALPHA / k)
    end = "lower_adjusted" if greater_is_better else "upper_adjusted"
    return {"value": point, "ci": ci, "ci_adjusted": adjusted, end: adjusted[0 if greater_is_better else 1]
            if adjusted else None}


def metric_bounds(run: Run, scores: Scores, k: int) -> dict[str, Any]:
    """The primary metric on the holdout, and its improvement over the baseline (paired, on the same
    resamples; positive = better, for losses too), each with its 95 % and its K-adjusted interval."""
    import numpy as np

    from assay.kit import metric, positive_first, prediction_replicates

    name = run.spec.metric
    m = metric(name)
    if m.needs == "query":
        return {"name": name, "reason": "per-query metrics are resampled by query, which this bound does not do"}
    resamples = run.spec.evaluate.bootstrap

    positive = run.spec.data.positive_label
    paired = scores.baseline_test.pred is not None and len(scores.baseline_test.y) == len(scores.test.y)
    label = f"bootstrap of {name} on {len(scores.test.y):,} holdout rows"
    run.progress("evaluate", 0, resamples, label)
    replicates = prediction_replicates([scores.test, scores.baseline_test] if paired else [scores.test], name,
                                       resamples, run.seed, positive,
                                       lambda done, total: run.progress("evaluate", done, total, label))

    def point_of(p: Any) -> float:
        classes, proba = positive_first(np.asarray(p.classes), p.proba, positive)
        return float(m.fn(p.y, proba if m.needs == "proba" else p.pred, classes))

    model, point = replicates[0], point_of(scores.test)
    out: dict[str, Any] = {"name": name, **_bounds(point, model, k, m.greater_is_better),
                           "level_adjusted": 1 - ALPHA / k, "resamples": resamples, "seed": run.seed,
                           "method": "percentile bootstrap; Bonferroni over the K evaluations of this holdout"}
    if paired:
        base, base_point = replicates[1], point_of(scores.baseline_test)
        sign = 1.0 if m.greater_is_better else -1.0
        out["improvement"] = {"over": scores.baseline.name,
                              **_bounds(sign * (point - base_point), sign * (model - base), k, True)}
    return out


def _message(k: int, earlier: list[dict[str, Any]], configurations: int) -> str:
    if k == 1:
        return "first evaluation on this holdout"
    named = ", ".join(f"{e['run_id']} (seq {e['seq']})" for e in earlier[-SHOWN:])
    more = f" and {len(earlier) - SHOWN} earlier" if len(earlier) > SHOWN else ""
    return (f"this holdout has now been evaluated {k} times ({configurations} distinct "
            f"configuration{'s' if configurations != 1 else ''}): latest before this run {named}{more}")


def thresholdout(train: float, holdout: float, threshold: float, sigma: float, remaining: int, seed: int,
                 threshold_seed: int) -> dict[str, Any]:
    """One Thresholdout query (Dwork et al. 2015): the training value unless it differs from the
    holdout's by more than the noisy threshold, then the holdout value plus Laplace noise, spending
    one unit of budget; no answer once the budget is spent.

    Noise: ``γ ~ Lap(2σ)`` from ``default_rng([threshold_seed, 1])`` (fixed until the next
    detection), ``η ~ Lap(4σ)`` from ``default_rng([seed, 2])``, ``ξ ~ Lap(σ)`` from
    ``default_rng([seed, 3])``.
    """
    import numpy as np

    if remaining < 1:
        return {"answer": None, "detected": False, "noise": {}}
    gamma = float(np.random.default_rng([threshold_seed, 1]).laplace(0.0, 2 * sigma))
    eta = float(np.random.default_rng([seed, 2]).laplace(0.0, 4 * sigma))
    noise: dict[str, float] = {"threshold": gamma, "comparison": eta}
    if abs(holdout - train) > threshold + gamma + eta:
        noise["answer"] = float(np.random.default_rng([seed, 3]).laplace(0.0, sigma))
        return {"answer": holdout + noise["answer"], "detected": True, "noise": noise}
    return {"answer": train, "detected": False, "noise": noise}


def _train_value(run: Run, scores: Scores) -> float:
    import numpy as np

    from assay.kit import metric, positive_first

    m = metric(run.spec.metric)
    if m.needs == "query":
        raise ValueError("per-query metrics are not answered through the reusable holdout")
    classes, proba = positive_first(np.asarray(scores.train.classes), scores.train.proba, run.spec.data.positive_label)
    return float(m.fn(scores.train.y, proba if m.needs == "proba" else scores.train.pred, classes))


def reusable_holdout(run: Run, scores: Scores, history: dict[str, Any], raw: float | None) -> tuple[dict[str, Any], Check]:
    """``selection.holdout.reusable`` and the budget check, for ``split.holdout = "reusable"``."""
    from assay.kit import reusable_budget

    split = run.spec.split
    state = reusable_budget(history)
    remaining = state["budget"] - state["spent_before"]
    out: dict[str, Any] = {"metric": run.spec.metric, **state, "threshold": split.holdout_threshold,
                           "sigma": split.holdout_sigma, "raw_withheld": False,
                           "method": "Thresholdout (Dwork et al. 2015): the training value unless it differs from "
                                     "the holdout's by more than threshold + Laplace noise"}
    try:
        train = _train_value(run, scores)
    except (ValueError, AttributeError, TypeError) as exc:
        train = None
        out["reason"] = f"{type(exc).__name__}: {exc}"
    if train is None or raw is None:
        from assay.kit import metric

        out.update(train=train, answer=None, detected=False, spent=state["spent_before"], remaining=remaining)
        out.setdefault("reason", "the holdout metric could not be computed")
        status: Status = "skip" if metric(run.spec.metric).needs == "query" else "error"
        return out, Check(GROUP, "holdout_budget", status, remaining, {"reason": out["reason"]},
                          f"no reusable-holdout answer: {out['reason']}")
    result = thresholdout(train, raw, split.holdout_threshold, split.holdout_sigma, remaining, state["seed"],
                          state["threshold_seed"])
    spent = state["spent_before"] + int(result["detected"])
    out.update(train=train, **result, spent=spent, remaining=state["budget"] - spent)
    detail: dict[str, Any] = {"budget": state["budget"], "spent": spent, "earlier": state["reusable_earlier"]}
    if state["asked"] != state["budget"]:
        detail["asked"] = state["asked"]
    if remaining < 1:
        detail["fix"] = "draw a fresh holdout (a new data snapshot or split.seed) and evaluate on it once"
        return out, Check(GROUP, "holdout_budget", "fail", 0, detail,
                          f"the reusable holdout's budget of {state['budget']} overfitting detections is spent "
                          f"(by {len(state['reusable_earlier'])} earlier reusable evaluations): no answer is given")
    if result["detected"]:
        left = out["remaining"]
        status = "warn" if left == 0 else "pass"
        message = (f"{run.spec.metric}: training {train:.4f} and holdout differ by more than the noisy threshold: "
                   f"answered with the noisy holdout value {result['answer']:.4f}, one unit of budget spent "
                   f"({left} of {state['budget']} left)")
        return out, Check(GROUP, "holdout_budget", status, left, detail, message)
    return out, Check(GROUP, "holdout_budget", "pass", remaining, detail,
                      f"{run.spec.metric}: training {train:.4f} agrees with the holdout within the noisy threshold: "
                      f"answered with the training value; no budget spent ({remaining} of {state['budget']} left)")


@hookimpl
def evaluate(run: Run, scores: Scores) -> list[Check | Evidence]:
    history = ledger_history(run.settings, run.run_id)
    earlier = history["earlier"]
    k = len(earlier) + 1
    configurations = len({e["spec_hash"] for e in earlier} | {history["spec_hash"]})
    holdout: dict[str, Any] = {"fingerprint": history["fingerprint"], "evaluations": k,
                               "configurations": configurations, "earlier": earlier}
    try:
        holdout["metric"] = metric_bounds(run, scores, k)
    except (ValueError, AttributeError, TypeError) as exc:  # e.g. a metric undefined on this holdout
        holdout["metric"] = {"name": run.spec.metric, "reason": f"{type(exc).__name__}: {exc}"}
    from assay.kit import metric, sibling_summary

    siblings = sibling_summary(history["spec"], history["siblings"], run.spec.metric, holdout["metric"].get("value"),
                               metric(run.spec.metric).greater_is_better)
    fix = ("evaluate candidates by cross-validation and look at the holdout once; or draw a fresh holdout "
           "(a new data snapshot) before the next comparison") if k > 1 else ""
    detail: dict[str, Any] = {"earlier": [e["run_id"] for e in earlier], "configurations": configurations}
    if fix:
        detail["fix"] = fix
    check = Check(GROUP, "holdout_reuse", "pass" if k == 1 else "warn", k, detail, _message(k, earlier, configurations))
    out: list[Check | Evidence] = [check]
    if run.spec.split.holdout == "reusable":
        holdout["reusable"], budget = reusable_holdout(run, scores, history, holdout["metric"].get("value"))
        out.append(budget)
    return [Evidence(GROUP, {"holdout": holdout, "siblings": siblings}), *out]
