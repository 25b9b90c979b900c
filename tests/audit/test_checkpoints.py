"""Checkpoints that hold: a full verify by default that also proves the home's newest checkpoint,
``--since-checkpoint`` that still recomputes every leaf, ``audit checkpoint`` that never signs over a
tampered ledger, and a checkpoint written by every command that appends.

Every attack edits the stored tables directly (sqlite3 / psycopg), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assay.audit import verify as V
from assay.audit.ledger import Ledger
from assay.audit.note import parse_checkpoint, parse_note
from assay.storage.settings import Settings

from .conftest import run_assay
from .tamper_tools import Raw

N = 30  # records in the checkpoint F: 1 = key_added, 2..30 = run r1
MORE = 5  # appended after F


@pytest.fixture
def opened(settings: Settings) -> Iterator[list[Ledger]]:
    """Ledgers a test opens; closed (so their owed checkpoint is settled) before the database goes."""
    ledgers: list[Ledger] = []
    yield ledgers
    for led in ledgers:
        led.close()


def cp_size(path: Path) -> int:
    return parse_checkpoint(parse_note(path.read_text(encoding="utf-8"))[0]).size


def build(settings: Settings, opened: list[Ledger], n: int = N) -> Ledger:
    led = Ledger.open(settings)
    opened.append(led)
    led.append("r1", "run_started", {"note": "hello"})
    led.append_many([("r1", "data", {"i": i, "note": "hello"}) for i in range(3, n)])
    led.append("r1", "run_finished", {"note": "hello"})
    assert led.size() == n
    return led


@pytest.fixture
def checkpointed(settings: Settings, opened: list[Ledger], tmp_path: Path) -> tuple[Ledger, Path]:
    """A ledger of N records checkpointed into file F, then MORE records; the home's checkpoint covers all."""
    led = build(settings, opened)
    f = tmp_path / "auditor.note"
    f.write_text(led.checkpoint())
    led.append_many([("r2", "data", {"i": i}) for i in range(MORE)])
    led.flush_checkpoint()
    assert cp_size(led.latest_checkpoint_path()) == N + MORE
    return led, f


def cli_json(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    res = run_assay("audit", "verify", "--json", *args, home=settings.home, db=settings.db_url)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def standalone(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    res = subprocess.run(
        [sys.executable, "-m", "assay.audit.verify", settings.db_url, "--json",
         "--trust", str(settings.home / "keys" / "trust.json"), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


# ------------------------------------------------------------------------------ attacks before F

COLS = ("run_id", "kind", "time", "key_id", "prev_hash", "hash", "signature", "body")


def edit_body(raw: Raw) -> None:
    body = bytes(raw.row(10)[8])
    assert b'"note":"hello"' in body
    raw.set(10, body=body.replace(b'"note":"hello"', b'"note":"jello"'))


def delete_one(raw: Raw) -> None:
    raw.exec("DELETE FROM ledger_records WHERE seq = 10")


def swap_two(raw: Raw) -> None:
    a, b = raw.row(10), raw.row(11)
    raw.set(10, **dict(zip(COLS, b[1:], strict=True)))
    raw.set(11, **dict(zip(COLS, a[1:], strict=True)))


ATTACKS: dict[str, tuple[Callable[[Raw], None], str]] = {
    "edit-body": (edit_body, "hash mismatch"),
    "delete-one": (delete_one, "gap"),
    "swap-two": (swap_two, "claims seq 11"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_tampering_before_the_checkpoint_is_found_by_every_verify(
    settings: Settings, checkpointed: tuple[Ledger, Path], attack: str
) -> None:
    led, f = checkpointed
    home_cp = led.latest_checkpoint_path()
    home_before = home_cp.read_bytes()
    tamper, words = ATTACKS[attack]
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    tamper(raw)
    raw.close()

    for args in (("--checkpoint", str(f)), ("--since-checkpoint", str(f)), ()):
        code, out = cli_json(settings, *args)
        assert code == 1, (args, out)
        assert out["ok"] is False and out["first_bad_seq"] == 10 and words in out["reason"], (args, out)
    code, out = standalone(settings, "--since-checkpoint", str(f))
    assert code == 1 and out["first_bad_seq"] == 10 and words in out["reason"], out

    out_file = settings.home / "new.note"
    made = run_assay("audit", "checkpoint", "--output", str(out_file), home=settings.home, db=settings.db_url)
    assert made.returncode == 1, made.stderr
    assert "refusing to checkpoint" in made.stderr and "record 10" in made.stderr, made.stderr
    assert not out_file.exists()
    assert home_cp.read_bytes() == home_before  # no new checkpoint in the home either


def test_since_checkpoint_recomputes_leaves_when_hash_is_rewritten_too(
    settings: Settings, opened: list[Ledger], tmp_path: Path
) -> None:
    """Rewriting a body and its stored hash (the signature cannot follow) before F: the skipped
    signature does not let it through, because the chain and the recomputed root still disagree."""
    from assay.audit.format import record_hash

    led = build(settings, opened)
    f = tmp_path / "auditor.note"
    f.write_text(led.checkpoint())
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    for seq in (10, N):  # one in the middle (the next record's link breaks), and F's last record
        row = raw.row(seq)
        body = bytes(row[8]).replace(b'"note":"hello"', b'"note":"jello"')
        raw.set(seq, body=body, hash=record_hash(bytes(row[5]), body))
    raw.close()
    code, out = cli_json(settings, "--since-checkpoint", str(f))
    assert code == 1 and out["first_bad_seq"] == 11 and "chain broken" in out["reason"], out
    assert any(e["seq"] is None and "different root" in e["reason"] for e in out["errors"]), out
    code, out = cli_json(settings)
    assert code == 1 and out["first_bad_seq"] == 10 and "bad signature" in out["reason"], out


def test_since_checkpoint_trusts_only_signatures_and_says_so(
    settings: Settings, opened: list[Ledger], tmp_path: Path
) -> None:
    led = build(settings, opened)
    f = tmp_path / "auditor.note"
    f.write_text(led.checkpoint())
    led.append_many([("r2", "data", {"i": i}) for i in range(MORE)])
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    sig = bytearray(raw.row(12)[7])
    sig[3] ^= 1
    raw.set(12, signature=bytes(sig))  # the body, hash and chain are intact: only the signature is wrong
    raw.close()
    code, out = cli_json(settings, "--since-checkpoint", str(f))
    assert code == 0, out
    assert out["mode"] == "since-checkpoint" and out["checked"] == N + MORE
    assert out["trusted"].startswith(f"signatures of records 1..{N} (checkpoint {f} signed by "), out
    assert str(f) in out["checkpoints"]
    text = run_assay("audit", "verify", "--since-checkpoint", str(f), home=settings.home, db=settings.db_url)
    assert text.returncode == 0 and f"trusted without re-checking: signatures of records 1..{N}" in text.stdout
    code, out = cli_json(settings, "--checkpoint", str(f))  # the full verification does not trust it
    assert code == 1 and out["first_bad_seq"] == 12 and "bad signature" in out["reason"], out


# ------------------------------------------------------------------------------ the home's checkpoint


def test_cut_tail_is_found_without_flags(settings: Settings, opened: list[Ledger]) -> None:
    led = build(settings, opened)
    led.flush_checkpoint()
    assert cp_size(led.latest_checkpoint_path()) == N
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    raw.exec("DELETE FROM ledger_records WHERE seq > 25")
    raw.exec("DELETE FROM ledger_nodes")
    raw.close()
    code, out = cli_json(settings)
    assert code == 1 and out["first_bad_seq"] == 26 and "tail deleted" in out["reason"], out
    assert out["checkpoints"] == [str(led.latest_checkpoint_path())]
    code, out = standalone(settings, "--home", str(settings.home))
    assert code == 1 and out["first_bad_seq"] == 26, out
    code, out = standalone(settings)  # without a checkpoint a bare chain cannot tell
    assert code == 0 and out["mode"] == "full" and out["checkpoints"] == [], out


def _backup(raw: Raw, dest: Path) -> None:
    if raw.pg:
        raw.exec("CREATE TABLE bak_records AS SELECT * FROM ledger_records")
        raw.exec("CREATE TABLE bak_nodes AS SELECT * FROM ledger_nodes")
    else:
        with sqlite3.connect(dest) as out:
            raw.conn.backup(out)


def _restore(raw: Raw, src: Path) -> None:
    raw.drop_triggers()
    if raw.pg:
        raw.exec("DELETE FROM ledger_records")
        raw.exec("DELETE FROM ledger_nodes")
        raw.exec("INSERT INTO ledger_records SELECT * FROM bak_records")
        raw.exec("INSERT INTO ledger_nodes SELECT * FROM bak_nodes")
    else:
        with sqlite3.connect(src) as backup:
            backup.backup(raw.conn)


def test_restored_older_copy_is_found_without_flags(
    settings: Settings, opened: list[Ledger], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    led = build(settings, opened, 20)
    led.flush_checkpoint()
    raw = Raw(settings.db_url)
    _backup(raw, tmp_path / "backup.db")
    led.append_many([("r2", "data", {"i": i}) for i in range(10)])
    led.flush_checkpoint()
    home_cp = led.latest_checkpoint_path()
    assert cp_size(home_cp) == 30
    kept = home_cp.read_bytes()
    _restore(raw, tmp_path / "backup.db")
    raw.close()
    code, out = cli_json(settings)
    assert code == 1 and out["first_bad_seq"] == 21 and "older copy restored" in out["reason"], out

    # Writing on top of the restored copy forks history: the next automatic checkpoint refuses …
    later = Ledger.open(settings)
    opened.append(later)
    later.append_many([("r3", "data", {"i": i}) for i in range(15)])
    capsys.readouterr()
    assert later.flush_checkpoint() is None
    assert "no checkpoint written" in capsys.readouterr().err
    assert home_cp.read_bytes() == kept
    # … and plain verify still says so, now from the root.
    code, out = cli_json(settings)
    assert code == 1 and any("different root" in e["reason"] for e in out["errors"]), out
    made = run_assay("audit", "checkpoint", home=settings.home, db=settings.db_url)
    assert made.returncode == 1 and "refusing to checkpoint" in made.stderr, made.stderr
    assert home_cp.read_bytes() == kept


def test_json_modes_and_checkpoints(settings: Settings, checkpointed: tuple[Ledger, Path]) -> None:
    led, f = checkpointed
    home_cp = str(led.latest_checkpoint_path())
    code, out = cli_json(settings)
    assert code == 0 and out["mode"] == "full+checkpoint" and out["checkpoints"] == [home_cp], out
    assert out["checked"] == out["size"] == N + MORE and out["trusted"] is None
    assert out["checkpoint_size"] == N + MORE
    code, out = cli_json(settings, "--checkpoint", str(f), "--full")  # --full is accepted and changes nothing
    assert code == 0 and out["mode"] == "full+checkpoint" and out["checkpoints"] == [str(f), home_cp], out
    assert out["checked"] == N + MORE
    code, out = cli_json(settings, "--since-checkpoint", str(f))
    assert code == 0 and out["mode"] == "since-checkpoint" and out["checkpoints"] == [str(f), home_cp], out
    code, out = standalone(settings, "--checkpoint", str(f))
    assert code == 0 and out["mode"] == "full+checkpoint" and out["checkpoints"] == [str(f)], out
    both = run_assay("audit", "verify", "--checkpoint", str(f), "--since-checkpoint", str(f),
                     home=settings.home, db=settings.db_url)
    assert both.returncode == 2 and "not both" in both.stderr
    assert led.verify().mode == "full+checkpoint"
    assert led.verify(home_checkpoint=False).mode == "full"


def test_damaged_home_checkpoint_is_bad_input_naming_it(settings: Settings, checkpointed: tuple[Ledger, Path]) -> None:
    led, _ = checkpointed
    path = led.latest_checkpoint_path()
    path.write_text(path.read_text().replace(f"\n{N + MORE}\n", "\nlots\n"))
    res = run_assay("audit", "verify", home=settings.home, db=settings.db_url)
    assert res.returncode == 2 and str(path) in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_checkpoint_has_no_escape_hatch(settings: Settings, opened: list[Ledger]) -> None:
    build(settings, opened)
    res = run_assay("audit", "checkpoint", "--no-verify", home=settings.home, db=settings.db_url)
    assert res.returncode == 2 and "no-verify" in res.stderr


# ------------------------------------------------------------------------------ automatic checkpoints


def test_every_appending_command_leaves_a_checkpoint(settings: Settings, opened: list[Ledger]) -> None:
    led = Ledger.open(settings)
    led.append_many([("r1", "data", {"i": i}) for i in range(12)])
    led.close()  # the Ledger API: at close
    path = led.latest_checkpoint_path()
    assert cp_size(path) == 13
    assert V.verify_ledger(settings.db_url, checkpoint=path, trust=settings.home / "keys" / "trust.json").ok

    rotated = run_assay("keys", "rotate", "--json", home=settings.home, db=settings.db_url)  # a CLI command: at exit
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["seq"] == 14
    assert cp_size(path) == 14

    script = (  # a process that appends and never closes: at interpreter exit
        "import sys; from pathlib import Path; from assay.audit.ledger import Ledger; from assay.storage.settings import Settings; "
        "led = Ledger.open(Settings(Path(sys.argv[1]), sys.argv[2])); "
        "led.append_many([('r2', 'data', {'i': i}) for i in range(7)])"
    )
    res = subprocess.run([sys.executable, "-c", script, str(settings.home), settings.db_url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert cp_size(path) == 21
    again = Ledger.open(settings)
    opened.append(again)
    assert again.size() == 21
    code, out = cli_json(settings)
    assert code == 0 and out["checkpoint_size"] == 21, out


def test_runner_ledger_checkpoints_once_per_run(settings: Settings) -> None:
    from assay.audit.plugin import LedgerRecorder

    plugin = LedgerRecorder()
    run = SimpleNamespace(run_id="run-1", settings=settings)
    for kind in ("run_started", "data", "metrics", "run_finished"):
        plugin.record(run=run, event=SimpleNamespace(kind=kind, payload={"k": kind}))
    led = plugin.ledger_for(settings)
    path = led.latest_checkpoint_path()
    assert not path.exists()  # nothing per record
    plugin.run_finished(run=run)
    assert cp_size(path) == led.size() == 5
    failed = SimpleNamespace(run_id="run-2", settings=settings)
    plugin.record(run=failed, event=SimpleNamespace(kind="run_failed", payload={"stage": "data"}))
    plugin.run_failed(run=failed)
    assert cp_size(path) == 6
    led.close()


def test_automatic_checkpoint_never_signs_over_tampered_new_records(
    settings: Settings, opened: list[Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    led = build(settings, opened)
    led.flush_checkpoint()
    path = led.latest_checkpoint_path()
    kept = path.read_bytes()
    led.append_many([("r2", "data", {"i": i, "note": "hello"}) for i in range(MORE)])
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    body = bytes(raw.row(N + 2)[8])
    raw.set(N + 2, body=body.replace(b'"note":"hello"', b'"note":"jello"'))
    raw.close()
    capsys.readouterr()
    led.close()  # never raises: it warns
    err = capsys.readouterr().err
    assert "no checkpoint written" in err and f"record {N + 2}" in err, err
    assert path.read_bytes() == kept


def test_automatic_checkpoint_never_signs_over_a_rewritten_old_part(
    settings: Settings, opened: list[Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    """Rewrite record 10's hash and, consistently, the stored tree above it: the old part no longer
    proves equal to the home's checkpoint, so the next automatic checkpoint is refused."""
    from assay.audit.merkle import leaf_hash, root_from_leaves

    led = build(settings, opened)
    led.flush_checkpoint()
    path = led.latest_checkpoint_path()
    kept = path.read_bytes()
    raw = Raw(settings.db_url)
    raw.drop_triggers()
    raw.set(10, hash=bytes(32))
    leaves = [leaf_hash(bytes(h)) for (h,) in raw.rows("SELECT hash FROM ledger_records ORDER BY seq")]
    for level, idx in raw.rows("SELECT level, idx FROM ledger_nodes"):
        node = root_from_leaves(leaves[idx << level : (idx + 1) << level])
        raw.exec("UPDATE ledger_nodes SET hash = ? WHERE level = ? AND idx = ?", (node, level, idx))
    raw.close()
    led.append("r2", "data", {"i": 1})
    capsys.readouterr()
    assert led.flush_checkpoint() is None
    assert "no checkpoint written" in capsys.readouterr().err
    assert path.read_bytes() == kept
