"""The tamper suite, on a real SQLite file and a real PostgreSQL schema: every case exits 1 naming
the first bad record; intact ledgers exit 0. Verification goes through the standalone verifier's
command line (``python -m assay.audit.verify``) in-process, plus the ``assay audit verify`` CLI.
(tests/audit/test_checkpoints.py covers attacks against checkpoints.)"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.audit import records
from assay.audit import verify as V
from assay.audit.format import key_id_of
from assay.audit.ledger import Ledger
from assay.storage.settings import Settings

from .conftest import run_assay
from .tamper_tools import Raw, forged_row, resign

N = 30  # records: 1 = key_added, 2..30 = run r1


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def verify_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case twice: checked in one process, and by two worker processes over 4-record ranges
    (so gaps, swaps and key changes fall inside and across the workers' ranges)."""
    if request.param == "parallel":
        monkeypatch.setattr(records, "CHUNK", 4)
        monkeypatch.setattr(records, "PARALLEL_MIN", 0)
        monkeypatch.setattr(V, "worker_count", lambda requested: 2)
    return str(request.param)


_OPENED: list[Ledger] = []


@pytest.fixture(autouse=True)
def close_ledgers(settings: Settings) -> Iterator[None]:
    """Close what a case built (settling the checkpoint it owes) while its database still exists."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def build(settings: Settings, n: int = N) -> Ledger:
    led = Ledger.open(settings)
    _OPENED.append(led)
    led.append("r1", "run_started", {"note": "hello"})
    led.append_many([("r1", "data", {"i": i, "note": "hello"}) for i in range(3, n)])
    led.append("r1", "run_finished", {"note": "hello"})
    assert led.size() == n
    return led


def verify_cli(capsys: pytest.CaptureFixture[str], url: str, home: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = V.main([url, "--json", "--trust", str(home / "keys" / "trust.json"), *extra])
    return code, json.loads(capsys.readouterr().out)


def attacker() -> tuple[Ed25519PrivateKey, str]:
    k = Ed25519PrivateKey.generate()
    return k, key_id_of(k.public_key().public_bytes_raw())


def expect_bad(capsys: pytest.CaptureFixture[str], url: str, home: Path, seq: int | None, words: str, *extra: str) -> None:
    code, out = verify_cli(capsys, url, home, *extra)
    assert code == 1, out
    assert out["ok"] is False
    assert out["first_bad_seq"] == seq, out
    assert words in out["reason"], out


def test_intact_ledger_verifies(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    led = build(settings)
    code, out = verify_cli(capsys, settings.db_url, settings.home)
    assert code == 0 and out["ok"] and out["size"] == N and out["checked"] == N
    cp = settings.home / "cp.note"
    cp.write_text(led.checkpoint())
    led.append_many([("r2", "data", {"i": i}) for i in range(7)])
    code, out = verify_cli(capsys, settings.db_url, settings.home, "--checkpoint", str(cp))
    assert code == 0 and out["mode"] == "full+checkpoint" and out["checked"] == N + 7 and out["size"] == N + 7, out
    code, full = verify_cli(capsys, settings.db_url, settings.home, "--checkpoint", str(cp), "--full")  # a no-op now
    assert code == 0 and full["root"] == out["root"] and full["mode"] == "full+checkpoint", full
    code, since = verify_cli(capsys, settings.db_url, settings.home, "--since-checkpoint", str(cp))
    assert code == 0 and since["mode"] == "since-checkpoint" and since["checked"] == N + 7, since
    assert since["root"] == out["root"] and since["trusted"].startswith(f"signatures of records 1..{N} "), since


def test_edit_payload_byte(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    body = bytes(raw.row(10)[8])
    assert b'"note":"hello"' in body
    raw.set(10, body=body.replace(b'"note":"hello"', b'"note":"jello"'))
    expect_bad(capsys, settings.db_url, settings.home, 10, "hash mismatch")


def test_edit_hash(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    h = bytearray(raw.row(10)[6])
    h[0] ^= 1
    raw.set(10, hash=bytes(h))
    expect_bad(capsys, settings.db_url, settings.home, 10, "hash mismatch")


def test_edit_signature(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    s = bytearray(raw.row(10)[7])
    s[5] ^= 0x40
    raw.set(10, signature=bytes(s))
    expect_bad(capsys, settings.db_url, settings.home, 10, "bad signature")


def test_delete_middle_record(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    raw.exec("DELETE FROM ledger_records WHERE seq = 10")
    expect_bad(capsys, settings.db_url, settings.home, 10, "gap")


def test_delete_tail_detected_with_checkpoint(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    led = build(settings)
    cp = settings.home / "cp.note"
    cp.write_text(led.checkpoint())
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    raw.exec("DELETE FROM ledger_records WHERE seq > 25")
    code, _ = verify_cli(capsys, settings.db_url, settings.home)
    assert code == 0  # a bare hash chain cannot notice a shorter tail …
    expect_bad(capsys, settings.db_url, settings.home, 26, "checkpoint commits to 30", "--checkpoint", str(cp))
    expect_bad(capsys, settings.db_url, settings.home, 26, "checkpoint commits to 30", "--since-checkpoint", str(cp))
    # … and the home's own checkpoint (written by led.checkpoint()) catches it with no file given.
    expect_bad(capsys, settings.db_url, settings.home, 26, "checkpoint commits to 30", "--home", str(settings.home))


def test_insert_forged_record(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    led = build(settings)
    key_id = led.signer().key_id
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    prev = bytes(raw.row(9)[6])
    raw.shift_from(10)
    evil, _ = attacker()
    raw.insert(forged_row(10, prev, evil, key_id))  # claims the home's key, signed by another
    expect_bad(capsys, settings.db_url, settings.home, 10, "bad signature")


def test_swap_two_records(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    a, b = raw.row(10), raw.row(11)
    cols = ("run_id", "kind", "time", "key_id", "prev_hash", "hash", "signature", "body")
    raw.set(10, **dict(zip(cols, b[1:], strict=True)))
    raw.set(11, **dict(zip(cols, a[1:], strict=True)))
    expect_bad(capsys, settings.db_url, settings.home, 10, "claims seq 11")


def test_resign_with_untrusted_key(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    evil, evil_id = attacker()
    resign(raw, N, evil, evil_id)
    expect_bad(capsys, settings.db_url, settings.home, N, "unknown key")


def test_resign_with_revoked_key(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    led = build(settings)
    second = Ed25519PrivateKey.generate()
    second_id = key_id_of(second.public_key().public_bytes_raw())
    added = led.add_key(second.public_key().public_bytes_raw(), name="ci")
    revoked = led.revoke_key(second_id, "laptop stolen")
    led.append_many([("r2", "data", {"i": i}) for i in range(5)])
    last = led.size()
    assert added.seq == N + 1 and revoked.seq == N + 2
    code, _ = verify_cli(capsys, settings.db_url, settings.home)
    assert code == 0
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    resign(raw, last, second, second_id)  # the thief signs with the revoked key
    expect_bad(capsys, settings.db_url, settings.home, last, "revoked at seq")


def test_splice_record_from_another_ledger(settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    build(settings)
    other = Settings(settings.home, f"sqlite:///{tmp_path / 'other.db'}")
    build(other)  # same signing key, different ledger: its records verify on their own
    donor = Raw(other.db_url).row(10)
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    cols = ("run_id", "kind", "time", "key_id", "prev_hash", "hash", "signature", "body")
    raw.set(10, **dict(zip(cols, donor[1:], strict=True)))
    expect_bad(capsys, settings.db_url, settings.home, 10, "chain broken")


def test_triggers_refuse_then_dropped_and_edited(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    build(settings)
    raw = Raw(settings.db_url)
    for sql in ("UPDATE ledger_records SET kind = 'x' WHERE seq = 12", "DELETE FROM ledger_records WHERE seq = 12"):
        with pytest.raises(Exception, match="append-only"):
            raw.exec(sql)
    if raw.pg:
        with pytest.raises(Exception, match="append-only"):
            raw.exec("TRUNCATE ledger_records")
    raw.drop_triggers()
    body = bytes(raw.row(12)[8])
    raw.set(12, body=body.replace(b'"i":12', b'"i":99'))
    expect_bad(capsys, settings.db_url, settings.home, 12, "hash mismatch")


def _backup(raw: Raw, url: str, dest: Path) -> None:
    if raw.pg:
        raw.exec("CREATE TABLE bak_records AS SELECT * FROM ledger_records")
        raw.exec("CREATE TABLE bak_nodes AS SELECT * FROM ledger_nodes")
    else:
        with sqlite3.connect(dest) as out:
            raw.conn.backup(out)


def _restore(raw: Raw, url: str, src: Path) -> None:
    raw.drop_triggers()
    if raw.pg:
        raw.exec("DELETE FROM ledger_records")
        raw.exec("DELETE FROM ledger_nodes")
        raw.exec("INSERT INTO ledger_records SELECT * FROM bak_records")
        raw.exec("INSERT INTO ledger_nodes SELECT * FROM bak_nodes")
    else:
        with sqlite3.connect(src) as backup:
            backup.backup(raw.conn)


def test_restore_older_copy_detected_with_checkpoint(settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    led = build(settings, 20)
    raw = Raw(settings.db_url)
    _backup(raw, settings.db_url, tmp_path / "backup.db")
    led.append_many([("r2", "data", {"i": i}) for i in range(10)])
    cp = settings.home / "cp.note"
    cp.write_text(led.checkpoint())
    _restore(raw, settings.db_url, tmp_path / "backup.db")
    code, _ = verify_cli(capsys, settings.db_url, settings.home)
    assert code == 0  # the old copy is internally consistent …
    expect_bad(capsys, settings.db_url, settings.home, 21, "older copy restored", "--checkpoint", str(cp))
    expect_bad(capsys, settings.db_url, settings.home, 21, "older copy restored", "--home", str(settings.home))
    # … and writing on top of the restored copy forks history: still caught.
    led.append_many([("r3", "data", {"i": i}) for i in range(15)])
    expect_bad(capsys, settings.db_url, settings.home, None, "different root", "--checkpoint", str(cp))
    expect_bad(capsys, settings.db_url, settings.home, None, "different root", "--since-checkpoint", str(cp))
    expect_bad(capsys, settings.db_url, settings.home, None, "different root", "--home", str(settings.home))


def test_assay_audit_verify_cli_names_first_bad_record(settings: Settings) -> None:
    build(settings)
    ok = run_assay("audit", "verify", "--json", home=settings.home, db=settings.db_url)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    s = bytearray(raw.row(7)[7])
    s[0] ^= 1
    raw.set(7, signature=bytes(s))
    bad = run_assay("audit", "verify", "--json", home=settings.home, db=settings.db_url)
    assert bad.returncode == 1
    out = json.loads(bad.stdout)
    assert out["first_bad_seq"] == 7 and "bad signature" in out["reason"]
    text = run_assay("audit", "verify", home=settings.home, db=settings.db_url)
    assert text.returncode == 1 and "record 7" in text.stderr and "Traceback" not in text.stderr
