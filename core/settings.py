"""Where assay keeps its state: the home directory and the database URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
