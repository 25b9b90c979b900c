"""Concurrent writers never fork the chain; a writer killed with SIGKILL never corrupts it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from assay.audit import verify as V
from assay.audit.ledger import Ledger
from assay.storage.settings import Settings

WRITERS, PER_WRITER = 8, 250

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from assay.audit.ledger import Ledger
    from assay.storage.settings import Settings
    home, url, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    led = Ledger.open(Settings(Path(home), url))
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(count):
        led.append(name, "data", {"writer": name, "i": i})
    """
)

_CRASHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from assay.audit.ledger import Ledger
    from assay.storage.settings import Settings
    home, url, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    led = Ledger.open(Settings(Path(home), url))
    n = 0
    while True:
        run = f"{tag}-{n}"
        led.append(run, "run_started", {"n": n})
        if n == 0:
            print("ready", flush=True)
        for i in range(20):
            led.append(run, "check", {"i": i, "status": "pass"})
        led.append_many([(run, "metrics", {"i": i, "auc": 0.9}) for i in range(100)])
        led.append(run, "run_finished", {"n": n})
        n += 1
    """
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("ASSAY_SIGNING_KEY", "ASSAY_KEY_PASSPHRASE")}


def test_concurrent_writers_one_chain(settings: Settings) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(settings.home), settings.db_url, f"w{i}", str(PER_WRITER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )
        for i in range(WRITERS)
    ]
    for p in procs:  # all opened (and raced to create the home's key) before any appends
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    report = V.verify_ledger(settings.db_url, trust=settings.home / "keys" / "trust.json")
    assert report.ok, report.to_json()
    led = Ledger.open(settings)
    records = led.records()
    assert [r.kind for r in records].count("key_added") == 1  # one key, introduced once
    data = [r for r in records if r.kind == "data"]
    assert len(data) == WRITERS * PER_WRITER
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    for w in range(WRITERS):  # each writer's appends are in its own order
        assert [r.payload["i"] for r in data if r.payload["writer"] == f"w{w}"] == list(range(PER_WRITER))
    assert len(list((settings.home / "keys").glob("*.key"))) == 1


def test_sigkill_mid_append_never_breaks_the_ledger(settings: Settings) -> None:
    rng = random.Random(20240613)
    trust = settings.home / "keys" / "trust.json"
    incomplete_seen = 0
    kills = 20 if settings.db_url.startswith("sqlite") else 10
    for k in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CRASHER, str(settings.home), settings.db_url, f"k{k}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(),
        )
        if k == 0:  # the first kill lands during start-up, database or key creation
            time.sleep(rng.uniform(0.05, 0.5))
        else:  # the others at a random point once the writer is appending
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not (settings.home / "keys" / "active").exists() and settings.db_url.startswith("sqlite"):
            assert k == 0  # killed before anything was written
            continue
        # Verify what is new since the last kill (incrementally from the previous checkpoint); the
        # checkpoint refuses (Finding) unless the ledger verifies.
        led = Ledger.open(settings)
        note = led.checkpoint()
        assert note.split("\n")[1] == str(led.size())
        runs = {r["run_id"]: r for r in led.runs()}
        mine = sorted((r for r in runs.values() if r["run_id"].startswith(f"k{k}-")), key=lambda r: r["first_seq"])
        for r in mine[:-1]:
            assert r["status"] == "finished", r
        if mine and mine[-1]["status"] == "incomplete":
            assert mine[-1]["complete"] is False
            incomplete_seen += 1
    report = V.verify_ledger(settings.db_url, trust=trust)
    assert report.ok and report.checked == report.size, report.to_json()
    assert incomplete_seen >= (kills - 1) // 2, f"only {incomplete_seen} of {kills} kills interrupted a run"
