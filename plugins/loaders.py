"""Data loaders (``load_data``): CSV, Parquet, and SQL queries through a SQLAlchemy URL.

Reading the raw table (:func:`assay.kit.read_table`) and turning it into a fingerprinted
:class:`Dataset` (:func:`assay.kit.prepare_frame`: unique, stripped column names, a fresh
0..n-1 index, ISO-8601 text parsed as datetimes, ``data.roles`` applied, rows without a target
dropped and counted, the task inferred, every column given a role, ``data.dedupe``) are the
public kit's, so a third-party loader builds its dataset exactly as this one does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import hookimpl
from assay.kit import DEDUPED_ATTR, DROPPED_ATTR, FILE_SUFFIXES, is_url, prepare_frame, read_table, redact_url

if TYPE_CHECKING:
    from assay import Check, Dataset, Evidence, Run
    from assay.kit import RunSpec


def load_table(spec: RunSpec, source: str, base_dir: str, field: str = "data.source", name: str = "data") -> Dataset:
    """Read and prepare ``source`` as the run's loader would (for a second table).

    The dataset's ``source`` (what evidence and messages show) is the URL without its password.
    """
    return prepare_frame(read_table(source, base_dir, spec.data.query, field, spec.data.sep), spec,
                         redact_url(source), name)


@hookimpl
def load_data(spec: RunSpec, source: str, base_dir: str) -> Dataset | None:
    if not is_url(source) and not source.lower().endswith(FILE_SUFFIXES):
        return None
    is_target = bool(spec.data.target_domain) and source == spec.data.target_domain
    field = "data.target_domain" if is_target else "data.source"
    return load_table(spec, source, base_dir, field, "target_domain" if is_target else "data")


@hookimpl
def validate_data(run: Run, dataset: Dataset) -> list[Check | Evidence]:
    """Record what loading did to the table: rows dropped for a missing target, and by ``data.dedupe``."""
    from assay import Evidence

    dropped: Any = dataset.frame.attrs.get(DROPPED_ATTR, 0)
    done: dict[str, Any] = {"rows_without_target": int(dropped)}
    if DEDUPED_ATTR in dataset.frame.attrs:  # data.dedupe was on for this table
        done["deduplicated"] = {"rows_dropped": int(dataset.frame.attrs[DEDUPED_ATTR]),
                                "compared": "rows equal to an earlier row in every column but ids"}
    return [Evidence("data", done)]
