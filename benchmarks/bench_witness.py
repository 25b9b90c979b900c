"""Witness benchmark: add-checkpoint latency on loopback against a bare uvicorn endpoint.

Run: python benchmarks/bench_witness.py [--requests 300] [--workdir DIR]

Starts ``assay witness serve`` (the real litestar app under uvicorn) and, in the same run, a bare
ASGI "hello" app under uvicorn. A ledger grows by 1-3 records before each request; each
add-checkpoint carries a freshly signed checkpoint and a real RFC 9162 consistency proof from the
size the witness holds, and must be cosigned (200). The same request body is then POSTed to the
hello endpoint. Both use one keep-alive connection; only the round trip is timed. Prints p50, p95
and mean for both, and the witness's extra cost over plain HTTP.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assay.audit.keys import KeyStore
from assay.audit.ledger import Ledger
from assay.audit.merkle import consistency_proof, subtree_hash
from assay.audit.note import Checkpoint, sign_checkpoint
from assay.audit.verify import Source
from assay.audit.witness import NOTE_ALG, WitnessState, format_add_checkpoint, format_vkey
from assay.storage.settings import Settings


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: read the request body, answer a short text/plain 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello\n"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def timed_post(conn: http.client.HTTPConnection, body: bytes) -> tuple[float, int, bytes]:
    t = time.perf_counter()
    conn.request("POST", "/add-checkpoint", body=body)
    resp = conn.getresponse()
    data = resp.read()
    return time.perf_counter() - t, resp.status, data


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300, help="add-checkpoint requests (and as many hello requests)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    ap.add_argument("--hello-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hello_server:
        import uvicorn

        uvicorn.run(hello_app, host="127.0.0.1", port=args.hello_server, access_log=False, log_level="warning")
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="assay-bench-witness-"))
    home, wdir = work / "ledger", work / "witness"
    for d in (home, wdir):
        shutil.rmtree(d, ignore_errors=True)
    led = Ledger.open(Settings(home, f"sqlite:///{home / 'assay.db'}"))
    led.register_key()
    key = KeyStore(home).active(create=False)
    origin = led.origin
    state, _ = WitnessState.init(wdir, "bench.witness/w1")
    state.add_log(format_vkey(origin, NOTE_ALG, key.public_raw))

    wport, hport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_HOME"}
    servers = [
        subprocess.Popen([sys.executable, "-m", "assay", "--home", str(wdir), "witness", "serve",
                          "--listen", f"127.0.0.1:{wport}", "--no-access-log"],
                         stdout=subprocess.DEVNULL, stderr=(work / "witness.log").open("wb"), env=env),
        subprocess.Popen([sys.executable, __file__, "--hello-server", str(hport)],
                         stdout=subprocess.DEVNULL, stderr=(work / "hello.log").open("wb"), env=env),
    ]
    try:
        wait_for(wport, servers[0])
        wait_for(hport, servers[1])
        wconn = http.client.HTTPConnection("127.0.0.1", wport, timeout=30)
        hconn = http.client.HTTPConnection("127.0.0.1", hport, timeout=30)
        rng = random.Random(7)
        src = Source(f"sqlite:///{home / 'assay.db'}")
        witness_s: list[float] = []
        hello_s: list[float] = []
        proof_lines: list[int] = []
        held = 0
        warmup = 10
        for i in range(args.requests + warmup):
            led.append_many([("bench", "metrics", {"i": i, "j": j}) for j in range(rng.randint(1, 3))])
            size = led.size()
            cp = Checkpoint(origin, size, subtree_hash(0, size, src.stored_node))
            note = sign_checkpoint(cp, origin, key.private)
            proof = consistency_proof(held, size, src.stored_node) if held else []
            body = format_add_checkpoint(note, held, proof)
            dt, status, data = timed_post(wconn, body)
            if status != 200:
                raise SystemExit(f"witness answered {status}: {data.decode(errors='replace')}")
            held = size
            hdt, hstatus, _ = timed_post(hconn, body)
            assert hstatus == 200
            if i >= warmup:
                witness_s.append(dt)
                hello_s.append(hdt)
                proof_lines.append(len(proof))
        src.close()
    finally:
        for p in servers:
            p.terminate()
        for p in servers:
            p.wait(timeout=15)

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50": pct(values, 50) * 1e3, "p95": pct(values, 95) * 1e3, "mean": statistics.fmean(values) * 1e3}

    wit, hel = ms(witness_s), ms(hello_s)
    print(f"cores {len(os.sched_getaffinity(0))}; {len(witness_s)} add-checkpoint requests on a ledger growing to "
          f"{held} records; proofs of {min(proof_lines)}-{max(proof_lines)} hashes")
    print(f"add-checkpoint (witness serve):  p50 {wit['p50']:6.2f} ms  p95 {wit['p95']:6.2f} ms  mean {wit['mean']:6.2f} ms")
    print(f"bare uvicorn hello (same body):  p50 {hel['p50']:6.2f} ms  p95 {hel['p95']:6.2f} ms  mean {hel['mean']:6.2f} ms")
    print(f"witness work over plain HTTP:    p50 +{wit['p50'] - hel['p50']:.2f} ms   (target: add-checkpoint p50 < 20 ms: "
          f"{'met' if wit['p50'] < 20 else 'NOT met'})")
    if args.json:
        print(json.dumps({"witness_ms": wit, "hello_ms": hel, "requests": len(witness_s), "final_size": held}))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
