"""Saving and loading models with skops: never plain pickle, hash checked before load.

Also the predictions hash: a digest of a model's holdout predictions that replay compares.
"""

from __future__ import annotations

from typing import Any

from assay.errors import Finding
from assay.store import ArtifactStore

# Types outside scikit-learn/numpy that bundled trainers are known to produce. skops
# refuses anything not listed here or trusted by default.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "collections.OrderedDict",
    "builtins.slice",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # HistGradientBoosting's internal categorical preprocessor: partial(check_array, dtype=...).
    # skops checks the partial's function and arguments on their own, so trusting partial is safe.
    "functools.partial",
    "sklearn.utils.validation.check_array",
    # The core pipeline's own helpers (plugins/training.py).
    "assay.plugins.training._as_str",
    "assay.plugins.training._datetime_features",
    # Ranking estimators (plugins/rankers.py: plain attributes, no custom state hooks) and
    # the calibrated linear SVM's internals (plugins/text.py).
    "assay.plugins.rankers.PointwiseRanker",
    "assay.plugins.rankers.PairwiseLogisticRanker",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
)


def save_model(store: ArtifactStore, estimator: Any) -> str:
    """Serialize ``estimator`` with skops into the artifact store; return ``sha256:HEX``."""
    import skops.io as sio

    return store.put_bytes(sio.dumps(estimator))


def load_model(store: ArtifactStore, digest: str, extra_trusted: tuple[str, ...] = ()) -> Any:
    """Load a model after checking its bytes against ``digest``; refuse unknown types."""
    import skops.io as sio

    data = store.get_bytes(digest)  # raises Finding if the bytes changed
    untrusted = set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES) - set(extra_trusted)
    if untrusted:
        raise Finding(f"model {digest} contains types that are not trusted: {', '.join(sorted(untrusted))}")
    return sio.loads(data, trusted=sorted(set(sio.get_untrusted_types(data=data))))


def predictions_hash(estimator: Any, X: Any, decimals: int = 9) -> str:
    """``sha256:HEX`` of ``estimator``'s predictions on ``X``: probabilities when it has them.

    Numbers are rounded to ``decimals`` places (so -0.0 and last-bit noise do not count);
    labels are hashed as text. Equal hashes mean the same predictions on the same rows.
    """
    import hashlib

    import numpy as np

    if hasattr(estimator, "predict_proba") and len(getattr(estimator, "classes_", ())):
        values = np.asarray(estimator.predict_proba(X))
        kind = b"proba"
    else:
        values = np.asarray(estimator.predict(X))
        kind = b"pred"
    digest = hashlib.sha256(b"assay.predictions.v1\x00" + kind + str(values.shape).encode())
    if values.dtype.kind in "biuf":
        rounded = np.round(values.astype("<f8"), decimals) + 0.0
        digest.update(np.ascontiguousarray(rounded).tobytes())
    else:
        digest.update("\x1f".join(map(str, values.ravel().tolist())).encode())
    return "sha256:" + digest.hexdigest()
