"""Dataset fingerprint benchmark: ``assay.kernel.dataset.fingerprint_frame`` vs raw SHA-256.

Run: python benchmarks/bench_fingerprint.py [--rows 1000000] [--repeats 7]

Two synthetic 1M x 20 frames: ``mixed`` (12 float64 with 1 % NaN, 4 int64, 4 text
columns of short object strings, two with 1 % missing) and ``numeric`` (16 float64,
4 int64). The baseline is hashlib SHA-256 over the same content bytes, already in
memory: each numeric column's buffer and each text column's UTF-8 characters. The
fingerprint does everything else too (dtype dispatch, canonical -0.0/NaN, text to
bytes, per-column digests). Raw and fingerprint runs alternate, so load changes hit
both; the figure is the ratio of medians (throughput = content bytes / time).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from assay.kernel.dataset import fingerprint_frame


def make_frame(rows: int, kind: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    n_float, n_int, n_text = (12, 4, 4) if kind == "mixed" else (16, 4, 0)
    for i in range(n_float):
        values = rng.normal(size=rows)
        values[rng.random(rows) < 0.01] = np.nan
        cols[f"f{i}"] = values
    for i in range(n_int):
        cols[f"i{i}"] = rng.integers(0, 1_000_000, rows)
    vocab = np.array([f"category_{k}" for k in range(500)], dtype=object)
    for i in range(n_text):
        text = vocab[rng.integers(0, len(vocab), rows)]
        if i % 2:
            text[rng.random(rows) < 0.01] = None
        cols[f"s{i}"] = text
    return pd.DataFrame(cols)


def content(frame: pd.DataFrame) -> list[Any]:
    """The frame's content bytes, as the raw baseline hashes them."""
    out: list[Any] = []
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object:
            out.append("".join(v for v in s.tolist() if v is not None).encode())
        else:
            out.append(np.ascontiguousarray(s.to_numpy()).view(np.uint8))
    return out


def raw_sha256(parts: list[Any]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def measure(frame: pd.DataFrame, repeats: int) -> dict[str, float]:
    parts = content(frame)
    nbytes = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
    raw_times, fp_times = [], []
    fingerprint_frame(frame)  # warm up imports and allocators
    for _ in range(repeats):
        t = time.perf_counter()
        raw_sha256(parts)
        raw_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        fingerprint_frame(frame)
        fp_times.append(time.perf_counter() - t)
    raw, fp = statistics.median(raw_times), statistics.median(fp_times)
    return {"mb": nbytes / 1e6, "raw_s": raw, "fp_s": fp, "raw_mb_s": nbytes / raw / 1e6,
            "fp_mb_s": nbytes / fp / 1e6, "ratio": raw / fp, "best_ratio": min(raw_times) / min(fp_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}  ({os.cpu_count()} cores)")
    for kind in ("mixed", "numeric"):
        frame = make_frame(args.rows, kind)
        r = measure(frame, args.repeats)
        print(f"{kind:8s} {args.rows:,} x {frame.shape[1]}: {r['mb']:.0f} MB content | raw SHA-256 "
              f"{r['raw_s'] * 1000:.0f} ms ({r['raw_mb_s']:.0f} MB/s) | fingerprint {r['fp_s'] * 1000:.0f} ms "
              f"({r['fp_mb_s']:.0f} MB/s) | ratio {r['ratio']:.2f} (best-of {r['best_ratio']:.2f}; target >= 0.50)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
