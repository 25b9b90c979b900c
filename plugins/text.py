"""Text classification (``task = "text"``): TF-IDF with linear models.

The documents are ``data.text_column`` (role ``text``); the fitting plugin's
preprocessing turns every text column into TF-IDF features (word 1-2-grams, sublinear
tf, ``min_df = 2``) inside each CV fold, next to any numeric and categorical columns.
The families here are the linear models that work well on such sparse features:

- ``tfidf_logistic``: L2 logistic regression (log loss), calibrated-ish probabilities.
- ``tfidf_linear_svc``: a linear SVM (hinge loss) with sigmoid-calibrated probabilities
  (``CalibratedClassifierCV``, 3 internal folds), so ROC AUC and costs are defined.
- ``tfidf_sgd``: SGD with the modified Huber loss (a smoothed hinge that still yields
  probabilities); fast on large corpora.

Class weights follow ``train.class_weight`` (``balanced`` by default). Binary and
multiclass labels both work; metrics follow the number of classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assay import Run, Trainer, hookimpl
from assay.kit import loguniform

TEXT = frozenset({"text"})


def _class_weight(run: Run | None) -> str | None:
    return "balanced" if run is None or run.spec.train.class_weight == "balanced" else None


def _logistic(task: str, run: Run | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000, class_weight=_class_weight(run))


def _linear_svc(task: str, run: Run | None = None) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return CalibratedClassifierCV(LinearSVC(C=0.5, class_weight=_class_weight(run)), method="sigmoid", cv=3)


def _sgd(task: str, run: Run | None = None) -> Any:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="modified_huber", alpha=1e-4, class_weight=_class_weight(run),
                         random_state=run.seed if run else 0, max_iter=200, tol=1e-3)


TEXT_TRAINERS = (
    Trainer("tfidf_logistic", TEXT, _logistic,
            grid={"C": [0.5, 1.0, 4.0, 16.0]},
            distributions=(lambda: {"C": loguniform(0.3, 50.0)}),
            preprocessing="scaled", description="TF-IDF + logistic regression"),
    Trainer("tfidf_linear_svc", TEXT, _linear_svc,
            grid={"estimator__C": [0.1, 0.5, 2.0]},
            distributions=(lambda: {"estimator__C": loguniform(0.03, 5.0)}),
            preprocessing="scaled", description="TF-IDF + linear SVM, sigmoid-calibrated",
            trusted_types=("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration")),
    Trainer("tfidf_sgd", TEXT, _sgd,
            grid={"alpha": [1e-5, 1e-4, 1e-3]},
            distributions=(lambda: {"alpha": loguniform(1e-6, 1e-2)}),
            preprocessing="scaled", description="TF-IDF + SGD (modified Huber loss)"),
)


@hookimpl
def register_trainers(register: Callable[[Trainer], None]) -> None:
    for trainer in TEXT_TRAINERS:
        register(trainer)
