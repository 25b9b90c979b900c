"""Artifacts a plugin keeps with a run, and the table format monitoring stores.

A plugin stores bytes through :func:`put_artifact` (content-addressed, in the run's home) and
records the returned ``sha256:HEX`` in its evidence; it never opens the store itself. The
monitoring reference and holdout samples are Parquet (:func:`frame_to_parquet`), read back
by the runner when a batch is monitored (:func:`frame_from_parquet`), and their categories are
compared as text (:func:`category_text`) on both sides. pandas and pyarrow load inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from assay.kernel.types import Run


def put_artifact(run: Run, data: bytes) -> str:
    """Store ``data`` with the run's artifacts; returns its digest (``sha256:HEX``), the key to record.

    .. versionadded:: 0.1
    """
    from assay.storage.store import ArtifactStore

    return ArtifactStore(run.settings.home).put_bytes(data)


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of ``frame`` (object columns of mixed types are stored as text).

    .. versionadded:: 0.1
    """
    import pyarrow as pa

    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except (pa.ArrowException, TypeError, ValueError):
        fixed = frame.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                fixed[col] = fixed[col].map(lambda v: v if v is None or v != v else str(v))
        buffer = io.BytesIO()
        fixed.to_parquet(buffer, index=False)
    return buffer.getvalue()


def frame_from_parquet(data: bytes) -> pd.DataFrame:
    """The table :func:`frame_to_parquet` wrote.

    A gap in a text column comes back as NaN, as it was written and as a CSV reads it (Parquet
    gives None, which scikit-learn's imputers and encoders take for a category of its own, so
    a model would score the rows read back differently).

    .. versionadded:: 0.1
    """
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(io.BytesIO(data))
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].isna().any():
            frame[col] = frame[col].where(frame[col].notna(), np.nan)
    return frame


def category_text(value: Any) -> str:
    """A category as text, with whole floats (1.0 from a CSV column with gaps) written as 1.

    .. versionadded:: 0.1
    """
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
