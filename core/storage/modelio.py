"""Saving and loading models with skops: never plain pickle, hash checked before load.

skops refuses to load a type it does not trust by default unless it is named as trusted;
the names come from the registered trainers (``Trainer.trusted_types``), so a plugin that
adds a model family declares what its models contain, and nobody edits a core list.

Also the predictions hash: a digest of a model's holdout predictions that replay compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from assay.errors import Finding
from assay.storage.store import ArtifactStore

if TYPE_CHECKING:
    from assay.kernel.types import Trainer

# What any saved pipeline may hold besides the types skops trusts by default: numpy dtypes and
# two containers scikit-learn's own estimators keep. Everything a model family adds beyond
# these is declared by its trainer (``Trainer.trusted_types``), not listed here.
BASE_TRUSTED: tuple[str, ...] = ("numpy.dtype", "collections.OrderedDict", "builtins.slice")


def dotted_name(obj: Any) -> str:
    """``module.qualname`` of a class or function: how skops names it in a saved model."""
    return f"{obj.__module__}.{obj.__qualname__}"


def trusted_types(trainers: Iterable[Trainer]) -> frozenset[str]:
    """The types skops may load: the base list, the kit's pipeline functions and each trainer's own."""
    from assay.kit import PIPELINE_FUNCTIONS

    names = set(BASE_TRUSTED) | {dotted_name(f) for f in PIPELINE_FUNCTIONS}
    for trainer in trainers:
        names.update(trainer.trusted_types)
    return frozenset(names)


def installed_trainers() -> list[Trainer]:
    """Every trainer the installed plugins register (what a model stored by this home may come from)."""
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import collect_trainers

    return list(collect_trainers(make_plugin_manager()).values())


def save_model(store: ArtifactStore, estimator: Any) -> str:
    """Serialize ``estimator`` with skops into the artifact store; return ``sha256:HEX``."""
    import skops.io as sio

    return store.put_bytes(sio.dumps(estimator))


def load_model(store: ArtifactStore, digest: str, trainers: Iterable[Trainer] | None = None) -> Any:
    """Load a model after checking its bytes against ``digest``; refuse types nobody trusts.

    :param trainers: the families whose declared types are trusted (default: every trainer
        the installed plugins register; inside a run pass ``run.trainers.values()``).
    """
    import skops.io as sio

    data = store.get_bytes(digest)  # raises Finding if the bytes changed
    trusted = trusted_types(installed_trainers() if trainers is None else trainers)
    found = set(sio.get_untrusted_types(data=data))
    untrusted = found - trusted
    if untrusted:
        raise Finding(f"model {digest} contains types that are not trusted: {', '.join(sorted(untrusted))} "
                      "(no registered trainer declares them in its trusted_types)")
    return sio.loads(data, trusted=sorted(found))


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
