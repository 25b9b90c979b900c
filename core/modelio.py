"""Saving and loading models with skops: never plain pickle, hash checked before load."""

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
