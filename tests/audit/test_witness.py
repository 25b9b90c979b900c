"""The witness (C2SP tlog-witness): the real server under uvicorn, the CLI, and attacks by a key holder.

Every HTTP test talks to ``assay witness serve`` running in a subprocess on a loopback port. The
attacks are a key holder's: a second ledger built under the same ledger id and signing key, with
one record changed, offered to the witness and to ``assay audit verify --witness-key``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.audit import witness as w
from assay.audit.keys import KeyStore
from assay.audit.ledger import Ledger
from assay.audit.merkle import consistency_proof, subtree_hash
from assay.audit.note import EM_DASH, Checkpoint, parse_note, sign_checkpoint, verify_note
from assay.audit.verify import Source
from assay.errors import BadInput
from assay.storage.settings import Settings
from tests.audit.conftest import run_assay

# ------------------------------------------------------------------------------------ helpers


def assay(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``python -m assay --home H ARGS…`` (the witness commands need no --db)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ASSAY_SIGNING_KEY", "ASSAY_KEY_PASSPHRASE", "ASSAY_HOME")}
    return subprocess.run([sys.executable, "-m", "assay", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WitnessServer:
    home: Path
    url: str
    vkey: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def name(self) -> str:
        return self.vkey.split("+")[0]

    def add_log(self, vkey: str) -> None:
        proc = assay("witness", "add-log", vkey, home=self.home)
        assert proc.returncode == 0, proc.stderr

    def post(self, body: bytes) -> tuple[int, str, str]:
        return post(self.url, body)


def post(url: str, body: bytes, conn: http.client.HTTPConnection | None = None) -> tuple[int, str, str]:
    parsed = urllib.parse.urlsplit(url)
    own = conn is None
    conn = conn or http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request("POST", "/add-checkpoint", body=body)
        resp = conn.getresponse()
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    finally:
        if own:
            conn.close()


def start_server(home: Path, name: str | None = None, init: bool = True) -> WitnessServer:
    if init:
        proc = assay("witness", "init", *(["--name", name] if name else []), home=home)
        assert proc.returncode == 0, proc.stderr
    vkey = assay("witness", "vkey", home=home).stdout.strip()
    for _attempt in range(3):
        port = free_port()
        log = home / f"serve-{port}.log"
        with log.open("wb") as out:
            p = subprocess.Popen(
                [sys.executable, "-m", "assay", "--home", str(home), "witness", "serve", "--listen", f"127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return WitnessServer(home, f"http://127.0.0.1:{port}", vkey, p, log)
            except OSError:
                time.sleep(0.1)
        stop_server(p)
    raise AssertionError(f"witness serve did not start: {log.read_text()[-2000:]}")


def stop_server(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WitnessServer]:
    """One real witness (``assay witness serve`` under uvicorn) for the module; each test uses its own log."""
    srv = start_server(tmp_path_factory.mktemp("witness") / "w", name="witness.test/w1")
    yield srv
    stop_server(srv.proc)


@pytest.fixture
def extra_servers() -> Iterator[list[WitnessServer]]:
    """More witness processes a test starts; all stopped afterwards."""
    started: list[WitnessServer] = []
    yield started
    for s in started:
        stop_server(s.proc)


@dataclass
class LedgerHome:
    home: Path
    db: str
    ledger: Ledger

    @property
    def origin(self) -> str:
        return self.ledger.origin

    @property
    def vkey(self) -> str:
        return w.format_vkey(self.origin, w.NOTE_ALG, self.key.public_raw)

    @property
    def key(self) -> Any:
        return KeyStore(self.home).active(create=False)

    def append(self, n: int, start: int = 0, run_id: str = "run-1") -> None:
        for i in range(start, start + n):
            self.ledger.append(run_id, "payment", {"n": i, "amount": 100})

    def sign(self, size: int, root: bytes | None = None) -> str:
        """A checkpoint of the ledger's first ``size`` records, signed by the genuine key."""
        src = Source(self.db)
        try:
            real = subtree_hash(0, size, src.stored_node) if size else hashlib.sha256(b"").digest()
        finally:
            src.close()
        cp = Checkpoint(self.origin, size, root if root is not None else real)
        return sign_checkpoint(cp, self.origin, self.key.private)

    def proof(self, old: int, size: int) -> list[bytes]:
        if old in (0, size):
            return []
        src = Source(self.db)
        try:
            return consistency_proof(old, size, src.stored_node)
        finally:
            src.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_assay(*args, home=self.home, db=self.db)

    @property
    def witnessed_note(self) -> Path:
        return w.witnessed_note_path(self.home, self.ledger.ledger_id)


def make_ledger(home: Path, db: str | None = None, records: int = 3) -> LedgerHome:
    db = db or f"sqlite:///{home / 'assay.db'}"
    led = Ledger.open(Settings(home, db))
    led.register_key()
    lh = LedgerHome(home, db, led)
    lh.append(records)
    return lh


# ------------------------------------------------------------------------- status codes


def test_add_checkpoint_status_codes(server: WitnessServer, tmp_path: Path) -> None:
    lh = make_ledger(tmp_path / "home", records=3)
    server.add_log(lh.vkey)
    size = lh.ledger.size()

    # 400: malformed bodies, and an old size beyond the checkpoint's
    for body in (b"", b"hello\n", b"old 01\n\n" + lh.sign(size).encode(), b"old 0\nnot-base64!\n\n" + lh.sign(size).encode(),
                 b"old 0\n\n" + lh.sign(size).encode().replace(b"\n\n", b"\n"), b"\xff\xfe"):
        status, _, text = server.post(body)
        assert status == 400, (body, text)
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(size), size + 1, []))
    assert status == 400 and "larger than the checkpoint size" in text

    # 404: a log this witness does not witness
    other = make_ledger(tmp_path / "other", records=1)
    status, _, text = server.post(w.format_add_checkpoint(other.sign(other.ledger.size()), 0, []))
    assert status == 404 and other.origin in text

    # 403: the right origin signed by a key the witness does not trust; a trusted key's signature altered
    stranger = Ed25519PrivateKey.generate()
    forged = sign_checkpoint(Checkpoint(lh.origin, size, bytes(32)), lh.origin, stranger)
    status, _, text = server.post(w.format_add_checkpoint(forged, 0, []))
    assert status == 403 and "no signature" in text
    genuine = lh.sign(size)
    body, sigs = parse_note(genuine)
    blob = bytearray(sigs[0].key_hash + sigs[0].signature)
    blob[10] ^= 1
    altered = f"{body}\n{EM_DASH} {lh.origin} {base64.b64encode(bytes(blob)).decode()}\n"
    status, _, text = server.post(w.format_add_checkpoint(altered, 0, []))
    assert status == 403 and "does not verify" in text

    # 200: the first checkpoint, from old size 0; the reply is one cosignature by this witness
    status, ctype, text = server.post(w.format_add_checkpoint(genuine, 0, []))
    assert status == 200, text
    assert text.startswith(f"{EM_DASH} witness.test/w1 ") and text.endswith("\n") and text.count("\n") == 1
    assert w.witness_problems(genuine + text, [server.vkey], 1, size) == []

    # 409: a stale old size; the body is the stored size, typed text/x.tlog.size
    lh.append(4, start=10)
    size2 = lh.ledger.size()
    status, ctype, text = server.post(w.format_add_checkpoint(lh.sign(size2), 0, []))
    assert (status, ctype, text) == (409, "text/x.tlog.size", f"{size}\n")

    # 422: a proof that does not lead to the new root; an equal size with another root
    bad = [hashlib.sha256(p).digest() for p in lh.proof(size, size2)]
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(size2), size, bad))
    assert status == 422 and "does not verify" in text
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(size2), size, []))
    assert status == 422
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(size, root=bytes(range(32))), size, []))
    assert status == 422 and "two histories" in text

    # and the honest extension is cosigned: 200, and the witness now holds size2
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(size2), size, lh.proof(size, size2)))
    assert status == 200, text
    status, ctype, text = server.post(w.format_add_checkpoint(lh.sign(size2), size, lh.proof(size, size2)))
    assert (status, text) == (409, f"{size2}\n")

    # the witness kept the inconsistent (validly signed) requests as evidence, and serves the latest
    logs = json.loads(assay("witness", "logs", "--json", home=server.home).stdout)["logs"]
    mine = next(log for log in logs if log["origin"] == lh.origin)
    assert mine["size"] == size2 and mine["inconsistent_requests"] == 3
    parsed = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("GET", f"/{hashlib.sha256(lh.origin.encode()).hexdigest()}/checkpoint")
    resp = conn.getresponse()
    latest = resp.read().decode()
    assert resp.status == 200
    assert w.witness_problems(latest, [server.vkey], 1, size2) == []
    verify_note(latest, [(lh.origin, lh.key.public_raw)])
    conn.request("GET", f"/{hashlib.sha256(b'nobody').hexdigest()}/checkpoint")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    conn.close()


def test_size_zero_checkpoint_needs_the_empty_root(server: WitnessServer, tmp_path: Path) -> None:
    lh = make_ledger(tmp_path / "home", records=1)
    server.add_log(lh.vkey)
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(0, root=bytes(32)), 0, []))
    assert status == 422 and "empty tree" in text
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(0), 0, []))
    assert status == 200
    status, _, text = server.post(w.format_add_checkpoint(lh.sign(1), 0, [bytes(32)]))
    assert status == 422 and "must be empty" in text


# -------------------------------------------------------------------------------- the race


def test_racing_requests_from_one_old_size_cannot_both_win(
    server: WitnessServer, extra_servers: list[WitnessServer], tmp_path: Path
) -> None:
    lh = make_ledger(tmp_path / "home", records=4)
    server.add_log(lh.vkey)
    base = lh.ledger.size()
    assert server.post(w.format_add_checkpoint(lh.sign(base), 0, []))[0] == 200
    lh.append(16, start=100)
    # A second server process on the same witness home: the database, not a process lock, decides.
    extra_servers.append(start_server(server.home, init=False))
    urls = [server.url, extra_servers[0].url]
    bodies = [w.format_add_checkpoint(lh.sign(base + k), base, lh.proof(base, base + k)) for k in range(1, 17)]
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[int, str, str, int]] = []
    lock = threading.Lock()

    def racer(i: int) -> None:
        parsed = urllib.parse.urlsplit(urls[i % 2])
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        conn.connect()
        barrier.wait()
        status, ctype, text = post(urls[i % 2], bodies[i], conn)
        conn.close()
        with lock:
            results.append((status, ctype, text, base + i + 1))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == len(bodies)
    winners = [r for r in results if r[0] == 200]
    assert len(winners) == 1, sorted(r[:1] for r in results)
    won = winners[0][3]
    assert sorted(r[:3] for r in results if r[0] != 200) == [(409, "text/x.tlog.size", f"{won}\n")] * (len(bodies) - 1)
    logs = json.loads(assay("witness", "logs", "--json", home=server.home).stdout)["logs"]
    assert next(log for log in logs if log["origin"] == lh.origin)["size"] == won


# ---------------------------------------------------------- a key holder shows two histories


def _rewrite(genuine: LedgerHome, home: Path, records: int) -> LedgerHome:
    """A second ledger under the genuine ledger id and signing key, whose first payment differs."""
    home.mkdir(parents=True)
    shutil.copytree(genuine.home / "keys", home / "keys")
    db = f"sqlite:///{home / 'assay.db'}"
    Ledger.open(Settings(home, db)).close()
    with sqlite3.connect(home / "assay.db") as conn:
        conn.execute("UPDATE ledger_meta SET value = ? WHERE name = 'ledger_id'", (genuine.ledger.ledger_id,))
    led = Ledger.open(Settings(home, db))
    assert led.ledger_id == genuine.ledger.ledger_id and led.signer().key_id == genuine.key.key_id
    led.append("run-1", "payment", {"n": 0, "amount": 1})  # the rewritten record
    fake = LedgerHome(home, db, led)
    fake.append(records - 1, start=1)
    return fake


def test_full_history_rewrite_with_the_genuine_key_is_refused(server: WitnessServer, tmp_path: Path) -> None:
    genuine = make_ledger(tmp_path / "genuine", records=5)
    server.add_log(genuine.vkey)
    proc = genuine.cli("audit", "checkpoint", "--witness", server.url)
    assert proc.returncode == 0, proc.stderr
    size = genuine.ledger.size()

    fake = _rewrite(genuine, tmp_path / "fake", records=5)
    assert fake.ledger.size() == size and fake.vkey == genuine.vkey and fake.origin == genuine.origin
    assert subtree_hash(0, size, Source(fake.db).stored_node) != subtree_hash(0, size, Source(genuine.db).stored_node)
    # The rewritten ledger verifies on its own: only a witness can tell the two apart.
    assert fake.cli("audit", "verify").returncode == 0

    # Same size, other root: the witness refuses (422), and so does `audit checkpoint --witness`.
    proc = fake.cli("audit", "checkpoint", "--witness", server.url)
    assert proc.returncode == 1, proc.stderr
    assert server.url in proc.stderr and "422" in proc.stderr and "not an extension" in proc.stderr
    assert not fake.witnessed_note.exists()
    # Longer than the witnessed one: no consistency proof exists from the witnessed tree (422).
    fake.append(3, start=50)
    status, _, text = server.post(w.format_add_checkpoint(fake.sign(size + 3), size, fake.proof(size, size + 3)))
    assert status == 422 and "does not verify" in text
    proc = fake.cli("audit", "checkpoint", "--witness", server.url)
    assert proc.returncode == 1 and "422" in proc.stderr

    # And an auditor who trusts this witness rejects the rewritten ledger, whatever checkpoint it is shown.
    proc = fake.cli("audit", "verify", "--witness-key", server.vkey)
    assert proc.returncode == 1 and "no witnessed checkpoint" in proc.stderr
    proc = fake.cli("audit", "verify", "--witness-key", server.vkey, "--checkpoint", str(genuine.witnessed_note))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    own = tmp_path / "fake-own.note"
    own.write_text(fake.sign(size + 3))
    proc = fake.cli("audit", "verify", "--witness-key", server.vkey, "--checkpoint", str(own))
    assert proc.returncode == 1 and "cosigned by 0 of the 1" in proc.stdout + proc.stderr
    # Moving the genuine cosignature line onto the rewritten checkpoint of the same size does not help.
    cosig = [line for line in genuine.witnessed_note.read_text().splitlines() if line.startswith(f"{EM_DASH} {server.name} ")]
    spliced = tmp_path / "spliced.note"
    spliced.write_text(fake.sign(size) + cosig[0] + "\n")
    proc = fake.cli("audit", "verify", "--witness-key", server.vkey, "--checkpoint", str(spliced), "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["ok"] is False and any("does not verify" in p for p in out["witness"]["problems"])

    # The genuine ledger still verifies against its witnessed checkpoint.
    proc = genuine.cli("audit", "verify", "--witness-key", server.vkey)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ honest path


def test_honest_path_checkpoint_then_verify(server: WitnessServer, backend_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run_assay("keys", "init", home=home, db=backend_url)
    assert proc.returncode == 0, proc.stderr
    lh = make_ledger(home, backend_url, records=3)
    vkey = lh.cli("keys", "vkey").stdout.strip()
    assert vkey == lh.vkey and w.parse_vkey(vkey, w.NOTE_ALG).name == f"assay.ledger/{lh.ledger.ledger_id}"
    assert json.loads(lh.cli("keys", "vkey", "--json").stdout) == {"vkey": vkey, "origin": lh.origin}
    server.add_log(vkey)

    proc = lh.cli("audit", "checkpoint", "--witness", server.url)
    assert proc.returncode == 0, proc.stderr
    witnessed = lh.witnessed_note.read_text()
    assert proc.stdout == witnessed and f"\n{EM_DASH} {server.name} " in witnessed
    proc = lh.cli("audit", "verify", "--witness-key", server.vkey)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cosigned by 1 of 1 trusted witness(es)" in proc.stdout

    # It grows: the next checkpoint goes from the witnessed size with a proof.
    lh.append(5, start=10)
    proc = lh.cli("audit", "checkpoint", "--witness", server.url)
    assert proc.returncode == 0, proc.stderr
    # The home lost its witnessed note: the witness's 409 names its size and the retry carries the proof.
    lh.witnessed_note.unlink()
    lh.append(2, start=20)
    proc = lh.cli("audit", "checkpoint", "--witness", server.url, "--output", str(tmp_path / "cp.note"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cp.note").read_text() == lh.witnessed_note.read_text()

    keyfile = tmp_path / "witnesses.txt"
    keyfile.write_text(f"# trusted witnesses\n\n{server.vkey}\n")
    proc = lh.cli("audit", "verify", "--witness-key", str(keyfile), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["witness"]["ok"] is True
    assert out["witness"]["checkpoint_size"] == lh.ledger.size()
    assert [c["vkey"] for c in out["witness"]["cosigned_by"]] == [server.vkey]

    # Input errors are exit 2; a witness this checkpoint does not carry is exit 1.
    assert lh.cli("audit", "verify", "--witness-key", server.vkey, "--quorum", "2").returncode == 2
    assert lh.cli("audit", "verify", "--quorum", "1").returncode == 2
    assert lh.cli("audit", "verify", "--witness-key", vkey).returncode == 2  # a log key, not a witness key
    assert lh.cli("audit", "verify", "--witness-key", str(tmp_path / "missing.txt")).returncode == 2
    stranger = w.format_vkey("witness.test/stranger", w.COSIGNATURE_ALG, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    proc = lh.cli("audit", "verify", "--witness-key", stranger)
    assert proc.returncode == 1 and "missing: witness.test/stranger" in proc.stdout + proc.stderr


def test_quorum_of_two_witnesses(server: WitnessServer, extra_servers: list[WitnessServer], tmp_path: Path) -> None:
    lh = make_ledger(tmp_path / "home", records=2)
    second = start_server(tmp_path / "w2", name="witness.test/w2")
    extra_servers.append(second)
    for s in (server, second):
        s.add_log(lh.vkey)
    proc = lh.cli("audit", "checkpoint", "--witness", server.url, "--witness", second.url)
    assert proc.returncode == 0, proc.stderr
    both = ["--witness-key", server.vkey, "--witness-key", second.vkey]
    assert lh.cli("audit", "verify", *both).returncode == 0

    lh.append(2, start=5)
    assert lh.cli("audit", "checkpoint", "--witness", server.url).returncode == 0
    proc = lh.cli("audit", "verify", *both)
    assert proc.returncode == 1 and "cosigned by 1 of the 2" in proc.stdout + proc.stderr
    assert lh.cli("audit", "verify", *both, "--quorum", "1").returncode == 0

    # One witness down: the checkpoint command names it and exits 1; the other still cosigned.
    stop_server(second.proc)
    lh.append(1, start=9)
    proc = lh.cli("audit", "checkpoint", "--witness", server.url, "--witness", second.url)
    assert proc.returncode == 1 and second.url in proc.stderr and "unreachable" in proc.stderr
    assert lh.cli("audit", "verify", "--witness-key", server.vkey).returncode == 0


# -------------------------------------------------------------------------------- the CLI


def test_witness_home_is_never_a_ledger_home(tmp_path: Path) -> None:
    lh = make_ledger(tmp_path / "ledger", records=1)
    proc = assay("witness", "init", home=lh.home)
    assert proc.returncode == 2 and "holds an assay ledger" in proc.stderr

    wdir = tmp_path / "w"
    proc = assay("witness", "add-log", lh.vkey, home=wdir)
    assert proc.returncode == 2 and "witness init" in proc.stderr
    proc = assay("witness", "init", "--name", "bad name", home=wdir)
    assert proc.returncode == 2 and "--name" in proc.stderr
    proc = assay("witness", "init", "--name", "witness.test/cli", "--json", home=wdir)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["created"] is True and info["vkey"].startswith("witness.test/cli+")
    assert stat.S_IMODE((wdir / "witness.key").stat().st_mode) == 0o600
    assert w.parse_vkey(info["vkey"], w.COSIGNATURE_ALG).name == "witness.test/cli"
    assert assay("witness", "vkey", home=wdir).stdout.strip() == info["vkey"]
    again = assay("witness", "init", home=wdir)
    assert again.returncode == 0 and "already initialized" in again.stdout
    assert assay("witness", "init", "--name", "witness.test/other", home=wdir).returncode == 2

    proc = assay("witness", "add-log", info["vkey"], home=wdir)
    assert proc.returncode == 2 and "assay keys vkey" in proc.stderr  # a witness key is not a log key
    proc = assay("witness", "add-log", lh.vkey, home=wdir)
    assert proc.returncode == 0 and "now witnessing" in proc.stdout
    assert "already witnessing" in assay("witness", "add-log", lh.vkey, home=wdir).stdout
    rotated = w.format_vkey(lh.origin, w.NOTE_ALG, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    assert assay("witness", "add-log", rotated, home=wdir).returncode == 0
    logs = json.loads(assay("witness", "logs", "--json", home=wdir).stdout)
    assert logs["witness"] == info["vkey"]
    assert [(log["origin"], log["size"], len(log["keys"])) for log in logs["logs"]] == [(lh.origin, 0, 2)]
    for listen in ("nowhere", "127.0.0.1:0", "127.0.0.1:99999"):
        proc = assay("witness", "serve", "--listen", listen, home=wdir)
        assert proc.returncode == 2 and "--listen" in proc.stderr
    proc = lh.cli("audit", "checkpoint", "--witness", "ftp://example.com")
    assert proc.returncode == 2 and "http" in proc.stderr


# ------------------------------------------------------------------------- keys and formats


SIGNED_NOTE_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SIGNED_NOTE_TEXT = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
# The Ed25519 cosigners that cosigned the Sigstore staging checkpoint in tests/audit/vectors/sigstore-rekor-v2,
# as their operators publish them (witness-network.org; transparency.dev/witnesses).
PUBLIC_WITNESSES = [
    "witness.navigli.sunlight.geomys.org+a3e00fe2+BNy/co4C1Hn1p+INwJrfUlgz7W55dSZReusH/GhUhJ/G",
    "witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv",
    "staging.witness.transparency.goog/ring-any-bells+2e1a8dc9+BG5JTpLc3FJtwzgh1Uv+Qelz9qeOH2bfWjS1s0s+y4rL",
]


def test_signed_note_spec_vkey_verifies_its_example() -> None:
    key = w.parse_vkey(SIGNED_NOTE_VKEY, w.NOTE_ALG)
    assert (key.name, key.key_id.hex(), str(key)) == ("example.com/foo", "530d903a", SIGNED_NOTE_VKEY)
    body, verified = verify_note(SIGNED_NOTE_TEXT, [(key.name, key.public_raw)])
    assert body == "This is an example message.\n" and verified == [(key.name, key.public_raw)]


def test_public_witnesses_cosigned_the_sigstore_checkpoint(vectors: Path) -> None:
    bundle = json.loads((vectors / "sigstore-rekor-v2" / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_text())
    text = bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
    check = w.check_witnesses(text, PUBLIC_WITNESSES, 3, 4026479)
    assert check.ok, check.problems
    assert sorted(check.cosigned_by) == sorted(PUBLIC_WITNESSES) and set(check.cosigned_by.values()) == {1778700214}
    problems = w.witness_problems(text, PUBLIC_WITNESSES, 3, 4026480)
    assert problems == [
        "the witnessed checkpoint covers records 1..4026479, not record 4026480: "
        "checkpoint again with `assay audit checkpoint --witness URL`"
    ]
    # One altered cosignature byte: that witness's line fails, and three are no longer there.
    lines = text.split("\n")
    i = next(n for n, line in enumerate(lines) if "witness.stagemole.eu" in line)
    name, blob = lines[i].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[20] ^= 0x80
    lines[i] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
    altered = "\n".join(lines)
    problems = w.witness_problems(altered, PUBLIC_WITNESSES, 3, None)
    assert len(problems) == 2 and "witness.stagemole.eu does not verify" in problems[0]
    assert w.witness_problems(altered, [PUBLIC_WITNESSES[0], PUBLIC_WITNESSES[2]], 2, None) == []
    with pytest.raises(BadInput):
        w.witness_problems(text, PUBLIC_WITNESSES, 4, None)
    with pytest.raises(BadInput):
        w.witness_problems(text, [], 1, None)


def test_cosignature_v1_layout() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    body = Checkpoint("example.com/log", 7, bytes(range(32))).body()
    line = w.cosign(body, "witness.example/w", key, 1_700_000_000)
    name, blob_b64 = line.rstrip("\n").split(" ")[1:]
    blob = base64.b64decode(blob_b64)
    assert name == "witness.example/w" and len(blob) == 76
    assert blob[:4] == hashlib.sha256(b"witness.example/w\n\x04" + pub).digest()[:4]
    assert int.from_bytes(blob[4:12], "big") == 1_700_000_000
    key.public_key().verify(blob[12:], b"cosignature/v1\ntime 1700000000\n" + body.encode())
    vkey = w.format_vkey("witness.example/w", w.COSIGNATURE_ALG, pub)
    assert w.witness_problems(body + "\n" + line, [vkey], 1, 7) == []
    # a note key (0x01) under the same name and key does not match a cosignature line
    with pytest.raises(BadInput):
        w.witness_problems(body + "\n" + line, [w.format_vkey("witness.example/w", w.NOTE_ALG, pub)], 1, None)
    with pytest.raises(ValueError):
        w.cosign(body, "witness.example/w", key, 0)


def test_load_witness_keys(tmp_path: Path) -> None:
    f = tmp_path / "keys.txt"
    f.write_text("# two\n" + PUBLIC_WITNESSES[0] + "\n\n  " + PUBLIC_WITNESSES[1] + "  \n")
    assert w.load_witness_keys([str(f), PUBLIC_WITNESSES[2]]) == PUBLIC_WITNESSES
    (tmp_path / "bad.txt").write_text(PUBLIC_WITNESSES[0] + "\nnot a key\n")
    with pytest.raises(BadInput, match=r"bad.txt, line 2"):
        w.load_witness_keys([str(tmp_path / "bad.txt")])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(BadInput, match="no verifier keys"):
        w.load_witness_keys([str(tmp_path / "empty.txt")])
    with pytest.raises(BadInput, match="neither a verifier key"):
        w.load_witness_keys([str(tmp_path / "absent")])
    with pytest.raises(BadInput, match="key id does not match"):
        w.load_witness_keys([PUBLIC_WITNESSES[0].replace("a3e00fe2", "a3e00fe3")])


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1, max_size=40,
).filter(lambda s: not any(c.isspace() for c in s))


@given(name=names, alg=st.sampled_from([w.NOTE_ALG, w.COSIGNATURE_ALG]), key=st.binary(min_size=32, max_size=32))
def test_vkey_round_trip(name: str, alg: int, key: bytes) -> None:
    text = w.format_vkey(name, alg, key)
    parsed = w.parse_vkey(text)
    assert (parsed.name, parsed.alg, parsed.public_raw) == (name, alg, key)
    assert str(parsed) == text and w.parse_vkey(text, alg) == parsed
    assert text.split("+")[1] == hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + key).hexdigest()[:8]
    with pytest.raises(w.VkeyError):
        w.parse_vkey(text, w.NOTE_ALG if alg == w.COSIGNATURE_ALG else w.COSIGNATURE_ALG)


@given(name=names, key=st.binary(min_size=32, max_size=32), data=st.data())
def test_vkey_rejects_any_single_character_change(name: str, key: bytes, data: st.DataObject) -> None:
    text = w.format_vkey(name, w.COSIGNATURE_ALG, key)
    i = data.draw(st.integers(0, len(text) - 1))
    c = data.draw(st.characters(codec="utf-8").filter(lambda c: c != text[i]))
    mutated = text[:i] + c + text[i + 1 :]
    try:
        parsed = w.parse_vkey(mutated)
    except w.VkeyError:
        return
    # Only changes that leave the same key are accepted: surrounding space, or the key id's hex case.
    assert (parsed.name, parsed.public_raw) == (name, key) and str(parsed) == text


@given(st.text(max_size=120))
def test_vkey_garbage_is_rejected_or_canonical(text: str) -> None:
    try:
        parsed = w.parse_vkey(text)
    except w.VkeyError:
        return
    assert w.parse_vkey(str(parsed)) == parsed


# --------------------------------------------------------------- the request parser and handler


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> w.WitnessState:
    st_, _ = w.WitnessState.init(tmp_path_factory.mktemp("pure") / "w", "witness.test/pure")
    return st_


@pytest.fixture(scope="module")
def log_key(state: w.WitnessState) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    state.add_log(w.format_vkey("example.com/log", w.NOTE_ALG, key.public_key().public_bytes_raw()))
    return key


@given(old=st.integers(0, 2**63 - 1), proof=st.lists(st.binary(min_size=32, max_size=32), max_size=63),
       size=st.integers(0, 2**63 - 1), root=st.binary(min_size=32, max_size=32))
def test_request_round_trip(old: int, proof: list[bytes], size: int, root: bytes) -> None:
    note_text = sign_checkpoint(Checkpoint("example.com/log", size, root), "example.com/log", Ed25519PrivateKey.generate())
    req = w.parse_add_checkpoint(w.format_add_checkpoint(note_text, old, proof))
    assert (req.old_size, list(req.proof), req.note, req.checkpoint.size, req.checkpoint.root) == (old, proof, note_text, size, root)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=200)
@given(data=st.binary(max_size=600) | st.text(alphabet="old 0123456789\n\u2014 +/=abcAB", max_size=300).map(str.encode))
def test_handler_answers_any_body_with_a_4xx(state: w.WitnessState, log_key: Ed25519PrivateKey, data: bytes) -> None:
    reply = w.handle_add_checkpoint(state, data)
    assert reply.status in (400, 403, 404, 409, 422)
    if reply.status == 400 and b"larger than the checkpoint" not in reply.body:
        with pytest.raises(w.RequestError):
            w.parse_add_checkpoint(data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=50)
@given(size=st.integers(1, 2**40), root=st.binary(min_size=32, max_size=32), old=st.integers(0, 2**40),
       proof=st.lists(st.binary(min_size=32, max_size=32), max_size=5))
def test_handler_never_cosigns_an_unproven_tree(
    state: w.WitnessState, log_key: Ed25519PrivateKey, size: int, root: bytes, old: int, proof: list[bytes]
) -> None:
    current = state.latest("example.com/log")
    assert current is not None
    note_text = sign_checkpoint(Checkpoint("example.com/log", size, root), "example.com/log", log_key)
    reply = w.handle_add_checkpoint(state, w.format_add_checkpoint(note_text, old, proof))
    if reply.status == 200:
        # Only from the empty tree (nothing to prove) or a repeat of the stored head.
        assert current[0] == old
        assert (old == 0 and not proof) or (old == size and not proof and root == current[1])
    else:
        assert reply.status in (400, 409, 422)
    if reply.status == 409:
        assert reply.content_type == "text/x.tlog.size" and reply.body == f"{current[0]}\n".encode()
