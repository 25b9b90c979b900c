"""Data checks (``validate_data``, and test-vs-train in ``check_split``): group ``data``.

What each check measures, and when its status changes (``fail`` is "high severity": the
``data-quality`` rule of ``assay:standard`` blocks on it; ``warn`` blocks only in
``assay:strict``):

========================  ==========================================  ======================  ==================
check                     value                                       warn                    fail
========================  ==========================================  ======================  ==================
``schema``                problems found (count)                      soft problems only      any hard problem
``missing_values``        largest missing share of a used column      a column > 20 %         target has gaps,
                                                                                              a feature 100 %
``constant_columns``      number of constant feature columns          ≥ 1                     every feature
``label_balance``         minority class share (classification)       < 5 %                   < 1 %, or fewer
                                                                                              rows than 2×folds
``unseen_categories``     largest share of test rows whose category   > 1 %                   > 10 %
                          was never seen in training
``test_labels``           total-variation distance of label shares    > 0.10                  a test class
                          (test vs train)                                                     absent in train
========================  ==========================================  ======================  ==================

*Hard* schema problems: a target whose type does not fit the task (e.g. a binary task
with one class in the data, a regression target that is not numeric), a declared
feature column that the model cannot use, a sensitive column used as a feature without
being listed in ``data.features``, a ``time_column`` that is not a date/time. *Soft*:
text columns whose values are nearly all numbers (mixed types, usually a stray
placeholder such as ``"?"`` or ``"n/a"``).

Every check runs through :func:`assay.kit.guarded` (here by :func:`assay.kit.run_checks`), as
every bundled check plugin's does, so that a check that raises becomes an ``error`` check (the
gate's ``no-check-errors`` rule then blocks, naming it) instead of silently disappearing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from assay import Check, Evidence, Status, hookimpl
from assay.kit import dataset_drop, run_checks, with_fix

if TYPE_CHECKING:
    import pandas as pd

    from assay import Dataset, Run, Splits

GROUP = "data"

MISSING_WARN = 0.20
MINORITY_WARN = 0.05
MINORITY_FAIL = 0.01
UNSEEN_WARN = 0.01
UNSEEN_FAIL = 0.10
LABEL_SHIFT_WARN = 0.10
NUMERIC_LOOKING = 0.95


def worst(statuses: Iterable[str]) -> str:
    order = {"skip": 0, "pass": 1, "warn": 2, "fail": 3, "error": 4}
    return max(statuses, key=lambda s: order[s], default="pass")


def _share(n: float, total: float) -> float:
    return float(n) / total if total else 0.0


# --------------------------------------------------------------------------- validate_data


def schema_check(run: Run, dataset: Dataset) -> Check:
    import pandas as pd

    d = run.spec.data
    frame, roles = dataset.frame, dataset.roles
    hard: list[str] = []
    soft: list[str] = []
    y = frame[dataset.target]
    n_classes = int(y.nunique())
    if dataset.task == "binary" and n_classes != 2:
        hard.append(f"task 'binary' but target {dataset.target!r} has {n_classes} classes")
    if dataset.task == "multiclass" and n_classes < 3:
        hard.append(f"task 'multiclass' but target {dataset.target!r} has {n_classes} classes")
    if dataset.task == "regression" and not pd.api.types.is_numeric_dtype(y.dtype):
        hard.append(f"task 'regression' but target {dataset.target!r} is {y.dtype}")
    for col in d.features:
        if roles.get(col) not in ("numeric", "categorical", "text", "datetime"):
            hard.append(f"data.features lists {col!r} but its role is {roles.get(col)!r}; the model cannot use it")
    for col in d.sensitive:
        if roles.get(col) in ("numeric", "categorical", "text", "datetime") and col not in d.features:
            hard.append(f"sensitive column {col!r} is used as a feature (role {roles.get(col)!r}) without being "
                        "listed in data.features")
    if d.time_column and not pd.api.types.is_datetime64_any_dtype(frame[d.time_column].dtype):
        hard.append(f"time_column {d.time_column!r} is {frame[d.time_column].dtype}, not a date/time")
    if not dataset.features:
        hard.append("no feature columns are left after target, ids, drop and sensitive columns")
    mixed: dict[str, float] = {}
    for col in dataset.columns_with("categorical", "text"):
        s = frame[col].dropna()
        if s.empty or pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            continue
        sample = s.iloc[:20_000].astype(str)
        numeric_share = float(pd.to_numeric(sample, errors="coerce").notna().mean())
        if NUMERIC_LOOKING <= numeric_share < 1.0:
            mixed[col] = round(numeric_share, 4)
            odd = sample[pd.to_numeric(sample, errors="coerce").isna()].unique()[:5].tolist()
            soft.append(f"{col!r} is text but {numeric_share:.1%} of its values are numbers (others: {odd})")
    status: Status = "fail" if hard else "warn" if soft else "pass"
    detail = {"problems": hard + soft, "high_severity": hard, "mixed_type_columns": mixed,
              "roles": {str(c): r for c, r in roles.items()}, "task": dataset.task,
              "features": list(dataset.features)}
    fix = ("correct data.task / data.target, list used sensitive columns in data.features (or leave them out), "
           "or give the column its role with data.roles" if hard
           else "clean the column in the source, or declare it with data.roles = {col = \"categorical\"}")
    return with_fix(Check(GROUP, "schema", status, len(hard) + len(soft), detail,
                          message="; ".join(hard + soft) if hard or soft else ""), fix)


def missing_check(dataset: Dataset) -> Check:
    frame = dataset.frame
    used = [*dataset.features, dataset.target, *dataset.columns_with("sensitive")]
    n = len(frame)
    shares = {str(c): _share(int(frame[c].isna().sum()), n) for c in used}
    missing = {c: round(v, 6) for c, v in shares.items() if v > 0}
    target_gaps = shares.get(dataset.target, 0.0) > 0
    empty = [c for c in dataset.features if shares.get(c, 0.0) >= 1.0]
    high = sorted((c for c, v in shares.items() if v > MISSING_WARN), key=lambda c: -shares[c])
    status: Status = "fail" if target_gaps or empty else "warn" if high else "pass"
    value = max(shares.values(), default=0.0)
    message = ""
    if target_gaps:
        message = f"target {dataset.target!r} has missing values"
    elif empty:
        message = f"feature(s) with no values at all: {', '.join(empty)}"
    elif high:
        message = "columns with more than 20% missing: " + ", ".join(f"{c} ({shares[c]:.1%})" for c in high)
    fix = (f"remove the rows without a {dataset.target!r} value from the source" if target_gaps
           else f"leave the empty column(s) out: data.drop = {sorted({*dataset_drop(dataset), *empty})}" if empty
           else "check how the data was extracted; columns mostly missing may be better dropped (data.drop)")
    return with_fix(Check(GROUP, "missing_values", status, round(value, 6),
                          {"by_column": missing, "over_threshold": high, "all_missing": empty,
                           "thresholds": {"warn_share": MISSING_WARN}}, message=message), fix)


def _constant(values: pd.Series) -> bool:
    """At most one distinct value besides gaps (``nunique() <= 1``, without hashing every value)."""
    known = values.dropna()
    return len(known) == 0 or bool((known == known.iloc[0]).all())


def constant_check(dataset: Dataset) -> Check:
    frame = dataset.frame
    constant = [str(c) for c in dataset.features if _constant(frame[c])]
    sensitive_constant = [str(c) for c in dataset.columns_with("sensitive") if _constant(frame[c])]
    everything = bool(dataset.features) and len(constant) == len(dataset.features)
    status: Status = "fail" if everything else "warn" if constant or sensitive_constant else "pass"
    message = ""
    if constant or sensitive_constant:
        message = "constant column(s): " + ", ".join(constant + sensitive_constant)
    fix = (f"leave the constant column(s) out: data.drop = {sorted({*dataset_drop(dataset), *constant})}" if constant
           else f"a constant sensitive column cannot be judged: check data.sensitive ({sensitive_constant})")
    return with_fix(Check(GROUP, "constant_columns", status, len(constant),
                          {"columns": constant, "sensitive": sensitive_constant}, message=message), fix)


def balance_check(run: Run, dataset: Dataset) -> Check:
    y = dataset.frame[dataset.target]
    if dataset.task not in ("binary", "multiclass", "text"):
        return Check(GROUP, "label_balance", "skip", None, {"reason": f"task {dataset.task!r} has no classes"})
    counts = y.value_counts(dropna=True)
    shares = counts / max(int(counts.sum()), 1)
    minority = str(shares.idxmin())
    share = float(shares.min())
    too_few = int(counts.min()) < 2 * run.spec.split.cv_folds
    status: Status = "fail" if share < MINORITY_FAIL or too_few else "warn" if share < MINORITY_WARN else "pass"
    message = ""
    if status != "pass":
        message = (f"class {minority!r} is {share:.2%} of the rows ({int(counts.min())} rows"
                   + (f"; fewer than 2 × cv_folds = {2 * run.spec.split.cv_folds}" if too_few else "") + ")")
    fix = (f"lower split.cv_folds (now {run.spec.split.cv_folds}) or collect more rows of class {minority!r}"
           if too_few else f"collect more rows of class {minority!r}, or merge rare classes in the source")
    return with_fix(Check(GROUP, "label_balance", status, round(share, 6),
                          {"minority_class": minority, "counts": {str(k): int(v) for k, v in counts.items()},
                           "thresholds": {"warn_below": MINORITY_WARN, "fail_below": MINORITY_FAIL}},
                          message=message), fix)


@hookimpl
def validate_data(run: Run, dataset: Dataset) -> list[Check | Evidence]:
    """Schema against the spec, missing values, constant columns and label balance."""
    out: list[Check | Evidence] = [Evidence("data", {"sensitive": list(run.spec.data.sensitive)})]
    return out + run_checks(run, "data", GROUP, [
        ("schema", lambda: [schema_check(run, dataset)]),
        ("missing_values", lambda: [missing_check(dataset)]),
        ("constant_columns", lambda: [constant_check(dataset)]),
        ("label_balance", lambda: [balance_check(run, dataset)])])


# --------------------------------------------------------------------------- check_split


def _norm_categories(s: pd.Series) -> pd.Series:
    return s.astype(str).str.strip()


def unseen_check(splits: Splits) -> Check:
    dataset = splits.dataset
    train, test = splits.part("train"), splits.part("test")
    per_column: dict[str, dict[str, Any]] = {}
    shares: dict[str, float] = {}
    for col in dataset.columns_with("categorical"):
        tr = _norm_categories(train[col].dropna())
        te = test[col].dropna()
        te_norm = _norm_categories(te)
        unseen_mask = ~te_norm.isin(set(tr.unique()))
        share = _share(int(unseen_mask.sum()), len(test))
        shares[str(col)] = share
        if unseen_mask.any():
            values = te_norm[unseen_mask].value_counts()
            per_column[str(col)] = {"share": round(share, 6), "rows": int(unseen_mask.sum()),
                                    "values": {str(k): int(v) for k, v in values.iloc[:10].items()},
                                    "distinct": len(values)}
    value = max(shares.values(), default=0.0)
    status: Status = "fail" if value > UNSEEN_FAIL else "warn" if value > UNSEEN_WARN else "pass"
    if not shares:
        return Check(GROUP, "unseen_categories", "skip", None, {"reason": "no categorical features"})
    flagged = [c for c, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v > UNSEEN_WARN]
    message = ("test rows with categories never seen in training: "
               + ", ".join(f"{c} ({shares[c]:.1%})" for c in flagged)) if flagged else ""
    fix = ("use split.strategy = \"stratified\" or a larger training part (a smaller split.test_size), "
           "or merge rare categories in the source")
    return with_fix(Check(GROUP, "unseen_categories", status, round(value, 6),
                          {"columns": per_column, "over_threshold": flagged,
                           "thresholds": {"warn_share": UNSEEN_WARN, "fail_share": UNSEEN_FAIL}}, message=message), fix)


def label_shift_check(splits: Splits) -> Check:
    dataset = splits.dataset
    if dataset.task not in ("binary", "multiclass", "text"):
        return Check(GROUP, "test_labels", "skip", None, {"reason": f"task {dataset.task!r} has no classes"})
    y_tr, y_te = splits.y("train").astype(str), splits.y("test").astype(str)
    p_tr = y_tr.value_counts(normalize=True)
    p_te = y_te.value_counts(normalize=True)
    classes = sorted(set(p_tr.index) | set(p_te.index))
    tv = 0.5 * sum(abs(float(p_tr.get(c, 0.0)) - float(p_te.get(c, 0.0))) for c in classes)
    absent = [c for c in p_te.index if c not in p_tr.index]
    status: Status = "fail" if absent else "warn" if tv > LABEL_SHIFT_WARN else "pass"
    message = (f"test classes never seen in training: {absent}" if absent
               else f"label shares differ between train and test (total variation {tv:.3f})" if status == "warn"
               else "")
    fix = "split with split.strategy = \"stratified\" so train and test hold the classes in the same shares"
    return with_fix(Check(GROUP, "test_labels", status, round(tv, 6),
                          {"train": {c: round(float(v), 6) for c, v in p_tr.items()},
                           "test": {c: round(float(v), 6) for c, v in p_te.items()}, "absent_in_train": absent,
                           "thresholds": {"warn_total_variation": LABEL_SHIFT_WARN}}, message=message), fix)


@hookimpl
def check_split(run: Run, splits: Splits) -> list[Check | Evidence]:
    """Test against train: categories never seen in training, label shares."""
    return run_checks(run, "split", GROUP, [("unseen_categories", lambda: [unseen_check(splits)]),
                                            ("test_labels", lambda: [label_shift_check(splits)])])


def statuses(checks: Sequence[Check | Evidence]) -> dict[str, str]:
    """``{name: status}`` of the checks in a hook's result (for tests and summaries)."""
    return {c.name: c.status for c in checks if isinstance(c, Check)}
