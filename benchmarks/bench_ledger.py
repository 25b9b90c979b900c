"""Ledger benchmark: raw Ed25519 limits vs batched append, full verify, checkpoints.

Run: python benchmarks/bench_ledger.py [--records 1000000] [--workdir DIR]
Prints each figure and its ratio to the raw limit measured in this same process: batched append,
the first automatic checkpoint (a full verify) when the appending ledger closes, a full verify, and
on a big ledger the automatic checkpoint after 1,000 more records and ``--since-checkpoint``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.audit import verify as V
from assay.audit.ledger import Ledger
from assay.storage.settings import Settings


def raw_rates(n: int = 20000) -> tuple[float, float]:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    msg = os.urandom(32)
    t = time.perf_counter()
    for _ in range(n):
        sig = key.sign(msg)
    sign = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n // 2):
        pub.verify(sig, msg)
    return sign, (n // 2) / (time.perf_counter() - t)


def payloads(n: int, start: int = 0) -> list[tuple[str, str, dict[str, object]]]:
    return [(f"run-{(start + i) // 1000}", "metrics", {"i": start + i, "roc_auc": 0.9213, "split": "test"})
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000, help="size of the big ledger for the checkpoint test")
    ap.add_argument("--verify-records", type=int, default=100_000, help="records for the full-verify rate")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="assay-bench-"))
    cores = len(os.sched_getaffinity(0))
    sign, verify = raw_rates()
    print(f"cores {cores}; raw Ed25519: sign {sign:,.0f}/s, verify {verify:,.0f}/s per core")

    # 1. batched append on SQLite
    s = Settings(work / "home", f"sqlite:///{work / 'append.db'}")
    led = Ledger.open(s)
    led.append("warmup", "data", {})
    batch, total, t = 5000, 100_000, time.perf_counter()
    for start in range(0, total, batch):
        led.append_many(payloads(batch, start))
    rate = total / (time.perf_counter() - t)
    sign2, verify2 = raw_rates(10000)
    print(f"append_many: {rate:,.0f} records/s (target 15,000; {rate / ((sign + sign2) / 2):.2f} x raw sign)")
    t = time.perf_counter()
    led.close()  # owes the home its first checkpoint: verifies all 100k records, then signs
    print(f"close with the first automatic checkpoint: {time.perf_counter() - t:.2f}s for {total + 2:,} records")

    # 2. full verify of the 100k ledger
    t = time.perf_counter()
    rep = V.verify_ledger(s.db_url, trust=s.home / "keys" / "trust.json")
    vrate = rep.checked / (time.perf_counter() - t)
    assert rep.ok, rep.to_json()
    limit = cores * (verify + verify2) / 2
    print(f"full verify: {vrate:,.0f} records/s = {vrate / limit:.0%} of {cores} cores x raw verify (target 80%)")

    # 3. verify 1,000 records past a checkpoint on a big ledger
    big = Settings(work / "home", f"sqlite:///{work / 'big.db'}")
    bl = Ledger.open(big)
    have = bl.size()
    t = time.perf_counter()
    for start in range(have, args.records - 1000, 20000):
        bl.append_many(payloads(min(20000, args.records - 1000 - start), start))
    print(f"built {bl.size():,} records in {time.perf_counter() - t:.0f}s")
    cp = work / "cp.note"
    t = time.perf_counter()
    cp.write_text(bl.checkpoint())  # a full verify first
    print(f"audit checkpoint (full verify, then sign): {time.perf_counter() - t:.1f}s")
    bl.append_many(payloads(1000, args.records))
    trust = big.home / "keys" / "trust.json"
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        rep = V.verify_extension(big.db_url, cp, trust=trust)
        best = min(best, time.perf_counter() - t)
        assert rep.ok and rep.checked == 1000, rep.to_json()
    print(f"automatic checkpoint's verify: {rep.checked} new records on a {rep.size:,}-record ledger "
          f"in {best:.3f}s (target < 0.5s)")
    t = time.perf_counter()
    bl.close()  # the automatic checkpoint itself: that verify, then sign and store
    print(f"close with the automatic checkpoint: {time.perf_counter() - t:.3f}s")
    assert int(bl.latest_checkpoint_path().read_text().split("\n")[1]) == rep.size
    t = time.perf_counter()
    rep = V.verify_ledger(big.db_url, since_checkpoint=cp, trust=trust)
    since = time.perf_counter() - t
    assert rep.ok and rep.checked == rep.size, rep.to_json()
    print(f"verify --since-checkpoint: {rep.size:,} records re-hashed, signatures of 1..{rep.checkpoint_size:,} trusted, "
          f"in {since:.1f}s ({rep.size / since:,.0f} records/s)")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
