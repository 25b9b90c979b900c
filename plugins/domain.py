"""Domain adaptation (``data.target_domain``): how far the data a model will meet is from
the data it learns on, how it performs there, and optional importance weighting.

``data.target_domain`` names a second table with the same columns (labelled, so the
model can be scored on it). The runner loads it once, through the ``load_data`` hook like
the source, and hands it to ``check_split`` and ``evaluate`` (``target_domain``).

``check_split`` (after the split, before fitting) runs **adversarial validation**: a
gradient-boosting classifier learns to tell the *training part* of the source from the
target domain; its out-of-fold ROC AUC says how separable the domains are (0.5: the
same distribution; near 1: disjoint), and permutation importance on the held-out folds
names the most shifted features. The holdout is not used, so it stays untouched.

With ``train.domain_weighting = true`` the out-of-fold probabilities give each training
row the importance weight ``p(target|x) / p(source|x) · n_source / n_target`` (an
estimate of the density ratio), clipped to [1/20, 20] and scaled to mean 1, returned as a
:class:`~assay.kernel.types.SampleWeights` that the runner passes to ``fit_model`` (``model__sample_weight``).
Check_split is the one hook that knows the training rows and runs before ``fit_model``;
``validate_data`` would have had to look at the holdout rows too.

``evaluate`` scores the model (and the baseline) on the whole target domain next to the
source holdout: ``domain.source.metrics`` / ``domain.target.metrics``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, SampleWeights, hookimpl
from assay.errors import BadInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay import Dataset, FittedModel, Run, Scores, Splits, Status

CLIP = 20.0
FOLDS = 5
MAX_ROWS_PER_DOMAIN = 20_000
TOP_FEATURES = 5
SHIFT_WARN_AUC = 0.8
WEIGHTS_FROM = "domain classifier (plugins.domain)"


def check_target(run: Run, source: Dataset, target: Dataset) -> Dataset:
    """The target-domain table (loaded by the runner), refused unless it has the source's feature columns."""
    needed = [*source.features, source.target]
    missing = [c for c in needed if c not in target.frame.columns]
    if missing:
        raise BadInput(f"{run.spec_path}: data.target_domain: {run.spec.data.target_domain} lacks column(s) "
                       f"{', '.join(missing)} that the source has (the domains must share a schema)")
    return target


def _encode(source: pd.DataFrame, target: pd.DataFrame, dataset: Dataset) -> tuple[pd.DataFrame, list[bool], list[str]]:
    """Both domains' features as numbers for the domain classifier (text columns left out)."""
    import pandas as pd

    numeric = [c for c in dataset.columns_with("numeric") if c in source.columns]
    categorical = [c for c in dataset.columns_with("categorical") if c in source.columns]
    dates = [c for c in dataset.columns_with("datetime") if c in source.columns]
    both = pd.concat([source, target], ignore_index=True)
    out = pd.DataFrame(index=both.index)
    mask: list[bool] = []
    for col in numeric:
        out[col] = pd.to_numeric(both[col], errors="coerce").astype(float)
        mask.append(False)
    for col in dates:
        stamps = pd.to_datetime(both[col])
        out[col] = (stamps.astype("int64") // 10**9).where(stamps.notna()).astype(float)
        mask.append(False)
    for col in categorical:
        codes, uniques = pd.factorize(both[col].astype(str).where(both[col].notna()), sort=True)
        out[col] = pd.Series(codes, index=both.index).replace(-1, float("nan")).astype(float)
        mask.append(len(uniques) < 250)  # HGB's native categories; more as ordinal codes
    return out, mask, dataset.columns_with("text")


def _sample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    import numpy as np

    return np.sort(rng.choice(n, limit, replace=False)) if n > limit else np.arange(n)


def adversarial_validation(run: Run, splits: Splits, target: Dataset) -> dict[str, Any]:
    """Out-of-fold domain-classifier AUC, shifted features, and p(target|x) for the train rows.

    One OpenMP thread: the work is ~100 small predictions (permutation importance), where
    OpenMP start-up costs more than it saves, and on a busy machine its spin-waiting
    threads slow each call down by orders of magnitude.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return _adversarial_validation(run, splits, target)


def _adversarial_validation(run: Run, splits: Splits, target: Dataset) -> dict[str, Any]:
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    dataset = splits.dataset
    rng = np.random.default_rng([run.seed, 17])
    source_part = splits.part("train")
    src_rows = _sample(len(source_part), MAX_ROWS_PER_DOMAIN, rng)
    tgt_rows = _sample(target.rows, MAX_ROWS_PER_DOMAIN, rng)
    usable = [c for c in dataset.features if dataset.roles.get(c) != "text"]
    X_all, mask, skipped = _encode(source_part[usable], target.frame[usable], dataset)
    features = [str(c) for c in X_all.columns]  # the encoder's order, which ``mask`` follows
    n_src = len(source_part)
    is_target = np.r_[np.zeros(n_src, dtype=int), np.ones(target.rows, dtype=int)]
    rows = np.r_[src_rows, n_src + tgt_rows]
    X, d = X_all.iloc[rows].reset_index(drop=True), is_target[rows]
    oof = np.zeros(len(d))
    importances = np.zeros((FOLDS, len(features)))
    models = []
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=run.seed)
    for k, (tr, va) in enumerate(folds.split(X, d)):
        # Early stopping: where the domains do not differ, the classifier stops before it fits
        # noise, so its probabilities (and the weights) stay flat.
        clf = HistGradientBoostingClassifier(max_iter=200, max_leaf_nodes=15, learning_rate=0.1, min_samples_leaf=40,
                                             categorical_features=np.asarray(mask) if any(mask) else None,
                                             early_stopping=True, validation_fraction=0.15, n_iter_no_change=5,
                                             random_state=run.seed)
        clf.fit(X.iloc[tr], d[tr])
        oof[va] = clf.predict_proba(X.iloc[va])[:, 1]
        held = permutation_importance(clf, X.iloc[va], d[va], scoring="roc_auc", n_repeats=1,
                                      random_state=run.seed, n_jobs=1)
        importances[k] = held.importances_mean
        models.append(clf)
    auc = float(roc_auc_score(d, oof))
    # p(target | x) for every training row: out of fold where sampled, else the fold models' mean
    p_train = np.mean([m.predict_proba(X_all.iloc[:n_src])[:, 1] for m in models], axis=0)
    sampled_src = rows < n_src
    p_train[rows[sampled_src]] = oof[sampled_src]
    mean_importance = importances.mean(axis=0)
    order = np.argsort(-mean_importance)[:TOP_FEATURES]
    shifted = [_describe_shift(f, float(mean_importance[i]), float(importances[:, i].std()), source_part[f],
                               target.frame[f], dataset.roles.get(f, "")) for i, f in
               ((int(i), features[int(i)]) for i in order)]
    return {"auc": auc, "p_target": p_train, "n_source": len(src_rows), "n_target": len(tgt_rows),
            "shifted": shifted, "skipped": skipped, "prior": len(tgt_rows) / len(src_rows)}


def _describe_shift(name: str, importance: float, spread: float, source: pd.Series, target: pd.Series,
                    role: str) -> dict[str, Any]:
    out: dict[str, Any] = {"feature": name, "importance": importance, "importance_std": spread, "role": role}
    if role == "numeric":
        out.update(source_mean=float(source.mean()), target_mean=float(target.mean()))
    else:
        src_top, tgt_top = source.astype(str).value_counts(normalize=True), target.astype(str).value_counts(normalize=True)
        out.update(source_top=str(src_top.index[0]) if len(src_top) else None,
                   target_top=str(tgt_top.index[0]) if len(tgt_top) else None)
    return out


def importance_weights(p_target: np.ndarray, prior: float) -> tuple[np.ndarray, float]:
    """Density-ratio weights p(t|x)/p(s|x) / (n_t/n_s), clipped to [1/CLIP, CLIP], scaled to
    mean 1; and the share of rows the clipping changed."""
    import numpy as np

    p = np.clip(p_target, 1e-6, 1 - 1e-6)
    ratio = p / (1 - p) / prior
    w = np.clip(ratio, 1.0 / CLIP, CLIP)
    return w / w.mean(), float(np.mean(w != ratio))


@hookimpl
def check_split(run: Run, splits: Splits, target_domain: Dataset | None) -> list[Check | Evidence | SampleWeights] | None:
    import numpy as np

    if not run.spec.data.target_domain or target_domain is None:
        if run.spec.train.domain_weighting:
            raise BadInput(f"{run.spec_path}: train.domain_weighting = true needs data.target_domain "
                           "(the table whose distribution the weights should match)")
        return None
    if splits.dataset.task == "ranking":
        return [Check("data", "domain_shift", "skip", None, {"reason": "domain adaptation of rankers is not supported"})]
    target = check_target(run, splits.dataset, target_domain)
    found = adversarial_validation(run, splits, target)
    auc = found["auc"]
    evidence: dict[str, Any] = {
        "target": {"source": run.spec.data.target_domain, "rows": target.rows, "fingerprint": target.fingerprint},
        "adversarial_auc": auc,
        "adversarial": {"classifier": "hist_gradient_boosting", "folds": FOLDS, "source_rows": found["n_source"],
                        "target_rows": found["n_target"], "source_part": "train",
                        "features_left_out": found["skipped"]},
        "shifted_features": found["shifted"],
    }
    weighting: dict[str, Any] = {"enabled": run.spec.train.domain_weighting}
    out: list[Check | Evidence | SampleWeights] = []
    if run.spec.train.domain_weighting:
        w, clipped = importance_weights(found["p_target"], found["prior"])
        weights = np.ones(splits.dataset.rows)
        weights[splits.train] = w
        out.append(SampleWeights(weights, WEIGHTS_FROM))
        weighting.update(ratio_clip=[1.0 / CLIP, CLIP], clipped_share=clipped, min=float(w.min()),
                         max=float(w.max()), effective_sample_size=float(w.sum() ** 2 / (w ** 2).sum()), rows=len(w))
    evidence["weighting"] = weighting
    status: Status = "warn" if auc >= SHIFT_WARN_AUC else "pass"
    top = ", ".join(s["feature"] for s in found["shifted"][:3])
    return [
        *out,
        Evidence("domain", evidence),
        Check("data", "domain_shift", status, auc, {"metric": "adversarial ROC AUC", "threshold": SHIFT_WARN_AUC,
                                                     "most_shifted": [s["feature"] for s in found["shifted"]]},
              message=f"source and target domains are separable (AUC {auc:.3f}; most shifted: {top})"
              if status == "warn" else ""),
    ]


@hookimpl
def evaluate(run: Run, model: FittedModel, splits: Splits, scores: Scores,
             target_domain: Dataset | None) -> list[Check | Evidence] | None:
    from assay.kit import metrics_for, positive_first, score_model, score_predictions

    if not run.spec.data.target_domain or target_domain is None or splits.dataset.task == "ranking":
        return None
    target = target_domain
    task = splits.dataset.task
    names = metrics_for(task, int(splits.dataset.frame[splits.dataset.target].nunique()))
    positive = run.spec.data.positive_label
    X_t, y_t = target.frame[splits.dataset.features], target.frame[splits.dataset.target]
    classes, proba = positive_first(scores.test.classes, scores.test.proba, positive)
    source = score_predictions(scores.test.y, scores.test.pred, proba, classes, names)
    on_target = score_model(model.estimator, X_t, y_t, names, positive)
    base_name, base = scores.baseline.name, scores.baseline.estimator
    primary = run.spec.metric
    drop = (source.get(primary) - on_target[primary]  # type: ignore[operator]
            if source.get(primary) is not None and on_target.get(primary) is not None else None)
    return [Evidence("domain", {
        "source": {"rows": len(splits.test), "part": "holdout", "metrics": source},
        "target": {"metrics": on_target,
                   "baseline": {"name": base_name, "metrics": score_model(base, X_t, y_t, names, positive)}},
        "transfer_gap": {primary: drop},
    })]
