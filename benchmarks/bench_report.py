"""``assay report`` on a big ledger: the evidence pack of one run among 10,000 runs and 1,000,000 records.

Run: python benchmarks/bench_report.py [--runs 10000] [--records 1000000] [--reports 5] [--workdir DIR]

Builds the web view benchmark's synthetic team ledger (``bench_web.build``: each run's
run_started, data, split, model, checks, evidence, verdict and run_finished records padded to
the record count, with approvals, promotions, waivers and monitor records; the home's
checkpoint is signed at the end), then times ``python -m assay report RUN --output F`` end to
end — a fresh interpreter, as a user runs it — for ``--reports`` different runs, with both
templates. The report verifies the ledger against the home's checkpoint (records after it in
full) and proves each of the run's records inside it, so its cost grows with the run and the
log of the ledger's size, not with the ledger. Target: under 2 s at 1,000,000 records.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_web import build  # the web benchmark's ledger builder, beside this file

from assay.storage.settings import Settings


def timed_report(home: Path, db: str, run_id: str, out: Path, *extra: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("ASSAY_DB_URL", "ASSAY_HOME")}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "assay", "--home", str(home), "--db", db, "report", run_id,
                           "--output", str(out), *extra], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"assay report failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--reports", type=int, default=5, help="runs to report on (each a different one)")
    ap.add_argument("--workdir", default=None, help="keep the ledger here (reused when it already holds one)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="assay-bench-report-"))
    home = work / "home"
    settings = Settings(home, f"sqlite:///{home / 'assay.db'}")
    if not (home / "checkpoints").is_dir():
        build(settings, args.runs, args.records)
    from assay.audit.ledger import Ledger

    ledger = Ledger.open(settings)
    size = ledger.size()
    ledger.close()
    rnd = random.Random(7)
    chosen = [f"01JBENCH{rnd.randrange(args.runs):018d}" for _ in range(args.reports)]
    print(f"cores {len(os.sched_getaffinity(0))}; ledger {size:,} records, {args.runs:,} runs", flush=True)
    for template, extra in (("card (html)", ()), ("annex-iv (html)", ("--template", "annex-iv")),
                            ("card (markdown)", ("--format", "markdown"))):
        times = [timed_report(home, settings.db_url, run_id, work / f"{run_id}.out", *extra) for run_id in chosen]
        verdict = "✔" if max(times) < 2.0 else "✘"
        print(f"assay report, {template}: median {statistics.median(times):.2f}s, max {max(times):.2f}s over "
              f"{len(times)} runs (target < 2 s {verdict})", flush=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import assay.commands.cli"], check=True)
    print(f"(of which interpreter start and CLI import: {time.perf_counter() - t:.2f}s)")


if __name__ == "__main__":
    main()
