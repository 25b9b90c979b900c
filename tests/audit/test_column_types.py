"""SQLite lets whoever edits the database change a column's type. A binary column turned into text
or a number is a finding at that record (exit 1, the record named), never a verifier that fails; a body
cast to text with its bytes unchanged still verifies, since what was signed is intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assay.audit import verify as V
from assay.audit.ledger import Ledger
from assay.storage.settings import Settings

from .tamper_tools import Raw


@pytest.fixture
def ledger_db(tmp_path: Path) -> tuple[Settings, Raw]:
    home = tmp_path / "home"
    settings = Settings(home, f"sqlite:///{home / 'assay.db'}")
    ledger = Ledger.open(settings)
    ledger.append_many([("r1", "data", {"i": i, "note": "hello"}) for i in range(20)])
    ledger.close()
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    return settings, raw


def _verify(settings: Settings, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = V.main([settings.db_url, "--json", "--trust", str(settings.home / "keys" / "trust.json"), *extra])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("column", "value", "words"), [
    ("body", "CAST(replace(CAST(body AS TEXT), '\"note\":\"hello\"', '\"note\":\"jello\"') AS TEXT)", "hash mismatch"),
    ("hash", "hex(hash)", "hash mismatch"),
    ("signature", "hex(signature)", "bad signature"),
    ("prev_hash", "hex(prev_hash)", "chain broken"),
    ("key_id", "hex(key_id)", "unknown key"),
])
def test_a_binary_column_turned_text_is_a_finding(ledger_db: tuple[Settings, Raw], capsys: pytest.CaptureFixture[str],
                                                  column: str, value: str, words: str) -> None:
    settings, raw = ledger_db
    raw.exec(f"UPDATE ledger_records SET {column} = {value} WHERE seq = 9")
    assert raw.rows(f"SELECT typeof({column}) FROM ledger_records WHERE seq = 9") == [("text",)]
    raw.close()
    code, out = _verify(settings, capsys)
    assert code == 1 and out["ok"] is False and out["first_bad_seq"] == 9, out
    assert words in out["reason"], out


def test_a_number_in_place_of_the_body_is_a_finding(ledger_db: tuple[Settings, Raw],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    settings, raw = ledger_db
    raw.exec("UPDATE ledger_records SET body = 42 WHERE seq = 4")
    assert raw.rows("SELECT typeof(body) FROM ledger_records WHERE seq = 4") == [("integer",)]
    raw.close()
    code, out = _verify(settings, capsys)
    assert code == 1 and out["first_bad_seq"] == 4 and out["reason"] == "record body is not valid JSON", out


def test_a_body_cast_to_text_with_its_bytes_unchanged_still_verifies(
        ledger_db: tuple[Settings, Raw], capsys: pytest.CaptureFixture[str]) -> None:
    settings, raw = ledger_db
    raw.exec("UPDATE ledger_records SET body = CAST(body AS TEXT) WHERE seq = 12")
    assert raw.rows("SELECT typeof(body) FROM ledger_records WHERE seq = 12") == [("text",)]
    raw.close()
    code, out = _verify(settings, capsys)
    assert code == 0 and out["ok"] is True and out["checked"] == 21, out
