"""Leakage checks (``check_split`` and ``evaluate``): group ``leakage``.

Rows are named by their 0-based position in the loaded data (``row``), columns by name.

========================  ===============================================  ===========  ===========
check                     value                                            warn         fail
========================  ===============================================  ===========  ===========
``duplicates``            share of test rows whose whole record (all       ≥ 0.25 %     ≥ 1 %
                          columns but ids, after normalization) is also
                          a training row
``fold_duplicates``       the same inside the training part, worst CV      ≥ 0.25 %     ≥ 1 %
                          fold (validation rows copied in its train rows)
``near_duplicate_texts``  share of (sampled) test texts with a training    ≥ 0.25 %     ≥ 1 %
                          text of TF-IDF cosine ≥ 0.9 (text columns)
``entity_overlap``        share of test rows whose ``id_column`` /         > 0          ≥ 1 %
                          ``group_column`` value also occurs in training
``fold_entity_overlap``   the same across CV folds (worst fold)            > 0          ≥ 1 %
``temporal_order``        share of test rows not strictly after the last   > 0          ≥ 1 %
                          training time (``time_column``)
``fold_temporal_order``   the same for CV folds (worst fold)               > 0          ≥ 1 %
``future_features``       share of rows where a date/time feature is       > 0          ≥ 1 %
                          later than the row's ``time_column`` value
``post_decision_features``  worst feature's share of rows where it becomes  > 0          ≥ 1 %
                          known (``data.available_at``; a date/time: its
                          own value) after ``data.decision_time``
``feature_selection_``    declared numeric features not in the training    > 0          —
``on_all_rows``           part's top k, when ``data.features`` is exactly
                          SelectKBest's top k on all rows (holdout too)
``preprocessed_on_all_``  numeric features standardized, 0-1 scaled or     > 0          —
``rows``                  mean-filled over the whole table but not over
                          the training part alone
``target_leakage``        best single-feature score: out-of-fold ROC AUC   ≥ 0.95 /     ≥ 0.99 /
                          (classification) or R² (regression)              R² ≥ 0.95    R² ≥ 0.99
``identifier_columns``    best score of an identifier-like feature         ≥ 0.60 /     ≥ 0.70 /
                          (near-unique key) against the label              R² ≥ 0.10    R² ≥ 0.30
``preprocessing_inside_cv``  1 if preprocessing was fit inside each CV       —            0; not
                          fold (``FittedModel``, from ``fit_model``)                    recorded: error
``holdout_used_in_tuning``   1 if the search saw the holdout                 —            1; not
                                                                                         recorded: error
========================  ===============================================  ===========  ===========

Normalization before hashing: strings are stripped, lower-cased and inner white space
collapsed; floats are rounded to 6 significant digits; missing values are one token.
So a record re-exported with other casing or float noise still counts as a copy.

The single-feature model is deliberately cheap: each feature is binned (quantiles for
numbers and times, the categories themselves otherwise) and the label's mean per bin,
learnt on two thirds of a ≤ 5,000-row sample of the training part, predicts the other
third (3-fold, out of fold). A column that is a copy, a rescaling or a recoding of the
label scores ~1; a strong honest predictor rarely passes 0.9. Near-unique keys cannot
be learnt that way, so identifier-like columns are also scored on their sort order
(keys handed out in label order are caught).

Without the columns a check needs (no ``time_column``, no text column, ...) it reports
``skip`` with the reason.
"""

from __future__ import annotations

import difflib
import json
import warnings
from collections.abc import Generator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Status, hookimpl
from assay.kit import dataset_drop, guarded, run_checks, with_fix

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from assay import Dataset, FittedModel, Run, Splits
    from assay.kit import RunSpec, TimeExpression

GROUP = "leakage"

DUPLICATE_WARN = 0.0025
DUPLICATE_FAIL = 0.01
OVERLAP_FAIL = 0.01
TEXT_COSINE = 0.9
TEXT_TEST_SAMPLE = 2_000
TEXT_TRAIN_SAMPLE = 20_000
TARGET_SAMPLE = 5_000
TARGET_FOLDS = 3
BINS = 32
AUC_WARN, AUC_FAIL = 0.95, 0.99
R2_WARN, R2_FAIL = 0.95, 0.99
ID_UNIQUE_SHARE = 0.5  # text/categorical keys
ID_UNIQUE_SHARE_INT = 0.9  # integer keys
ID_AUC_WARN, ID_AUC_FAIL = 0.60, 0.70
ID_R2_WARN, ID_R2_FAIL = 0.10, 0.30
SIGNIFICANT_DIGITS = 6
FITTED_TOL = 1e-3  # |mean|, |sd - 1|, |fill - mean| (in sd) below which a statistic is taken as fitted
FITTED_MIN_DISTINCT = 20
PEEK_ROWS = 5_000  # rows looked at before a whole column is counted
FILLED_SHARE = 0.005
EXAMPLES = 10


def _status(value: float, warn: float, fail: float, *, warn_above_zero: bool = False) -> Status:
    if value >= fail:
        return "fail"
    if value >= warn or (warn_above_zero and value > 0):
        return "warn"
    return "pass"


# --------------------------------------------------------------------------- row hashing


def normalized(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with strings case/space-normalized and floats rounded (for duplicate hashing).

    Text columns become integer codes of their normalized values (normalizing the distinct
    values only), so the result is only comparable within one frame — which is how it is
    used: train and test rows are hashed together.
    """
    import numpy as np
    import pandas as pd

    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            out[col] = s.astype("float64").fillna(-1.0).to_numpy()
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
            out[col] = s.to_numpy(dtype="int64")
        elif pd.api.types.is_numeric_dtype(s.dtype):
            out[col] = round_significant(s.to_numpy(dtype="float64", na_value=np.nan), SIGNIFICANT_DIGITS)
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            out[col] = s.to_numpy(dtype="datetime64[ns]").view("int64")
        else:
            codes, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
            text = pd.Series(uniques.astype(str)).str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
            merged, _ = pd.factorize(text)
            out[col] = np.where(codes < 0, -1, merged[np.maximum(codes, 0)] if len(merged) else -1)
    return pd.DataFrame(out, index=frame.index)


def round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (NaN kept, -0.0 folded into 0.0)."""
    import numpy as np

    finite = np.isfinite(x) & (x != 0)
    out = np.where(finite, 0.0, x) + 0.0
    values = x[finite]
    mags = np.floor(np.log10(np.abs(values)))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = 10.0 ** (digits - 1 - mags)
        rounded = np.round(values * scale) / scale
    # subnormal magnitudes overflow the scale: those keep their value
    out[finite] = np.where(np.isfinite(rounded), rounded, values)
    return out


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of the normalized frame."""
    import pandas as pd

    return pd.util.hash_pandas_object(normalized(frame), index=False).to_numpy()


def _dense(hashes: np.ndarray) -> np.ndarray:
    """The hashes as small integer codes (equal hash, equal code), so membership is a table lookup."""
    import pandas as pd

    return pd.factorize(hashes)[0]


def _copied(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask of the codes ``a`` that occur in ``b`` (codes from :func:`_dense`)."""
    import numpy as np

    seen = np.zeros(int(max(a.max(initial=-1), b.max(initial=-1))) + 1, dtype=bool)
    seen[b] = True
    return seen[a]


def _record_columns(dataset: Dataset) -> list[str]:
    return [c for c in dataset.frame.columns if dataset.roles.get(str(c)) != "id"]


def duplicate_checks(splits: Splits) -> list[Check | Evidence]:
    import numpy as np
    import pandas as pd

    dataset = splits.dataset
    record_cols = _record_columns(dataset)
    norm = normalized(dataset.frame[record_cols])
    hashes = _dense(pd.util.hash_pandas_object(norm, index=False).to_numpy())
    train_pos, test_pos = np.asarray(splits.train), np.asarray(splits.test)
    in_train = _copied(hashes[test_pos], hashes[train_pos])
    share = float(in_train.mean()) if len(test_pos) else 0.0
    copied_rows = test_pos[in_train]
    wanted = hashes[copied_rows[:EXAMPLES]]
    twins = train_pos[np.isin(hashes[train_pos], wanted)]
    first_train: dict[int, int] = {}
    for pos in twins:
        first_train.setdefault(int(hashes[pos]), int(pos))
    examples = [{"test_row": int(r), "train_row": first_train.get(int(hashes[r]))} for r in copied_rows[:EXAMPLES]]
    model_cols = [*dataset.features, dataset.target]
    feature_hashes = _dense(pd.util.hash_pandas_object(norm[model_cols], index=False).to_numpy())
    feature_share = float(_copied(feature_hashes[test_pos], feature_hashes[train_pos]).mean()) if len(test_pos) else 0.0
    thresholds = {"warn_share": DUPLICATE_WARN, "fail_share": DUPLICATE_FAIL}
    status = _status(share, DUPLICATE_WARN, DUPLICATE_FAIL)
    holdout = Check(
        GROUP, "duplicates", status, round(share, 6),
        {"test_rows_copied": int(in_train.sum()), "test_rows": len(test_pos), "examples": examples,
         "columns": [str(c) for c in record_cols],
         "normalization": f"strings stripped + lower-cased, floats to {SIGNIFICANT_DIGITS} significant digits",
         "same_model_inputs_share": round(feature_share, 6),
         "note": "same_model_inputs_share counts test rows whose features and label equal a training row's; "
                 "on low-cardinality data distinct records collide naturally, so only whole-record copies count",
         "thresholds": thresholds},
        message=(f"{int(in_train.sum())} of {len(test_pos)} test rows ({share:.2%}) are copies of training rows, "
                 f"e.g. row {examples[0]['test_row']} repeats row {examples[0]['train_row']} "
                 "(rows count from 0, in data order)") if in_train.any() else "")
    holdout = with_fix(holdout, _dedupe_fix(dataset.source))
    fold_shares, fold_detail = [], []
    train_hashes = hashes[train_pos]
    for i, (tr, va) in enumerate(splits.folds):
        copied = _copied(train_hashes[va], train_hashes[tr])
        fold_share = float(copied.mean()) if len(va) else 0.0
        fold_shares.append(fold_share)
        fold_detail.append({"fold": i, "share": round(fold_share, 6), "rows_copied": int(copied.sum()),
                            "examples": [int(r) for r in train_pos[np.asarray(va)[copied]][:EXAMPLES]]})
    worst = max(fold_shares, default=0.0)
    folds = Check(GROUP, "fold_duplicates", _status(worst, DUPLICATE_WARN, DUPLICATE_FAIL) if fold_shares else "skip",
                  round(worst, 6) if fold_shares else None,
                  {"folds": fold_detail, "thresholds": thresholds} if fold_shares else {"reason": "no CV folds"},
                  message=(f"up to {worst:.2%} of a CV fold's validation rows are copies of its training rows"
                           if worst > 0 else ""))
    return [holdout, with_fix(folds, _dedupe_fix(dataset.source))]


def _dedupe_fix(source: str) -> str:
    return (f"drop the repeated rows before the split: assay run --set data.dedupe=true (or dedupe = true under "
            f"[data]), or remove them from {source} (e.g. pandas drop_duplicates()); if the repeats "
            "are real (one entity recorded twice), name it with data.id_column and use split.strategy = \"group\" "
            "so its rows stay on one side")


# --------------------------------------------------------------------------- text


def text_checks(splits: Splits) -> list[Check | Evidence]:
    import numpy as np

    dataset = splits.dataset
    texts = dataset.columns_with("text")
    if not texts:
        return [Check(GROUP, "near_duplicate_texts", "skip", None, {"reason": "no text columns"})]
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(splits.seed)
    train_pos = np.asarray(splits.train)
    test_pos = np.asarray(splits.test)
    train_s = train_pos if len(train_pos) <= TEXT_TRAIN_SAMPLE else rng.choice(train_pos, TEXT_TRAIN_SAMPLE, replace=False)
    test_s = test_pos if len(test_pos) <= TEXT_TEST_SAMPLE else rng.choice(test_pos, TEXT_TEST_SAMPLE, replace=False)
    per_column: dict[str, Any] = {}
    worst = 0.0
    for col in texts:
        series = dataset.frame[col].fillna("").astype(str)
        vec = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=1, max_df=0.5, sublinear_tf=True)
        try:
            vec.fit(series.iloc[np.concatenate([train_s, test_s])])
        except ValueError:  # empty vocabulary: nothing to compare
            per_column[str(col)] = {"share": 0.0, "reason": "no words"}
            continue
        a = vec.transform(series.iloc[test_s])
        b = vec.transform(series.iloc[train_s]).T.tocsc()
        best = np.zeros(len(test_s))
        match = np.full(len(test_s), -1)
        for start in range(0, len(test_s), 500):
            sims = (a[start:start + 500] @ b).tocsr()
            if sims.nnz == 0:
                continue
            dense_max = sims.max(axis=1).toarray().ravel()
            best[start:start + 500] = dense_max
            match[start:start + 500] = np.asarray(sims.argmax(axis=1)).ravel()
        near = best >= TEXT_COSINE
        share = float(near.mean()) if len(test_s) else 0.0
        worst = max(worst, share)
        per_column[str(col)] = {
            "share": round(share, 6), "test_rows_checked": len(test_s), "train_rows_compared": len(train_s),
            "near_duplicates": int(near.sum()),
            "examples": [{"test_row": int(test_s[i]), "train_row": int(train_s[match[i]]),
                          "cosine": round(float(best[i]), 4)} for i in np.flatnonzero(near)[:EXAMPLES]]}
    status = _status(worst, DUPLICATE_WARN, DUPLICATE_FAIL)
    flagged = [c for c, d in per_column.items() if d.get("share", 0) >= DUPLICATE_WARN]
    found: list[Check | Evidence] = [Check(GROUP, "near_duplicate_texts", status, round(worst, 6),
                  {"columns": per_column, "cosine_threshold": TEXT_COSINE,
                   "thresholds": {"warn_share": DUPLICATE_WARN, "fail_share": DUPLICATE_FAIL}},
                  message=(f"near-duplicate texts across the split in {', '.join(flagged)} "
                           f"({worst:.2%} of sampled test rows)") if flagged else "")]
    return [with_fix(c, "remove near-duplicate documents from the source, or keep each family of them on one side: "
                        "data.group_column and split.strategy = \"group\"") if isinstance(c, Check) else c
            for c in found]


# --------------------------------------------------------------------------- entities and time


def entity_checks(run: Run, splits: Splits) -> list[Check | Evidence]:
    import numpy as np

    d = run.spec.data
    keys = [k for k in dict.fromkeys((d.id_column, d.group_column)) if k]
    if not keys:
        reason = {"reason": "no data.id_column or data.group_column"}
        return [Check(GROUP, "entity_overlap", "skip", None, reason),
                Check(GROUP, "fold_entity_overlap", "skip", None, reason)]
    frame = splits.dataset.frame
    train_pos, test_pos = np.asarray(splits.train), np.asarray(splits.test)
    holdout: dict[str, Any] = {}
    fold_info: dict[str, Any] = {}
    worst_holdout, worst_fold = 0.0, 0.0
    for key in keys:
        column = frame[key]
        # a missing key names no entity: it never counts as shared
        values = column.astype(str).where(column.notna(), None).to_numpy(dtype=object)
        known = column.notna().to_numpy()
        tr_vals, te_vals = values[train_pos], values[test_pos]
        shared_mask = np.isin(te_vals, tr_vals[known[train_pos]]) & known[test_pos]
        shared = np.unique(te_vals[shared_mask].astype(str))
        share = float(shared_mask.mean()) if len(te_vals) else 0.0
        worst_holdout = max(worst_holdout, share)
        holdout[key] = {"share": round(share, 6), "test_rows": int(shared_mask.sum()), "shared_entities": len(shared),
                        "test_entities": len(np.unique(te_vals[known[test_pos]].astype(str))),
                        "examples": shared[:EXAMPLES].tolist()}
        per_fold = []
        tr_known = known[train_pos]
        for i, (tr, va) in enumerate(splits.folds):
            mask = np.isin(tr_vals[va], tr_vals[tr][tr_known[tr]]) & tr_known[va]
            fold_share = float(mask.mean()) if len(va) else 0.0
            worst_fold = max(worst_fold, fold_share)
            per_fold.append({"fold": i, "share": round(fold_share, 6),
                             "shared_entities": len(np.unique(tr_vals[np.asarray(va)[mask]].astype(str)))})
        fold_info[key] = per_fold
    thresholds = {"warn_above": 0.0, "fail_share": OVERLAP_FAIL}
    flagged = [k for k, v in holdout.items() if v["share"] > 0]
    fix = (f"split by entity so each one stays on one side: split.strategy = \"group\" (it groups by "
           f"data.group_column, else data.id_column; now {' / '.join(repr(k) for k in keys)})")
    found: list[Check] = [
        Check(GROUP, "entity_overlap", _status(worst_holdout, 1.0, OVERLAP_FAIL, warn_above_zero=True),
              round(worst_holdout, 6), {"columns": holdout, "thresholds": thresholds},
              message="; ".join(f"{holdout[k]['shared_entities']} {k} value(s) occur in both train and test "
                                f"({holdout[k]['share']:.2%} of test rows, e.g. {holdout[k]['examples'][:3]})"
                                for k in flagged)),
        Check(GROUP, "fold_entity_overlap", _status(worst_fold, 1.0, OVERLAP_FAIL, warn_above_zero=True)
              if splits.folds else "skip", round(worst_fold, 6) if splits.folds else None,
              {"columns": fold_info, "thresholds": thresholds},
              message=(f"CV folds share entities (up to {worst_fold:.2%} of a fold's validation rows)"
                       if worst_fold > 0 else "")),
    ]
    return [with_fix(c, fix) for c in found]


def temporal_checks(run: Run, splits: Splits) -> list[Check | Evidence]:
    import numpy as np
    import pandas as pd

    col = run.spec.data.time_column
    names = ("temporal_order", "fold_temporal_order", "future_features")
    if not col:
        return [Check(GROUP, n, "skip", None, {"reason": "no data.time_column"}) for n in names]
    frame = splits.dataset.frame
    times = pd.to_datetime(frame[col]).to_numpy(dtype="datetime64[ns]")
    train_pos, test_pos = np.asarray(splits.train), np.asarray(splits.test)
    tr_t, te_t = times[train_pos], times[test_pos]
    last_train = tr_t.max()
    early = te_t <= last_train
    share = float(early.mean()) if len(te_t) else 0.0
    thresholds = {"warn_above": 0.0, "fail_share": OVERLAP_FAIL}
    out: list[Check | Evidence] = [Check(
        GROUP, "temporal_order", _status(share, 1.0, OVERLAP_FAIL, warn_above_zero=True), round(share, 6),
        {"time_column": col, "last_train_time": str(last_train), "first_test_time": str(te_t.min()),
         "test_rows_not_after_train": int(early.sum()), "split_strategy": splits.strategy,
         "examples": [int(r) for r in test_pos[early][:EXAMPLES]], "thresholds": thresholds},
        message=(f"{share:.1%} of test rows are not after the last training time {last_train} "
                 f"(split strategy {splits.strategy!r})") if early.any() else "")]
    time_fix = f"split in time order: split.strategy = \"time\" (on data.time_column = {col!r})"
    out = [with_fix(c, time_fix) if isinstance(c, Check) else c for c in out]
    per_fold, worst = [], 0.0
    for i, (tr, va) in enumerate(splits.folds):
        fold_last = tr_t[tr].max()
        bad = tr_t[va] <= fold_last
        fold_share = float(bad.mean()) if len(va) else 0.0
        worst = max(worst, fold_share)
        per_fold.append({"fold": i, "share": round(fold_share, 6), "last_train_time": str(fold_last)})
    out.append(Check(GROUP, "fold_temporal_order",
                     _status(worst, 1.0, OVERLAP_FAIL, warn_above_zero=True) if splits.folds else "skip",
                     round(worst, 6) if splits.folds else None, {"folds": per_fold, "thresholds": thresholds},
                     message=(f"CV folds validate on rows not after their training rows (up to {worst:.1%})"
                              if worst > 0 else "")))
    out[-1] = with_fix(out[-1], time_fix) if isinstance(out[-1], Check) else out[-1]
    others = [c for c in splits.dataset.columns_with("datetime") if c != col]
    if not others:
        out.append(Check(GROUP, "future_features", "skip", None,
                         {"reason": f"no date/time feature besides the time column {col!r}"}))
        return out
    per_col: dict[str, Any] = {}
    worst = 0.0
    for other in others:
        values = pd.to_datetime(frame[other], errors="coerce").to_numpy(dtype="datetime64[ns]")
        later = ~np.isnat(values) & ~np.isnat(times) & (values > times)
        col_share = float(later.mean()) if len(later) else 0.0
        worst = max(worst, col_share)
        per_col[str(other)] = {"share": round(col_share, 6), "rows": int(later.sum()),
                               "examples": [int(r) for r in np.flatnonzero(later)[:EXAMPLES]]}
    flagged = [c for c, v in per_col.items() if v["share"] > 0]
    out.append(with_fix(Check(GROUP, "future_features", _status(worst, 1.0, OVERLAP_FAIL, warn_above_zero=True),
                              round(worst, 6), {"time_column": col, "columns": per_col, "thresholds": thresholds},
                              message=(f"date/time feature(s) later than the prediction time {col!r}: "
                                       f"{', '.join(flagged)}" if flagged else "")),
                        _drop_fix(splits.dataset, flagged, "known only after the prediction time")))
    return out


# --------------------------------------------------------------------------- decision time


def row_times(frame: pd.DataFrame, expression: TimeExpression) -> np.ndarray:
    """The time per row of ``expression`` (``datetime64[ns]``; NaT where its column is missing).

    Times with a time zone are compared in UTC; the loader refuses a mix of zoned and naive ones.
    """
    import numpy as np
    import pandas as pd

    from assay.kit import parse_datetime

    with warnings.catch_warnings():  # a format pandas must guess per value: the loader has accepted the column
        warnings.simplefilter("ignore", UserWarning)
        values = parse_datetime(frame[expression.column])
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    times: np.ndarray = values.to_numpy(dtype="datetime64[ns]")
    return times + np.timedelta64(round(expression.seconds * 1e9), "ns")


def duration_words(ns: float) -> str:
    """A non-negative duration in nanoseconds as days, hours and minutes (``"1 day 2 h 5 min"``)."""
    minutes = round(ns / 60e9)
    if minutes == 0:
        return "less than a minute" if ns > 0 else "0 min"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}" if days else "", f"{hours} h" if hours else "",
             f"{mins} min" if mins else ""]
    return " ".join(p for p in parts if p)


def decision_checks(run: Run, splits: Splits) -> list[Check | Evidence]:
    """Features whose value becomes known only after the decision (``data.decision_time``)."""
    import numpy as np

    from assay.kit import TimeExpression, parse_time_expression

    d = run.spec.data
    name = "post_decision_features"
    if not d.decision_time.strip():
        return [Check(GROUP, name, "skip", None, {
            "reason": "no data.decision_time: declare when the prediction is made (e.g. data.decision_time = "
                      "\"<column> - 1 days\") and, with data.available_at, when columns become known"})]
    dataset = splits.dataset
    frame = dataset.frame
    anchor = parse_time_expression(d.decision_time)
    decision = row_times(frame, anchor)
    has_decision = ~np.isnat(decision)
    features = dataset.features
    per_col: dict[str, Any] = {}
    shares: dict[str, float] = {}  # unrounded: one late row in millions still warns
    for col in features:
        declared = d.available_at.get(col)
        if declared is not None:
            known, basis = row_times(frame, parse_time_expression(declared)), declared
        elif dataset.roles.get(col) == "datetime" and col != anchor.column:
            # a date/time is known no earlier than itself (the decision's own column is what it is scheduled by)
            known, basis = row_times(frame, TimeExpression(col)), "its own value"
        else:
            continue
        compared = has_decision & ~np.isnat(known)
        later = compared & (known > decision)
        share = shares[col] = float(later.sum() / compared.sum()) if compared.any() else 0.0
        after = (known[later] - decision[later]).astype("int64")
        per_col[col] = {"available_at": basis, "declared": declared is not None, "share": round(share, 6),
                        "rows": int(later.sum()), "rows_compared": int(compared.sum()),
                        "median_after_decision": duration_words(float(np.median(after))) if len(after) else None,
                        "examples": [int(r) for r in np.flatnonzero(later)[:EXAMPLES]]}
    flagged = sorted((c for c, v in per_col.items() if v["rows"]), key=lambda c: -shares[c])
    worst = max((shares[c] for c in flagged), default=0.0)

    def said(col: str) -> str:
        v = per_col[col]
        when = (f"becomes known at {v['available_at']!r}" if v["declared"] else "is a date/time")
        return (f"{col} {when}, after the decision at {d.decision_time!r} on {v['share']:.2%} of rows "
                f"(median {v['median_after_decision']} after)")

    thresholds = {"warn_above": 0.0, "fail_share": OVERLAP_FAIL}
    check = Check(GROUP, name, _status(worst, 1.0, OVERLAP_FAIL, warn_above_zero=True), round(worst, 6),
                  {"decision_time": d.decision_time, "columns": per_col, "flagged": flagged,
                   "rows_without_decision_time": int((~has_decision).sum()),
                   "assumed_known_at_decision": [c for c in features if c not in per_col],
                   "declared_not_features": sorted(c for c in d.available_at if c not in features),
                   "thresholds": thresholds},
                  message="; ".join(said(c) for c in flagged))
    drop = sorted({*dataset_drop(dataset), *flagged})
    fix = (f"leave {', '.join(repr(c) for c in flagged)} out: data.drop = {json.dumps(drop)} "
           f"(assay run --set 'data.drop={json.dumps(drop)}'); if a value is in fact known by the decision, "
           "say when with data.available_at")
    return [with_fix(check, fix)]


def _f_scores(X: pd.DataFrame, y: pd.Series, task: str) -> np.ndarray:
    """SelectKBest's default univariate scores (ANOVA F / F-regression); undefined scores rank last."""
    import numpy as np
    from sklearn.feature_selection import f_classif, f_regression

    filled = X.fillna(X.median()).fillna(0.0).to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant columns: sklearn warns and returns NaN
        if task == "regression":
            scores, _ = f_regression(filled, y.to_numpy(dtype="float64"))
        else:
            scores, _ = f_classif(filled, y.astype(str).to_numpy())
    return np.where(np.isfinite(scores), scores, -np.inf)


def _top(columns: list[str], scores: np.ndarray, k: int) -> list[str]:
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    return [columns[i] for i in order[:k]]


def selection_checks(run: Run, splits: Splits) -> list[Check | Evidence]:
    """A ``data.features`` list that is the top k of SelectKBest on all rows, but not on the training part."""
    import pandas as pd

    d = run.spec.data
    name = "feature_selection_on_all_rows"
    dataset = splits.dataset
    if not d.features:
        return [Check(GROUP, name, "skip", None, {"reason": "no data.features list: no column was selected"})]
    if dataset.task not in ("binary", "multiclass", "regression"):
        return [Check(GROUP, name, "skip", None, {"reason": f"not checked for task {dataset.task!r}"})]
    frame = dataset.frame
    numeric = [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c].dtype)
               and not pd.api.types.is_bool_dtype(frame[c].dtype)]
    declared = [c for c in dataset.features if c in numeric]
    # left out only because data.features does not list them (not dropped, keys, times, texts or sensitive)
    named = {d.target, d.id_column, d.group_column, d.time_column, d.text_column, *d.drop, *d.sensitive, *d.roles}
    left_out = [c for c in numeric if dataset.roles.get(c) == "drop" and c not in named]
    if not declared or not left_out:
        return [Check(GROUP, name, "skip", None, {
            "reason": "data.features leaves no numeric column out: nothing was selected among the table's columns"
            if declared else "data.features lists no numeric column"})]
    candidates = declared + left_out
    k = len(declared)
    y = frame[dataset.target]
    everything = _top(candidates, _f_scores(frame[candidates], y, dataset.task), k)
    train = frame.iloc[splits.train]
    training = _top(candidates, _f_scores(train[candidates], train[dataset.target], dataset.task), k)
    chosen_on_all = set(declared) == set(everything) and set(everything) != set(training)
    swapped_out = sorted(set(declared) - set(training))
    detail = {"k": k, "candidates": len(candidates), "declared": declared, "top_k_all_rows": everything,
              "top_k_training_rows": training, "score": "ANOVA F (SelectKBest's default: f_classif / f_regression)",
              "limits": "only numeric columns still in the table are compared; a list chosen by another score, "
                        "or on a table whose other columns were removed, cannot be told from domain knowledge"}
    check = Check(GROUP, name, "warn" if chosen_on_all else "pass", len(swapped_out) if chosen_on_all else 0, detail,
                  message=(f"data.features lists exactly the {k} numeric columns (of {len(candidates)}) that score "
                           "highest on all rows, holdout included (SelectKBest's default score), not the ones that "
                           f"score highest on the training part alone ({', '.join(swapped_out)} would not be "
                           "chosen there): the list looks chosen with the holdout's labels") if chosen_on_all else "")
    return [with_fix(check, "select features inside the CV folds: list every candidate in data.features (or leave "
                            "it empty) and select in the model pipeline; if the list comes from domain knowledge, "
                            "waive the rule for this model with assay waive")]


def _fitted_on(x: np.ndarray) -> str | None:
    """What a numeric column's values show was fitted on exactly these rows (None: nothing)."""
    import numpy as np

    if len(x) < 2:
        return None
    mean, sd0, sd1 = float(x.mean()), float(x.std()), float(x.std(ddof=1))
    if abs(mean) <= FITTED_TOL and min(abs(sd0 - 1.0), abs(sd1 - 1.0)) <= FITTED_TOL:
        return "standardized (mean 0, sd 1)"
    if float(x.min()) == 0.0 and float(x.max()) == 1.0:
        return "min-max scaled (0 to 1)"
    values, counts = np.unique(x, return_counts=True)
    frequent = counts >= max(5, FILLED_SHARE * len(x))
    if not frequent.any():  # no value repeated often enough to be a fill
        return None
    total = float(x.sum())
    rare = values[~frequent] if (~frequent).any() else values
    grid = max(_places(v) for v in rare[:: max(1, len(rare) // 1000)])  # the decimals the column is written with
    for value, count in zip(values[frequent], counts[frequent], strict=True):  # repeated often, the mean of the rest?
        if count == len(x):
            continue
        places = _places(value)
        # a computed mean has more decimals than the column's own values; one on their grid is a common answer
        if places > grid and abs(value - (total - value * count) / (len(x) - count)) <= 0.5 * 10.0 ** -places + 1e-12:
            return f"filled with the mean ({value:g} in {int(count)} rows)"
    return None


def _places(value: float) -> int:
    """Decimals in the shortest text of ``value`` (0 for whole numbers)."""
    exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _distinct_at_least(values: pd.Series, k: int) -> bool:
    """Whether ``values`` has ``k`` or more distinct values; the first rows usually tell, so the
    whole column is counted only when they do not."""
    head = values.iloc[:PEEK_ROWS]
    return bool(head.nunique() >= k or (len(values) > len(head) and values.nunique() >= k))


def preprocessing_checks(splits: Splits) -> list[Check | Evidence]:
    """Numeric features scaled or mean-filled over the whole table (holdout included) before it reached assay."""
    import numpy as np
    import pandas as pd

    dataset = splits.dataset
    frame = dataset.frame
    name = "preprocessed_on_all_rows"
    columns = [c for c in dataset.features if pd.api.types.is_numeric_dtype(frame[c].dtype)
               and not pd.api.types.is_bool_dtype(frame[c].dtype) and _distinct_at_least(frame[c], FITTED_MIN_DISTINCT)]
    if not columns:
        return [Check(GROUP, name, "skip", None, {"reason": f"no numeric feature with {FITTED_MIN_DISTINCT}+ values"})]
    train = np.zeros(len(frame), dtype=bool)
    train[np.asarray(splits.train)] = True
    found: dict[str, Any] = {}
    for col in columns:
        x = frame[col].to_numpy(dtype="float64", na_value=np.nan)
        known = np.isfinite(x)
        on_all = _fitted_on(x[known])
        # fitted on the training part alone is how it should be: the same kind of statistic holds there
        if on_all and (_fitted_on(x[known & train]) or "").split(" (")[0] != on_all.split(" (")[0]:
            found[col] = on_all
    detail = {"columns": found, "checked": columns, "tolerance": FITTED_TOL,
              "limits": "standardization, 0-1 scaling and mean filling are recognized; other transformations "
                        "fitted on all rows (PCA, target encoding, ...) leave no trace assay can read"}
    check = Check(GROUP, name, "warn" if found else "pass", len(found), detail,
                  message=("; ".join(f"{c} was {how} over the whole table, holdout included" for c, how in found.items())
                           + ": statistics of the holdout rows shaped the training features") if found else "")
    return [with_fix(check, "give assay the values before scaling or filling: the bundled pipelines impute and scale "
                            "inside each CV fold, on training rows only")]


def check_timing_columns(spec: RunSpec, dataset: Dataset) -> None:
    """The columns ``data.decision_time`` and ``data.available_at`` name exist and hold date/times (exit 2)."""
    import pandas as pd

    from assay.errors import BadInput
    from assay.kit import parse_datetime, redact_url

    frame = dataset.frame
    columns = [str(c) for c in frame.columns]
    source = redact_url(spec.data.source)
    zoned: dict[str, bool] = {}
    for key, col in spec.data.timing_columns():
        if col not in columns:
            near = difflib.get_close_matches(col, columns, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise BadInput(f"{key}: column {col!r} is not in {source}{hint} (columns: {', '.join(columns)})")
        if key == "data.available_at":  # the column whose availability is declared: any type
            continue
        s = frame[col]
        if not pd.api.types.is_datetime64_any_dtype(s.dtype) and (
                pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            raise BadInput(f"{key}: column {col!r} of {source} is {s.dtype}, not a date/time; name a date/time "
                           "column (text such as 2013-01-01 06:00 is read as one)")
        try:
            with warnings.catch_warnings():  # pandas warns before it fails on text that is not a date
                warnings.simplefilter("ignore", UserWarning)
                parsed = parse_datetime(s)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadInput(f"{key}: column {col!r} of {source} is not a date/time: {exc}") from exc
        zoned[f"{key} ({col!r})"] = isinstance(parsed.dtype, pd.DatetimeTZDtype)
    if len(set(zoned.values())) > 1:
        with_zone = ", ".join(k for k, z in zoned.items() if z)
        without = ", ".join(k for k, z in zoned.items() if not z)
        raise BadInput(f"data.decision_time: times with a time zone ({with_zone}) cannot be compared with times "
                       f"without one ({without}); write all of them with a UTC offset, or none")


# --------------------------------------------------------------------------- single-feature leakage


def _bin_codes(s: pd.Series, bins: int) -> np.ndarray:
    """Integer bin codes: categories for text, quantile bins for numbers and times; NaN its own code."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        s = pd.Series(s.to_numpy(dtype="datetime64[ns]").view("int64").astype("float64"), index=s.index).where(s.notna())
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        codes, _ = pd.factorize(s.astype(object).where(s.notna(), None), use_na_sentinel=True)
        return np.where(codes < 0, codes.max() + 1, codes)
    x = s.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(x)
    distinct = np.unique(x[finite])
    if len(distinct) <= bins:
        codes = np.searchsorted(distinct, np.where(finite, x, distinct[0] if len(distinct) else 0.0))
    else:
        edges = np.unique(np.quantile(x[finite], np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, np.where(finite, x, 0.0), side="right")
    return np.where(finite, codes, codes.max(initial=0) + 1)


def _rank_codes(s: pd.Series, bins: int) -> np.ndarray:
    """Bins of a column's sort order (for keys handed out in label order)."""
    import numpy as np
    import pandas as pd

    order = pd.Series(s.astype(str) if not pd.api.types.is_numeric_dtype(s.dtype) else s).rank(method="first")
    return _bin_codes(order.fillna(-1.0).astype("float64"), bins) if len(order) else np.zeros(0, dtype=int)


def _label_matrix(y: pd.Series, task: str) -> tuple[np.ndarray, str, list[str]]:
    """The label as a float matrix (one column per class, or the value), and how to score it."""
    import numpy as np
    import pandas as pd

    if task == "regression" or (task == "ranking" and y.nunique() > 2):
        return y.to_numpy(dtype="float64").reshape(-1, 1), "r2", []
    classes = sorted(pd.unique(y.astype(str)))
    labels = y.astype(str).to_numpy()
    if len(classes) == 2:
        return (labels == classes[1]).astype("float64").reshape(-1, 1), "roc_auc", classes
    return np.stack([(labels == c).astype("float64") for c in classes], axis=1), "roc_auc_ovr", classes


def oof_score(codes: np.ndarray, Y: np.ndarray, kind: str, fold_of: np.ndarray, smoothing: float = 1.0) -> float | None:
    """Score of the per-bin label mean, learnt out of fold (the cheap single-feature model)."""
    import numpy as np
    from sklearn.metrics import r2_score, roc_auc_score

    k = int(codes.max(initial=0)) + 1
    pred = np.empty_like(Y)
    prior = Y.mean(axis=0)
    for f in np.unique(fold_of):
        tr, va = fold_of != f, fold_of == f
        counts = np.bincount(codes[tr], minlength=k).astype("float64")
        for j in range(Y.shape[1]):
            sums = np.bincount(codes[tr], weights=Y[tr, j], minlength=k)
            pred[va, j] = (sums[codes[va]] + smoothing * prior[j]) / (counts[codes[va]] + smoothing)
    try:
        if kind == "r2":
            return float(r2_score(Y[:, 0], pred[:, 0]))
        if kind == "roc_auc":
            return float(roc_auc_score(Y[:, 0], pred[:, 0]))
        present = Y.sum(axis=0) > 0
        if present.sum() < 2:
            return None
        return float(roc_auc_score(Y[:, present].argmax(axis=1), pred[:, present] / pred[:, present].sum(axis=1, keepdims=True),
                                   multi_class="ovr", average="macro"))
    except ValueError:  # one class in the sample
        return None


def target_checks(splits: Splits) -> list[Check | Evidence]:
    import numpy as np
    import pandas as pd

    dataset = splits.dataset
    rng = np.random.default_rng(splits.seed)
    train_pos = np.asarray(splits.train)
    sample = train_pos if len(train_pos) <= TARGET_SAMPLE else np.sort(rng.choice(train_pos, TARGET_SAMPLE, replace=False))
    frame = dataset.frame.iloc[sample]
    Y, kind, _ = _label_matrix(frame[dataset.target], dataset.task)
    fold_of = rng.permutation(len(sample)) % TARGET_FOLDS
    candidates = [c for c in dataset.features if dataset.roles.get(c) != "text"]
    scores: dict[str, float | None] = {}
    id_like: dict[str, dict[str, Any]] = {}
    for col in candidates:
        s = frame[col]
        scores[col] = oof_score(_bin_codes(s, BINS), Y, kind, fold_of)
        unique_share = s.nunique(dropna=True) / max(len(s), 1)
        is_int = pd.api.types.is_integer_dtype(s.dtype)
        is_key_text = not pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_datetime64_any_dtype(s.dtype)
        if (is_key_text and unique_share >= ID_UNIQUE_SHARE) or (is_int and unique_share >= ID_UNIQUE_SHARE_INT):
            by_order = oof_score(_rank_codes(s, BINS), Y, kind, fold_of)
            best = max((v for v in (scores[col], by_order) if v is not None), default=None)
            id_like[col] = {"unique_share": round(float(unique_share), 4), "score": best,
                            "score_by_value": scores[col], "score_by_order": by_order}
    warn, fail = (R2_WARN, R2_FAIL) if kind == "r2" else (AUC_WARN, AUC_FAIL)
    known = {c: v for c, v in scores.items() if v is not None}
    ranked = sorted(known.items(), key=lambda kv: -kv[1])
    best_value = ranked[0][1] if ranked else None
    leaking = [c for c, v in ranked if v >= warn]
    failing = [c for c, v in ranked if v >= fail]
    model = (f"out-of-fold label mean per bin ({TARGET_FOLDS}-fold, {BINS} quantile bins or categories) "
             f"on {len(sample)} training rows")
    if best_value is None:
        target = Check(GROUP, "target_leakage", "skip" if not candidates else "warn", None,
                       {"reason": "no scorable feature" if not candidates else "scores undefined (one class in sample)",
                        "model": model})
    else:
        target = Check(GROUP, "target_leakage", "fail" if failing else "warn" if leaking else "pass",
                       round(best_value, 6),
                       {"metric": kind, "columns": failing or leaking, "best_column": ranked[0][0],
                        "scores": {c: round(v, 6) for c, v in ranked[:15]}, "model": model,
                        "skipped_text_columns": [c for c in dataset.features if dataset.roles.get(c) == "text"],
                        "thresholds": {"warn": warn, "fail": fail}},
                       message="; ".join(f"{c} alone predicts the label ({_SCORE_NAME.get(kind, kind)} {known[c]:.3f})"
                                         for c in leaking))
        target = with_fix(target, _drop_fix(dataset, failing or leaking, "recorded from the outcome"))
    iwarn, ifail = (ID_R2_WARN, ID_R2_FAIL) if kind == "r2" else (ID_AUC_WARN, ID_AUC_FAIL)
    id_scores = {c: v["score"] for c, v in id_like.items() if v["score"] is not None}
    id_best = max(id_scores.values(), default=None)
    flagged = sorted((c for c, v in id_scores.items() if v >= iwarn), key=lambda c: -id_scores[c])
    id_status = "pass" if id_best is None else _status(id_best, iwarn, ifail)
    identifier = Check(GROUP, "identifier_columns", id_status,
                       round(id_best, 6) if id_best is not None else 0.0,
                       {"identifier_like": id_like, "columns": flagged, "metric": kind,
                        "thresholds": {"warn": iwarn, "fail": ifail, "unique_share_text": ID_UNIQUE_SHARE,
                                       "unique_share_integer": ID_UNIQUE_SHARE_INT}},
                       message=("identifier-like feature(s) related to the label: "
                                + ", ".join(f"{c} ({id_scores[c]:.3f})" for c in flagged)) if flagged else "")
    identifier = with_fix(identifier, _drop_fix(dataset, flagged, "a key, not a property of the case")
                          + "; or give it the role \"id\" with data.roles")
    return [target, identifier]


_SCORE_NAME = {"roc_auc": "AUC", "roc_auc_ovr": "one-vs-rest AUC", "r2": "R²"}


def _drop_fix(dataset: Dataset, columns: list[str], why: str) -> str:
    """Drop ``columns`` (keeping what the spec drops already), as a spec key and as a command."""
    drop = sorted({*dataset_drop(dataset), *map(str, columns)})
    listed = ", ".join(repr(c) for c in columns)
    return (f"if {listed} is {why}, leave it out: data.drop = {json.dumps(drop)} "
            f"(assay run --set 'data.drop={json.dumps(drop)}'); if it is a genuine predictor, "
            "waive the rule for this model with assay waive")


# --------------------------------------------------------------------------- hooks


@hookimpl
def check_split(run: Run, splits: Splits) -> list[Check | Evidence]:
    """Duplicates, near-duplicate texts, shared entities, time order, single-feature leakage, post-decision features."""
    return run_checks(run, "split", GROUP, [  # counted on the split stage's progress bar
        ("duplicates", lambda: duplicate_checks(splits)),
        ("near_duplicate_texts", lambda: text_checks(splits)),
        ("entity_overlap", lambda: entity_checks(run, splits)),
        ("temporal_order", lambda: temporal_checks(run, splits)),
        ("target_leakage", lambda: target_checks(splits)),
        ("post_decision_features", lambda: decision_checks(run, splits)),
        ("feature_selection_on_all_rows", lambda: selection_checks(run, splits)),
        ("preprocessed_on_all_rows", lambda: preprocessing_checks(splits))])


@hookimpl(wrapper=True)
def load_data(spec: RunSpec, source: str) -> Generator[None, Dataset | None, Dataset | None]:
    """Refuse a ``data.decision_time`` / ``data.available_at`` naming a missing or non-date/time column.

    It runs as the data is loaded, before the run writes anything: a bad column is exit 2.
    """
    dataset = yield
    if dataset is not None and source == spec.data.source:
        check_timing_columns(spec, dataset)
    return dataset


def conduct_checks(model: FittedModel) -> list[Check | Evidence]:
    """What the fitting plugin reported about its own conduct (the :class:`FittedModel`'s conduct fields)."""
    out: list[Check | Evidence] = []
    inside = model.preprocessing_inside_cv
    tuner = model.tuner or None
    if inside is None:
        out.append(Check(GROUP, "preprocessing_inside_cv", "error", None,
                         {"reason": "the fitting plugin did not report FittedModel.preprocessing_inside_cv"},
                         message="not recorded whether preprocessing was fit inside the CV folds"))
    else:
        out.append(with_fix(Check(GROUP, "preprocessing_inside_cv", "pass" if inside else "fail", int(bool(inside)),
                                  {"fact": bool(inside), "tuner": tuner},
                                  message="" if inside else
                                  "preprocessing was fit outside the CV folds (on all training rows)"),
                            "fit preprocessing inside the model pipeline, per CV fold (the bundled fit_model does; "
                            "a custom training plugin must too)"))
    saw = model.holdout_used_in_tuning
    if saw is None:
        out.append(Check(GROUP, "holdout_used_in_tuning", "error", None,
                         {"reason": "the fitting plugin did not report FittedModel.holdout_used_in_tuning"},
                         message="not recorded whether the search saw the holdout"))
    else:
        out.append(with_fix(Check(GROUP, "holdout_used_in_tuning", "fail" if saw else "pass", int(bool(saw)),
                                  {"fact": bool(saw), "tuner": tuner},
                                  message="the hyper-parameter search saw the holdout" if saw else ""),
                            "tune on the training part's CV folds only (the bundled fit_model does); the holdout "
                            "must stay unseen until evaluation"))
    return out


@hookimpl
def evaluate(model: FittedModel) -> list[Check | Evidence]:
    """Record the fitting plugin's own account of how it fitted ``model``."""
    return guarded(GROUP, "preprocessing_inside_cv", lambda: conduct_checks(model))
