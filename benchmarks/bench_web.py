"""Web view benchmark: page render times on a big team ledger (10,000 runs, 1,000,000 records).

Run: python benchmarks/bench_web.py [--runs 10000] [--records 1000000] [--requests 30] [--db URL] [--workdir DIR]

Builds a synthetic ledger with ``Ledger.append_many`` in batches (the fast path of
bench_ledger.py): each run writes run_started, data, split, model, metrics, its checks,
evidence, a verdict and run_finished, padded with metric records to the record count; twenty
model names share the versions, some are promoted (with an approval), some waived, some
monitored. Then ``assay serve`` is started on a free loopback port, the time until the first
full verification is published is measured, and every page (and the deployment API) is
requested ``--requests`` times over HTTP with keep-alive; run, model and record pages pick a
different target each time. Prints p50 / p95 / max per page in milliseconds (the first request
of each page is reported apart: it fills the per-size caches).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
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

from assay.audit.ledger import Ledger
from assay.storage.settings import Settings

MODELS = 20
POLICY = {"name": "assay:standard", "hash": "sha256:" + "a" * 64, "approvals": 1}
RULES = [{"id": f"rule-{i}", "path": f"checks.group.check{i}.status", "op": "in", "threshold": ["pass", "warn"],
          "outcome": "pass", "measured": "pass", "severity": "block",
          "reason": f"checks.group.check{i}.status = 'pass' meets in ['pass', 'warn']"} for i in range(30)]


def run_records(i: int, per_run: int) -> list[tuple[str, str, dict[str, Any]]]:
    run_id = f"01JBENCH{i:018d}"
    name, version = f"model-{i % MODELS}", i // MODELS + 1
    blocked = i % 7 == 0
    artifact = "sha256:" + f"{i:064x}"
    fingerprint = "sha256:" + f"{i % 50:064x}"
    checks = {"group": {f"check{k}": {"status": "fail" if blocked and k == 0 else "pass", "value": k * 0.01,
                                      "detail": {}} for k in range(30)}}
    evidence = {"run_id": run_id, "project": name, "task": "binary", "metric": "roc_auc", "policy_hash": POLICY["hash"],
                "data": {"fingerprint": fingerprint, "source": f"data-{i % 50}.csv", "rows": 50_000},
                "model": {"ref": f"{name}@{version}", "name": name, "version": version, "artifact": artifact,
                          "family": "hist_gradient_boosting", "params": {"max_depth": 6}},
                "metrics": {"train": {"roc_auc": 0.93}, "cv": {"roc_auc": {"mean": 0.915, "std": 0.004}},
                            "test": {"roc_auc": 0.92, "roc_auc_ci": [0.905, 0.934]}},
                "baseline": {"name": "dummy", "test": {"roc_auc": 0.5}}, "gap": {"roc_auc": 0.01},
                "fairness": {"sex": {"selection_rate_ratio": 0.86, "demographic_parity_ratio": 0.86}},
                "checks": checks}
    rules = [dict(r) for r in RULES]
    if blocked:
        rules[0].update(outcome="block", measured="fail",
                        reason="checks.group.check0.status = 'fail', needs in ['pass', 'warn']")
    items: list[tuple[str, str, dict[str, Any]]] = [
        (run_id, "run_started", {"project": name, "spec_hash": "sha256:" + "b" * 64, "spec_path": f"/w/{name}.toml",
                                 "policy": POLICY, "spec": {"project": {"name": name},
                                                            "gate": {"policy": POLICY["name"]}}}),
        (run_id, "data", {"fingerprint": fingerprint, "source": f"data-{i % 50}.csv", "rows": 50_000}),
        (run_id, "split", {"strategy": "stratified", "train": {"rows": 40_000, "fingerprint": fingerprint},
                           "test": {"rows": 10_000, "fingerprint": fingerprint}}),
        (run_id, "model", {"name": name, "version": version, "family": "hist_gradient_boosting",
                           "artifact": artifact, "params": {"max_depth": 6}}),
    ]
    items += [(run_id, "check", {"group": "group", "name": f"check{k}", **checks["group"][f"check{k}"]})
              for k in range(30)]
    pad = per_run - len(items) - 3
    items += [(run_id, "metrics", {"fold": k, "roc_auc": 0.9 + k * 1e-4}) for k in range(max(0, pad))]
    from assay.storage.signed import digest_of

    items += [
        (run_id, "evidence", evidence),
        (run_id, "verdict", {"run_id": run_id, "model": f"{name}@{version}", "artifact": artifact,
                             "decision": "block" if blocked else "pass", "policy": POLICY["name"],
                             "policy_hash": POLICY["hash"], "evidence_digest": digest_of(evidence), "rules": rules,
                             "reasons": [rules[0]["reason"]] if blocked else []}),
        (run_id, "run_finished", {"status": "blocked" if blocked else "passed",
                                  "decision": "block" if blocked else "pass"}),
    ]
    return items


def extra_records(i: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Deployment and monitoring records for some runs (approval + promotion, waivers, monitors)."""
    run_id, name, version = f"01JBENCH{i:018d}", f"model-{i % MODELS}", i // MODELS + 1
    ref, artifact = f"{name}@{version}", "sha256:" + f"{i:064x}"
    out: list[tuple[str, str, dict[str, Any]]] = []
    if i % 7 and i % 50 == 1:
        out += [(run_id, "approval", {"model": ref, "artifact": artifact, "run_id": run_id, "approver": "rita"}),
                (run_id, "promotion", {"model": ref, "artifact": artifact, "run_id": run_id, "from": "none",
                                       "to": "production"})]
    if i % 7 == 0 and i % 70 == 0:
        out.append((run_id, "waiver", {"rule": "rule-0", "model": ref, "reason": "accepted", "approver": "dana",
                                       "expires": "2999-12-31", "artifact": artifact}))
    if i % 50 == 1:
        for k in range(5):
            share = 0.05 * k
            out.append((run_id, "monitor", {
                "monitor_id": f"M{i}-{k}", "status": "stable" if share <= 0.15 else "beyond_policy", "model": ref,
                "artifact": artifact,
                "evidence": {"metric": "roc_auc", "drift": {"share_drifted": share, "drifted": k, "tested": 20},
                             "metrics": {"test": {"roc_auc": 0.92}, "current": {"roc_auc": 0.92 - 0.01 * k}},
                             "data": {"current": {"source": f"/b/{k}.csv", "rows": 5000, "labelled": True}}},
                "verdict": {"decision": "pass" if share <= 0.15 else "block", "reasons": [],
                            "rules": [{"path": "drift.share_drifted", "threshold": 0.15}]}}))
    return out


def build(settings: Settings, runs: int, records: int) -> None:
    per_run = max(40, records // runs)
    ledger = Ledger.open(settings)
    t = time.perf_counter()
    batch: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(runs):
        batch += run_records(i, per_run) + extra_records(i)
        if len(batch) >= 5000:
            ledger.append_many(batch)
            batch = []
    if batch:
        ledger.append_many(batch)
    size = ledger.size()
    print(f"built {size:,} records for {runs:,} runs in {time.perf_counter() - t:.0f}s", flush=True)
    t = time.perf_counter()
    ledger.close()  # the home's first checkpoint: a full verify, then sign
    print(f"home checkpoint (full verify) in {time.perf_counter() - t:.0f}s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes, float]:
    t = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in the work dir)")
    ap.add_argument("--workdir", default=None, help="keep the ledger here (reused when it already holds one)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="assay-bench-web-"))
    home = work / "home"
    settings = Settings(home, args.db or f"sqlite:///{home / 'assay.db'}")
    if not (home / "checkpoints").is_dir():
        build(settings, args.runs, args.records)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ASSAY_DB_URL", "ASSAY_HOME")}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "assay", "--home", str(home), "--db", settings.db_url, "serve",
                               "--listen", f"127.0.0.1:{port}", "--no-access-log"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status, body, _ = get(conn, "/api/status")
                state = json.loads(body)["status"]
                if state["verified_size"]:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                raise SystemExit("assay serve exited")
            time.sleep(0.5)
        ready = time.perf_counter() - t0
        print(f"cores {len(os.sched_getaffinity(0))}; ledger {state['verified_size']:,} records; first verification "
              f"published {ready:.1f}s after start (verify {state['duration_s']:.1f}s, then the index)", flush=True)
        runs = json.loads(get(conn, "/api/runs?per_page=500")[1])
        run_ids = [r["run_id"] for r in runs["runs"]]
        some = runs["runs"][0]
        names = json.loads(get(conn, "/api/models?per_page=1")[1])["names"]
        deployed = [m["name"] for m in names if m.get("production")] or [names[0]["name"]]
        size = state["verified_size"]
        rnd = random.Random(1)
        pages: list[tuple[str, Any]] = [
            ("attention /", "/"), ("runs", "/runs"), ("runs ?status=blocked", "/runs?status=blocked"),
            ("runs ?model=&page=5", "/runs?model=model-3&page=5"), ("runs API", "/api/runs"),
            ("run page", lambda: f"/runs/{rnd.choice(run_ids)}"), ("run API", lambda: f"/api/runs/{rnd.choice(run_ids)}"),
            ("models", "/models"), ("model", lambda: f"/models/model-{rnd.randrange(MODELS)}"),
            ("model ?page=10", lambda: f"/models/model-{rnd.randrange(MODELS)}?page=10"),
            ("production API", lambda: f"/api/models/{rnd.choice(deployed)}/stages/production"),
            ("lineage", "/lineage"), ("lineage ?run=", lambda: f"/lineage?run={rnd.choice(run_ids)}"),
            ("lineage ?data=", f"/lineage?data={some['data']['fingerprint']}"),
            ("lineage ?policy=", f"/lineage?policy={POLICY['hash']}"),
            ("ledger (newest)", "/ledger"), ("ledger ?before=", lambda: f"/ledger?before={rnd.randrange(2, size)}"),
            ("ledger ?kind=verdict", lambda: f"/ledger?kind=verdict&before={rnd.randrange(2, size)}"),
            ("record page", lambda: f"/ledger/{rnd.randrange(1, size + 1)}"),
            ("record proof API", lambda: f"/api/ledger/{rnd.randrange(1, size + 1)}/proof"),
            ("monitoring", "/monitoring"), ("keys", "/keys"), ("status API", "/api/status"),
        ]
        print("\n| page | first (ms) | p50 (ms) | p95 (ms) | max (ms) | requests |\n|---|---|---|---|---|---|")
        worst = 0.0
        for label, target in pages:
            times = []
            first = None
            for _ in range(args.requests + 1):
                path = target() if callable(target) else target
                status, body, ms = get(conn, path)
                if status not in (200, 409):
                    raise SystemExit(f"{path}: HTTP {status}: {body[:300]!r}")
                if first is None:
                    first = ms
                else:
                    times.append(ms)
            times.sort()
            p95 = times[math.ceil(0.95 * len(times)) - 1]  # nearest rank
            worst = max(worst, p95)
            print(f"| {label} | {first:.1f} | {statistics.median(times):.1f} | {p95:.1f} | {times[-1]:.1f} | "
                  f"{len(times)} |", flush=True)
        print(f"\nworst p95 {worst:.1f} ms (target < 200 ms)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
