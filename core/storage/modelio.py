"""Saving and loading models with skops: never plain pickle, hash checked before load.

skops refuses to load a type it does not trust by default unless it is named as trusted;
the names come from the registered trainers (``Trainer.trusted_types``), so a plugin that
adds a model family declares what its models contain, and nobody edits a core list.

Also the predictions hash: a digest of a model's holdout predictions that replay compares.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from types import ModuleType
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


# Importing ``skops.io`` builds skops's default trusted-type lists; for them scikit-learn's
# ``all_estimators()`` walks every scikit-learn package, which imports the vendored array-API
# shim for dask (dask itself, when installed) and ``sklearn.utils._testing`` (pytest, when
# installed). Neither defines an estimator, and both imports are optional there (the walk skips
# a package that fails to import; ``_testing`` guards its pytest import), so they are held back
# while skops loads: 230 modules imported instead of 488 and a third less CPU, the same trusted
# lists (tests/training/test_model_io.py compares them), and both import normally afterwards.
# (``sklearn.utils._testing`` then stays loaded without its pytest marks; under pytest nothing is
# held back, pytest being loaded already.)
SKOPS_NEEDS_NOT: tuple[str, ...] = ("dask", "pytest")
_skops_lock = threading.Lock()


def skops_io() -> ModuleType:
    """``skops.io``, imported without the optional modules its type discovery would pull in."""
    loaded = sys.modules.get("skops.io")
    if loaded is not None:
        return loaded
    with _skops_lock:
        held = [name for name in SKOPS_NEEDS_NOT if name not in sys.modules]
        for name in held:
            sys.modules[name] = None  # type: ignore[assignment]  # an import of it raises ImportError
        try:
            import skops.io as sio

            return sio
        except ImportError:
            pass  # some module needed what was held back after all: import it as skops does, below
        finally:
            for name in held:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
        import skops.io as sio

        return sio


def save_model(store: ArtifactStore, estimator: Any) -> str:
    """Serialize ``estimator`` with skops into the artifact store; return ``sha256:HEX``."""
    return store.put_bytes(skops_io().dumps(estimator))


def load_model(store: ArtifactStore, digest: str, trainers: Iterable[Trainer] | None = None) -> Any:
    """Load a model after checking its bytes against ``digest``; refuse types nobody trusts.

    :param trainers: the families whose declared types are trusted (default: every trainer
        the installed plugins register; inside a run pass ``run.trainers.values()``).
    """
    sio = skops_io()
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
    import numpy as np

    if hasattr(estimator, "predict_proba") and len(getattr(estimator, "classes_", ())):
        return hash_predictions(np.asarray(estimator.predict_proba(X)), "proba", decimals)
    return hash_predictions(np.asarray(estimator.predict(X)), "pred", decimals)


def hash_predictions(values: Any, kind: str, decimals: int = 9) -> str:
    """:func:`predictions_hash` of predictions already made: ``kind`` ``proba`` for the
    probabilities of an estimator that has ``predict_proba`` (and classes), else ``pred``
    for what ``predict`` returned. The runner hashes the holdout predictions it scores with,
    so the model predicts the holdout once.
    """
    import hashlib

    import numpy as np

    if kind not in ("proba", "pred"):
        raise ValueError(f"hash_predictions: kind must be 'proba' or 'pred', not {kind!r}")
    values = np.asarray(values)
    digest = hashlib.sha256(b"assay.predictions.v1\x00" + kind.encode() + str(values.shape).encode())
    if values.dtype.kind in "biuf":
        rounded = np.round(values.astype("<f8"), decimals) + 0.0
        digest.update(np.ascontiguousarray(rounded).tobytes())
    else:
        digest.update("\x1f".join(map(str, values.ravel().tolist())).encode())
    return "sha256:" + digest.hexdigest()
