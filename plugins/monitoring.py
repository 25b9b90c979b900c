"""Monitoring (``evaluate`` + ``monitor``): the training-time reference and drift checks with evidently.

At training time (``evaluate``) the plugin stores what monitoring will need later, so a
batch can be checked with nothing but the run id:

* a stratified sample of the *training part* (features, sensitive columns and target;
  ``monitor.reference_rows`` rows) — the distribution the model learned from, used for
  data drift;
* a stratified sample of the *holdout* and the model's outputs on it — the reference for
  prediction drift: scoring the rows the model was fit on would give in-sample
  (over-confident) predictions, so a batch from the very same period would look drifted;
* the column roles and the categories seen in the whole training part (a sample misses
  rare categories, which would then be reported as "new").

Both samples are Parquet files in the content-addressed artifact store
(:func:`assay.kit.put_artifact`); the plugin never reads them back itself: at monitoring time
the runner hands it the loaded model, reference, holdout sample and stored holdout predictions
in the :class:`~assay.MonitorContext`.

At monitoring time (``monitor``) evidently 0.7 compares the batch with the reference:
``DataDriftPreset`` over the model's features (evidently picks the test by column type
and sample size), ``ValueDrift`` on sensitive columns and — for a labelled batch — the
target, and ``ValueDrift`` on the model's predictions (reference: the holdout sample; a batch
without labels or sensitive columns is scored on a uniform sample of ``monitor.score_rows`` rows).
A labelled batch also gets the task's metrics with a bootstrap interval for the primary
metric, and fairness per sensitive feature (fairlearn ``MetricFrame``).

evidently takes seconds to import, so it is imported inside :func:`monitor` only: ``assay
run`` and ``assay --help`` never load it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, FittedModel, Run, Splits, Status, hookimpl
from assay.kit import (
    category_text,
    drift_options,
    fingerprint_frame,
    frame_from_parquet,  # noqa: F401  (the stored samples' reader, beside their writer)
    frame_to_parquet,
    put_artifact,
    steps,
    threshold_number,
    to_jsonable,
    value_drift_threshold,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay import MonitorContext, Predictions, Scores

FEATURE_ROLES = ("numeric", "categorical", "text", "datetime")
KEPT_ROLES = (*FEATURE_ROLES, "sensitive", "target")
DRIFT_ROLES = ("numeric", "categorical", "text")  # datetime features always "drift": time moves on
MAX_CATEGORIES = 1000  # above this a column's category set is not recorded (no new-category check)
PREDICTION = "prediction"


# --------------------------------------------------------------------------- storing the reference


def stratified_sample(frame: pd.DataFrame, target: str, task: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows of ``frame`` (all of it if smaller), stratified by the target.

    Classification strata are the classes; regression strata are target deciles. Rare
    strata that cannot be split fall back to a plain random sample.
    """
    return frame.iloc[sample_positions(frame, target, task, n, seed)]


def sample_positions(frame: pd.DataFrame, target: str, task: str, n: int, seed: int) -> np.ndarray:
    """The positions in ``frame`` of :func:`stratified_sample`'s rows, in the frame's index order.

    Only positions are split, so a large frame is not copied; the classes are ranked by their
    text, as when the strata were the labels as text.
    """
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    if n >= len(frame):
        return np.arange(len(frame))
    y = frame[target] if target in frame.columns else None
    strata: Any = None
    if y is not None and y.notna().all():
        if task == "regression" and pd.api.types.is_numeric_dtype(y.dtype):
            strata = pd.qcut(y.rank(method="first"), q=min(10, n), labels=False, duplicates="drop").to_numpy()
        else:
            codes, uniques = pd.factorize(y)
            rank = np.empty(len(uniques), dtype=np.int64)
            rank[np.argsort(np.array([str(u) for u in uniques]), kind="stable")] = np.arange(len(uniques))
            strata = rank[codes]
        counts = np.bincount(pd.factorize(strata)[0])
        # scikit-learn needs two rows per stratum and room for every stratum on both sides
        if counts.min() < 2 or len(counts) > min(n, len(frame) - n):
            strata = None
    positions, _ = train_test_split(np.arange(len(frame)), train_size=n, random_state=seed, stratify=strata)
    return positions[np.argsort(frame.index[positions], kind="stable")]


def category_sets(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[str] | None]:
    """Every category seen per column, as text (``None`` when there are more than MAX_CATEGORIES)."""
    out: dict[str, list[str] | None] = {}
    for col in columns:
        values = frame[col].dropna().unique()
        out[col] = sorted({category_text(v) for v in values}) if len(values) <= MAX_CATEGORIES else None
    return out


@hookimpl
def evaluate(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    """Store the reference and holdout samples and the column roles for later monitoring.

    A failure becomes an ``error`` check (``checks.monitoring.reference``), which blocks the
    gate: a model that cannot be monitored later is not deployable.
    """
    from assay.kit import guarded

    return guarded("monitoring", "reference", lambda: store_reference(run, model, splits, scores))


def store_reference(run: Run, model: FittedModel, splits: Splits, scores: Scores) -> list[Check | Evidence]:
    import numpy as np

    dataset = splits.dataset
    kept = [c for c in dataset.frame.columns if dataset.roles.get(c) in KEPT_ROLES]
    n = run.spec.monitor.reference_rows
    train = splits.part("train")[kept]
    reference = stratified_sample(train, dataset.target, dataset.task, n, run.seed)
    test = splits.part("test")[kept]
    at = sample_positions(test, dataset.target, dataset.task, n, run.seed)
    holdout = test.iloc[at]
    roles = {c: dataset.roles[c] for c in kept}
    features = [c for c in kept if roles[c] in FEATURE_ROLES]
    categorical = [c for c in kept if roles[c] in ("categorical", "sensitive")]
    if dataset.task in ("binary", "multiclass", "text"):
        categorical.append(dataset.target)
    return [Evidence("monitoring", {
        "reference": {
            "artifact": put_artifact(run, frame_to_parquet(reference)),
            "rows": len(reference),
            "fingerprint": fingerprint_frame(reference),
            "part": "train",
            "roles": roles,
            "features": features,
            "sensitive": [c for c in kept if roles[c] == "sensitive"],
            "target": dataset.target,
            "dtypes": {c: str(dataset.frame[c].dtype) for c in kept},
            "categories": category_sets(train, categorical),
        },
        "holdout": {
            "artifact": put_artifact(run, frame_to_parquet(holdout)),
            "rows": len(holdout),
            "part": "test",
            "predictions": holdout_predictions(run, model, holdout, features, dataset.task,
                                               scores.test if np.array_equal(scores.test.rows, splits.test) else None,
                                               at),
        },
    })]


def holdout_predictions(run: Run, model: FittedModel, holdout: pd.DataFrame, features: list[str], task: str,
                        scored: Predictions | None = None, at: np.ndarray | None = None) -> dict[str, Any]:
    """The model's drift-tested output on the holdout sample, stored so monitoring need not re-score it.

    Taken from the runner's holdout predictions ``scored`` at positions ``at`` when given (the
    same model on the same rows), else predicted here.
    """
    import pandas as pd

    if scored is not None and at is not None:
        pred, proba = scored.pred[at], None if scored.proba is None else scored.proba[at]
        kind = output_kind(task, proba)
    else:
        pred, proba, kind = predict(model.estimator, holdout[features], task)
    frame = pd.DataFrame({PREDICTION: drift_values(pred, proba, kind)})
    return {"artifact": put_artifact(run, frame_to_parquet(frame)), "kind": kind}


# --------------------------------------------------------------------------- predictions


def predict(estimator: Any, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The model's labels, probabilities and the value to test for drift with its kind.

    Binary classifiers drift-test the positive-class probability (numeric); other
    classifiers the predicted label (categorical); regressors and rankers the score.
    Returns ``(pred, proba, kind)``.
    """
    import numpy as np

    proba = None
    classes = getattr(estimator, "classes_", None)
    if classes is not None and hasattr(estimator, "predict_proba"):
        proba = np.asarray(estimator.predict_proba(X))
        pred = np.asarray(classes)[proba.argmax(axis=1)]  # what predict() returns, without scoring twice
    else:
        pred = np.asarray(estimator.predict(X))
    return pred, proba, output_kind(task, proba)


def output_kind(task: str, proba: np.ndarray | None) -> str:
    """``numeric`` for scores and a binary classifier's probability, else ``categorical`` (the label)."""
    return "numeric" if task in ("regression", "ranking") or (proba is not None and proba.shape[1] == 2) \
        else "categorical"


def scoring_rows(run: Run, current: pd.DataFrame, every_row: bool) -> np.ndarray | None:
    """The batch rows the model scores: all (None), or a seeded uniform sample for prediction drift alone.

    Drift compares two distributions, and ``monitor.score_rows`` rows (20,000 by default) tell the
    batch's apart from a reference of a few thousand as well as millions do: evidently measures a
    distance there (Wasserstein, Jensen-Shannon), and where it tests p-values (references up to
    1,000 rows) their power is bounded by the reference, n_ref·n/(n_ref + n) < n_ref. Scoring is
    then a fixed cost rather than one that grows with the batch. Performance (labels) and fairness
    (sensitive columns) need every row's prediction, so such batches are scored in full.
    """
    import numpy as np

    limit = run.spec.monitor.score_rows
    if every_row or len(current) <= limit:
        return None
    return np.sort(np.random.default_rng([run.seed, 11]).choice(len(current), limit, replace=False))


def drift_values(pred: np.ndarray, proba: np.ndarray | None, kind: str) -> np.ndarray:
    import numpy as np

    if kind == "numeric" and proba is not None and proba.ndim == 2 and proba.shape[1] == 2:
        return proba[:, 1]
    return pred.astype(str) if kind == "categorical" else np.asarray(pred, dtype=float)


# --------------------------------------------------------------------------- drift with evidently


def _definition(roles: Mapping[str, str]) -> Any:
    from evidently import DataDefinition

    def pick(*wanted: str) -> list[str]:
        return [c for c, r in roles.items() if r in wanted]

    return DataDefinition(numerical_columns=pick("numeric"), categorical_columns=pick("categorical"),
                          text_columns=pick("text"))


def _status(value: Any) -> str:
    return str(getattr(value, "value", value)).upper().rsplit(".", 1)[-1]


def parse_snapshot(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column: evidently's method, score, threshold and whether drift was detected."""
    drifted: dict[str, bool] = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and "column" in params:
            drifted[params["column"]] = _status(test.get("status")) == "FAIL"
    out: dict[str, dict[str, Any]] = {}
    for item in snapshot.get("metrics", []):
        config = item.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column, method, threshold = config["column"], config.get("method"), config.get("threshold")
        score = item.get("value")
        score = float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None
        p_value = "p_value" in str(method)
        if column in drifted:
            flag: bool | None = drifted[column]
        elif score is None or threshold is None:
            flag = None
        else:
            flag = score < threshold if p_value else score >= threshold
        out[column] = {"method": method, "score": score, "threshold": threshold,
                       "statistic": "p_value" if p_value else "distance", "drifted": flag}
    return out


def run_report(metrics: list[Any], reference: pd.DataFrame, current: pd.DataFrame,
               roles: Mapping[str, str]) -> Any:
    """Run an evidently Report (with its per-column tests) and return the snapshot."""
    from evidently import Dataset, Report

    definition = _definition(roles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Report(metrics, include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )


def drift_types(reference: pd.DataFrame, roles: Mapping[str, str], task: str, target: str) -> dict[str, str]:
    """The drift-test type of every stored column: features keep their role; sensitive
    columns and the target are categorical unless numeric with many distinct values."""
    import pandas as pd

    types = {}
    for col, role in roles.items():
        if role in FEATURE_ROLES:
            types[col] = role
            continue
        s = reference[col]
        many = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype) and s.nunique() > 10
        if col == target:
            many = task in ("regression", "ranking") and many
        types[col] = "numeric" if many else "categorical"
    return types


def data_drift(reference: pd.DataFrame, current: pd.DataFrame, types: Mapping[str, str],
               features: Sequence[str], extra: Mapping[str, str], policy: Any = None) -> tuple[dict[str, Any], Any]:
    """Drift of the features (DataDriftPreset) and of ``extra`` columns (``{column: "sensitive"|"target"}``).

    ``policy`` (the one judging the batch) sets evidently's drift-share and per-column test
    thresholds (:func:`assay.kit.drift_options`). Returns the ``drift``
    evidence and evidently's snapshot (for the HTML report), or ``None`` for the snapshot
    when no column could be tested.
    """
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    wanted = [*features, *extra]
    ref_missing = reference[[c for c in wanted if c in reference.columns]].isna().mean()
    cur_missing = current[[c for c in wanted if c in current.columns]].isna().mean()
    skipped: dict[str, str] = {}
    for col in wanted:
        if types[col] not in DRIFT_ROLES:
            skipped[col] = f"{types[col]} columns are not drift-tested"
        elif col not in current.columns:
            skipped[col] = "not in the current batch"
        elif cur_missing[col] == 1.0:
            skipped[col] = "no values in the current batch"
        elif ref_missing.get(col, 1.0) == 1.0:
            skipped[col] = "no values in the reference sample"
    tested = [c for c in features if c not in skipped]
    others = [c for c in extra if c not in skipped]
    # the policy's thresholds, so evidently's report and assay's verdict judge alike (assay.kernel.drift_rules)
    metrics: list[Any] = ([DataDriftPreset(columns=tested, **drift_options(policy, tested))] if tested else []) + [
        ValueDrift(column=c, threshold=value_drift_threshold(policy, c)) for c in others]
    columns = tested + others
    results: dict[str, dict[str, Any]] = {}
    snapshot = None
    summary: dict[str, Any] | None = None
    if metrics:
        snapshot = run_report(metrics, reference[columns], current[columns], {c: types[c] for c in columns})
        document = snapshot.dict()
        results = parse_snapshot(document)
        summary = evidently_summary(document)

    def entry(col: str) -> dict[str, Any]:
        found = results.get(col)
        if found is None:
            reason = skipped.get(col, "evidently returned no result")
            # a column that lost all its values has certainly changed distribution
            gone = reason == "no values in the current batch"
            found = {"method": None, "score": None, "threshold": None, "statistic": None,
                     "drifted": True if gone else None, "detail": reason}
        missing = {"reference": _share(ref_missing.get(col)), "current": _share(cur_missing.get(col))}
        return {"type": types[col], **found, "missing": missing}

    per_feature = {c: entry(c) for c in features}
    counted = {c: e for c, e in per_feature.items() if e["drifted"] is not None}
    n_drifted = sum(1 for e in counted.values() if e["drifted"])
    drift: dict[str, Any] = {
        "share_drifted": (n_drifted / len(counted)) if counted else None,
        "drifted": n_drifted,
        "tested": len(counted),
        "drifted_columns": sorted(c for c, e in counted.items() if e["drifted"]),
        "columns": per_feature,
    }
    if summary is not None:  # evidently's own dataset-drift conclusion, as its report states it
        drift["evidently"] = summary
    if not counted:
        drift["detail"] = "no feature could be drift-tested: " + "; ".join(f"{c}: {r}" for c, r in skipped.items())
    sensitive = {c: entry(c) for c, group in extra.items() if group == "sensitive"}
    if sensitive:
        drift["sensitive"] = sensitive
    for col, group in extra.items():
        if group == "target":
            drift["target"] = {"column": col, **entry(col)}
    return drift, snapshot


def evidently_summary(snapshot: Mapping[str, Any]) -> dict[str, Any] | None:
    """evidently's dataset-drift result from a snapshot's dict: its threshold, share, count and conclusion."""
    config: Mapping[str, Any] | None = None
    value: Any = None
    for item in snapshot.get("metrics", []):
        if str(item.get("config", {}).get("type", "")).endswith("DriftedColumnsCount"):
            config, value = item["config"], item.get("value")
    if config is None:
        return None
    share = threshold_number(value.get("share")) if isinstance(value, Mapping) else None
    count = threshold_number(value.get("count")) if isinstance(value, Mapping) else None
    threshold = threshold_number(config.get("drift_share"))
    out: dict[str, Any] = {"drift_share": threshold, "share": share, "drifted": None if count is None else int(count),
                           "columns": len(config.get("columns") or []),
                           "per_column_threshold": dict(config.get("per_column_threshold") or {}),
                           "threshold": threshold_number(config.get("threshold"))}
    # evidently (legacy get_dataset_drift): the dataset drifted when share >= drift_share
    out["dataset_drift"] = None if share is None or threshold is None else share >= threshold
    return out


def _share(value: Any) -> float | None:
    return None if value is None else float(value)


def prediction_drift(reference: np.ndarray, current: np.ndarray, kind: str) -> dict[str, Any]:
    """evidently's ValueDrift on the model's outputs (holdout predictions as the reference)."""
    import pandas as pd
    from evidently.metrics import ValueDrift

    ref = pd.DataFrame({PREDICTION: reference})
    cur = pd.DataFrame({PREDICTION: current})
    snapshot = run_report([ValueDrift(column=PREDICTION)], ref, cur, {PREDICTION: kind})
    result = parse_snapshot(snapshot.dict()).get(PREDICTION)
    if result is None:
        return {"method": None, "score": None, "threshold": None, "drifted": None, "kind": kind,
                "detail": "evidently returned no result for the predictions"}
    out: dict[str, Any] = {**result, "kind": kind}
    if kind == "numeric":
        out["mean"] = {"reference": float(pd.Series(reference).mean()), "current": float(pd.Series(current).mean())}
    return out


# --------------------------------------------------------------------------- performance and fairness


def performance(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray, task: str,
                primary: str, n_boot: int, seed: int, run: Run | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task's metrics on the labelled batch, with a bootstrap interval for ``primary``.

    Returns ``(metrics, detail)``: ``metrics`` goes to ``metrics.current``. With a ``run`` the
    resamples are counted on its progress display (stage ``monitor``).
    """
    import numpy as np

    from assay.kit import known_metrics, metrics_for, score_predictions

    names = metrics_for(task, max(len(classes), len(np.unique(y))))
    if primary not in names and primary in known_metrics():
        names = (*names, primary)
    scores: dict[str, Any] = dict(score_predictions(y, pred, proba, classes, names))
    detail: dict[str, Any] = {"rows": len(y), "bootstrap": n_boot, "metric": primary}
    if primary not in scores:
        scores[primary] = None
        detail["detail"] = f"{primary} cannot be scored from predictions alone"
    if n_boot and scores.get(primary) is not None:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in steps(run, "monitor", range(n_boot), f"bootstrap of {primary} on {len(y):,} labelled rows"):
            idx = rng.integers(0, len(y), len(y))
            value = score_predictions(y[idx], pred[idx], None if proba is None else proba[idx], classes,
                                      (primary,)).get(primary)
            if value is not None:
                draws.append(value)
        if len(draws) >= 0.9 * n_boot:
            scores[f"{primary}_ci"] = [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))]
        else:
            scores[f"{primary}_ci"] = None
            detail["ci"] = f"only {len(draws)} of {n_boot} bootstrap resamples could be scored"
    elif scores.get(primary) is None:
        scores[f"{primary}_ci"] = None
        detail["ci"] = f"{primary} could not be computed on this batch"
    return scores, detail


def positive_class(run: Run, classes: np.ndarray) -> Any:
    """The class counted as "selected": ``data.positive_label``, else the second class (as at training)."""
    wanted = run.spec.data.positive_label
    return next((c for c in classes if str(c) == wanted), classes[1]) if wanted else classes[1]


def labelled_fairness(run: Run, frame: pd.DataFrame, task: str, y: np.ndarray, pred: np.ndarray,
                      proba: np.ndarray | None, classes: np.ndarray, metric_name: str) -> dict[str, Any]:
    """``fairness`` of a labelled batch, computed exactly as the training run's fairness plugin does.

    Same groups (each sensitive column and their intersections, numeric columns binned),
    same disparities with bootstrap intervals, same keys — so one rule such as
    ``fairness.*.selection_rate_ratio >= 0.8`` reads training and production alike.
    """
    import numpy as np

    from assay.kit import (
        classification_fairness,
        feature_sets,
        group_labels,
        regression_fairness,
    )

    min_size, resamples = run.spec.evaluate.min_group_size, run.spec.evaluate.bootstrap
    positive = positive_class(run, classes) if len(classes) == 2 else None
    out: dict[str, Any] = {}
    for i, cols in enumerate(feature_sets(list(frame.columns))):
        rng = np.random.default_rng([run.seed, 7, i])
        labels = group_labels(frame, cols)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if task == "ranking":
                continue  # exposure needs whole queries; a batch of rows is not one
            if task == "regression":
                ev = regression_fairness(np.asarray(y, dtype=float), np.asarray(pred, dtype=float), labels,
                                         metric_name, min_size, resamples, rng)
            else:
                ev = classification_fairness(y, pred, proba, classes, labels, positive, metric_name, min_size,
                                             resamples, rng)
        out["&".join(cols)] = {**ev, "features": list(cols), "labelled": True}
    return out


def selection_fairness(run: Run, frame: pd.DataFrame, pred: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Selection rates per group of an unlabelled batch (binary classifiers): demographic parity only.

    Equalized odds and per-group accuracy need labels; run with ``--labels`` for those.
    """
    import numpy as np
    from fairlearn.metrics import MetricFrame, count, selection_rate

    from assay.kit import feature_sets, group_labels

    if len(classes) != 2:
        return {}
    min_size = run.spec.evaluate.min_group_size
    positive = positive_class(run, classes)
    selected = (pred == positive).astype(int)
    out: dict[str, Any] = {}
    for cols in feature_sets(list(frame.columns)):
        labels = group_labels(frame, cols)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = MetricFrame(metrics={"count": count, "selection_rate": selection_rate}, y_true=selected,
                                y_pred=selected, sensitive_features=labels).by_group
        by_group = {str(g): {"count": int(row["count"]), "selection_rate": _num(row["selection_rate"]),
                             "small": int(row["count"]) < min_size} for g, row in table.iterrows()}
        small = [g for g, v in by_group.items() if v["small"]]
        rates = np.array([v["selection_rate"] for g, v in by_group.items() if not v["small"]], dtype=float)
        entry: dict[str, Any] = {"by_group": by_group, "small_groups": small, "min_group_size": min_size,
                                 "positive_label": str(positive), "rows": len(pred), "features": list(cols),
                                 "labelled": False}
        if len(rates) >= 2 and rates.max() > 0:
            entry["demographic_parity_difference"] = float(rates.max() - rates.min())
            entry["demographic_parity_ratio"] = entry["selection_rate_ratio"] = float(rates.min() / rates.max())
        else:
            entry["demographic_parity_difference"] = entry["demographic_parity_ratio"] = None
            entry["selection_rate_ratio"] = None
            entry["reason"] = (f"only {len(rates)} group(s) with at least {min_size} rows" if len(rates) < 2
                               else "no group was selected (every selection rate is 0)")
        out["&".join(cols)] = entry
    return out


def labels_like(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Batch labels in the dtype of the model's classes (a CSV with gaps reads 0/1 as floats)."""
    import numpy as np

    if not len(classes):
        return y
    if np.issubdtype(classes.dtype, np.number):
        try:
            values = y.astype(float)
        except (TypeError, ValueError):
            return y
        if np.issubdtype(classes.dtype, np.integer) and np.all(np.mod(values, 1) == 0):
            return values.astype(classes.dtype)
        return values
    return y.astype(str)


def _num(value: Any) -> Any:
    value = to_jsonable(value)
    return value if not isinstance(value, float) or math.isfinite(value) else None


# --------------------------------------------------------------------------- the hook


@hookimpl
def monitor(run: Run, reference: pd.DataFrame, current: pd.DataFrame, context: MonitorContext) -> list[Check | Evidence]:
    """Data drift, prediction drift and (labelled batches) performance and fairness, with evidently.

    ``context.training`` is the training run's evidence (reference roles, the metric); the
    runner loaded the model (``context.model``) and the holdout sample and predictions stored at
    training time; ``current`` carries the target column only when the batch is labelled. Each
    part is reported through ``run.progress`` (stage ``monitor``), the bootstrap per resample.
    """
    import numpy as np

    training = context.training
    info = training["monitoring"]["reference"]
    roles: dict[str, str] = dict(info["roles"])
    features: list[str] = list(info["features"])
    target: str = info["target"]
    task: str = training.get("task", "binary")
    labelled = target in current.columns
    groups = current[[c for c in info.get("sensitive", []) if c in current.columns]]
    fair = len(groups.columns) and (labelled or task in ("binary", "text"))
    plan = ["scoring the model", "prediction drift", "data drift (evidently)",
            *(["performance"] if labelled else []), *(["fairness"] if fair else [])]

    def part(label: str) -> None:
        run.progress("monitor", plan.index(label), len(plan), label)

    # Score first: evidently's report leaves a large heap of live objects behind, and every
    # garbage-collector pass made while scoring after it would walk them all.
    part("scoring the model")
    estimator = context.model
    rows = scoring_rows(run, current, every_row=labelled or bool(len(groups.columns)))
    scored = current if rows is None else current.iloc[rows]
    pred, proba, kind = predict(estimator, scored[features], task)
    part("prediction drift")
    if context.holdout_predictions is not None and context.holdout_kind == kind:
        reference_values = np.asarray(context.holdout_predictions)
        source = "holdout"
    else:
        if context.holdout is not None:
            holdout, source = context.holdout, "holdout"
        else:
            holdout, source = reference, "reference (in-sample: the run stored no holdout sample)"
        ref_pred, ref_proba, _ = predict(estimator, holdout[features], task)
        reference_values = drift_values(ref_pred, ref_proba, kind)
    prediction = {**prediction_drift(reference_values, drift_values(pred, proba, kind), kind), "reference": source,
                  "rows_scored": len(pred), "rows": len(current)}

    part("data drift (evidently)")
    types = drift_types(reference, roles, task, target)
    extra = {c: "sensitive" for c in groups.columns}
    if labelled:
        extra[target] = "target"
    drift, snapshot = data_drift(reference, current, types, features, extra, context.policy)
    drift["prediction"] = prediction
    report: dict[str, Any] | None = None
    if snapshot is not None:
        html = snapshot.get_html_str(as_iframe=False).encode("utf-8")
        report = {"html": put_artifact(run, html), "bytes": len(html), "generator": f"evidently {_evidently_version()}"}
        del snapshot, html

    out: list[Check | Evidence] = [Evidence("drift", drift)]
    classes = np.asarray(getattr(estimator, "classes_", []))
    if labelled:
        part("performance")
        mask = current[target].notna().to_numpy()
        y = labels_like(current[target].to_numpy()[mask], classes)
        pred_l, proba_l = pred[mask], None if proba is None else proba[mask]
        primary = training.get("metric", "roc_auc")
        if mask.any():
            scores, detail = performance(y, pred_l, proba_l, classes, task, primary,
                                         run.spec.evaluate.bootstrap, run.seed, run=run)
        else:
            scores = {primary: None, f"{primary}_ci": None}
            detail = {"rows": 0, "metric": primary, "detail": "no row of the batch has a label"}
        detail["unlabelled_rows"] = int((~mask).sum())
        test_value = training.get("metrics", {}).get("test", {}).get(primary)
        current_value = scores.get(primary)
        detail["test"] = test_value
        detail["change"] = (current_value - test_value) if None not in (current_value, test_value) else None
        out += [Evidence("metrics", {"current": scores}), Evidence("performance", detail)]
        if len(groups.columns) and mask.any():
            part("fairness")
            out.append(Evidence("fairness", labelled_fairness(run, groups[mask], task, y, pred_l, proba_l, classes,
                                                              primary)))
    elif fair:
        part("fairness")
        out.append(Evidence("fairness", selection_fairness(run, groups, pred, classes)))
    run.progress("monitor", len(plan), len(plan), "done")
    if report is not None:
        out.append(Evidence("report", report))
    n_drifted, n_tested = drift["drifted"], drift["tested"]
    status: Status = ("warn" if n_drifted else "pass") if n_tested else "error"
    out.append(Check("monitoring", "feature_drift", status, drift["share_drifted"],
                     {"drifted": drift["drifted_columns"], "tested": n_tested},
                     f"{n_drifted} of {n_tested} features drifted"))
    return out


def _evidently_version() -> str:
    import evidently

    return str(evidently.__version__)
