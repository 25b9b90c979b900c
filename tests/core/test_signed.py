"""The verified-ledger reader keeps to what verification covered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from assay.audit.ledger import Ledger
from assay.errors import Finding
from assay.storage.settings import Settings
from assay.storage.signed import SignedLedger, _verified_prefix


def test_records_appended_after_verification_are_left_out_and_altered_ones_refused(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'assay.db'}")
    ledger = Ledger.open(settings)
    ledger.append_many([("r1", "data", {"i": i}) for i in range(5)])
    report = ledger.verify()
    assert report.ok
    ledger.append("r1", "verdict", {"decision": "pass"})  # lands between verify and read
    records = ledger.records()
    ledger.close()
    kept = _verified_prefix(records, report)
    assert len(kept) == report.size == len(records) - 1 and all(r.kind != "verdict" for r in kept)
    altered = [*records[:2], dataclasses.replace(records[2], body=records[2].body.replace(b'"i":1', b'"i":9')),
               *records[3:]]
    with pytest.raises(Finding, match="changed while it was being read"):
        _verified_prefix(altered, report)
    with pytest.raises(Finding, match="disappeared"):
        _verified_prefix(records[:3], report)
    assert len(SignedLedger.open(settings).records) == len(records)
