"""Where assay keeps its state: the home directory and the database URL.

Also the one place core code hides secrets: :func:`redact_url` for a URL or a message quoting one,
:func:`redact_secrets` for a whole record, evidence document or spec before it is stored or shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Resolved global options: ``--home`` / ``ASSAY_HOME`` and ``--db`` / ``ASSAY_DB_URL``."""

    home: Path
    db_url: str

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None, db_url: str | None = None) -> Settings:
        home_path = Path(home or os.environ.get("ASSAY_HOME") or ".assay").expanduser().absolute()
        url = db_url or os.environ.get("ASSAY_DB_URL") or f"sqlite:///{home_path / 'assay.db'}"
        return cls(home=home_path, db_url=url)

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def shown_db_url(self) -> str:
        """The database URL as messages may show it (no password)."""
        return redact_url(self.db_url)


def redact_url(text: str) -> str:
    """``text`` with the password of each URL in it replaced by ``***``.

    A whole SQLAlchemy URL is rendered by SQLAlchemy (``hide_password``), with secrets passed as
    query parameters hidden too; anything it cannot parse (an error message quoting a URL, a
    malformed URL) goes through the ledger verifier's standard-library redactor. A URL without a
    secret comes back exactly as given.
    """
    if "://" not in text:
        return text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from assay.audit.verify import SECRET_QUERY_KEYS, redact

    try:
        url = make_url(text)
    except (ArgumentError, ValueError, TypeError):
        return redact(text)
    secret_keys = [k for k in url.query if k.lower() in SECRET_QUERY_KEYS]
    if url.password is None and not secret_keys:
        return text
    if secret_keys:
        url = url.update_query_dict(dict.fromkeys(secret_keys, "***"))
    return url.render_as_string(hide_password=True)


def redact_secrets(value: Any) -> Any:
    """A JSON-like value with :func:`redact_url` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {redact_secrets(k): redact_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value
