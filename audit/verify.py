"""Standalone ledger verifier: checks an assay ledger offline using only the standard library and
``cryptography`` (PostgreSQL through ``psycopg``, imported only for postgres URLs).

Run it as ``python -m assay.audit.verify DB_URL [--checkpoint F | --since-checkpoint F] [--home DIR]
[--trust F] [--json]``; exit 0 = intact, 1 = tampering found (the first bad sequence number and what
is wrong), 2 = bad input. ``python -m assay.audit.verify --bundle DIR [--trust F]`` checks an audit
bundle instead, with no database (``assay.audit.bundle``).

What is checked for every record, always: it sits at the position its signed body claims (no gap,
move or swap); its prev_hash links to the previous record; its bytes hash to its stored hash; the
indexed columns match the signed body; its Ed25519 signature verifies; and its key was valid at that
position — known from the trust file or introduced by a trusted key through a key_added /
key_rotated record, not yet rotated out, not revoked. Signature checks run in parallel over all
cores (processes, chunks of 2,048 records); hashing, key windows and the Merkle root are computed
alongside.

Checkpoints (signed C2SP checkpoint notes of size m) add a consistency check to that full pass: the
note's signature, the Merkle root of the first m records recomputed from their bodies, and the
``assay-key-events`` line committing to the key records up to m. A truncated tail or a restored
older copy is reported. ``--checkpoint F`` names one; ``--home DIR`` (and ``assay audit verify``
always) adds the newest one the home holds, so a cut tail needs no flag to be caught.

``--since-checkpoint F`` is the one shortcut: signatures of records 1..m are taken on the
checkpoint's word (and the output says so); everything else above is still recomputed from the
bodies. ``verify_extension`` (used when assay writes its own checkpoints) additionally takes the
stored Merkle tree of the first m records, proven equal to the checkpoint's root, instead of
re-hashing them; it is never what a user's ``verify`` runs.

The verifier's parts, each a module of its own: ``assay.audit.source`` reads the database,
``assay.audit.records`` checks every record (position, chain, hash, columns, signature) over all
cores, ``assay.audit.keystate`` replays key validity, ``assay.audit.checkpoints`` loads and checks
checkpoints, ``assay.audit.extension`` proves an extension, and ``assay.audit.report`` holds what
was found. This module joins them and is the command line; the names auditors' scripts import
from it stay importable here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from assay.audit.checkpoints import (
    HOME_FIX,
    Given,
    check_extends,
    check_origins,
    check_sizes,
    load_checkpoint,
    newest_home_checkpoint,
    same_file,
)
from assay.audit.errors import BadInput
from assay.audit.extension import extend
from assay.audit.format import GENESIS_PREV
from assay.audit.keystate import KEY_EVENTS_EXT, KeyState, attestor_key, key_events_line, named_key
from assay.audit.merkle import Frontier
from assay.audit.records import CHUNK, PARALLEL_MIN, check_row, scan, worker_count
from assay.audit.report import MAX_ERRORS, Collector, VerifyReport
from assay.audit.source import SECRET_QUERY_KEYS, Row, Source, origin_of, redact, sqlite_path
from assay.audit.trust import TrustedKey, TrustError, load_trust

__all__ = [
    "CHUNK", "KEY_EVENTS_EXT", "MAX_ERRORS", "PARALLEL_MIN", "SECRET_QUERY_KEYS", "KeyState", "Row", "Source",
    "VerifyReport", "attestor_key", "check_row", "key_events_line", "main", "named_key", "newest_home_checkpoint",
    "origin_of", "redact", "sqlite_path", "verify_extension", "verify_ledger",
]


def _load_trust_arg(trust: Path | str | list[TrustedKey] | None) -> tuple[list[TrustedKey] | None, str | None]:
    if trust is None:
        return None, None
    if isinstance(trust, list):
        return trust, None
    try:
        return load_trust(Path(trust)), str(trust)
    except TrustError as exc:
        raise BadInput(str(exc)) from None


def verify_ledger(
    url: str,
    checkpoint: Path | str | None = None,
    trust: Path | str | list[TrustedKey] | None = None,
    full: bool = True,
    workers: int | None = None,
    checkpoint_text: str | None = None,
    *,
    since_checkpoint: Path | str | None = None,
    home: Path | str | None = None,
) -> VerifyReport:
    """Verify every record of the ledger at ``url`` (see the module docstring); BadInput for unusable input.

    :param checkpoint: a checkpoint file (or its ``checkpoint_text``) the ledger must extend.
    :param since_checkpoint: a checkpoint whose signatures of records 1..m are taken on its word.
    :param home: an assay home: its newest checkpoint of this ledger is checked too.
    :param full: accepted for older callers; verification is always full.
    """
    del full
    t0 = time.perf_counter()
    trusted, trust_src = _load_trust_arg(trust)
    given = [g for g in (load_checkpoint(checkpoint, checkpoint_text),) if g is not None]
    since = load_checkpoint(since_checkpoint)
    src = Source(url)
    try:
        if home is not None:
            found = newest_home_checkpoint(Path(home), src.meta("ledger_id") or "")
            if found is not None and not same_file(found, checkpoint) and not same_file(found, since_checkpoint):
                loaded = load_checkpoint(found, fix=HOME_FIX)
                assert loaded is not None
                given.append(loaded)
        report = _full_pass(src, trusted, trust_src, given, since, worker_count(workers))
    finally:
        src.close()
    report.elapsed_s = time.perf_counter() - t0
    return report


def verify_extension(
    url: str,
    checkpoint: Path | str | None,
    trust: Path | str | list[TrustedKey] | None = None,
    workers: int | None = None,
    checkpoint_text: str | None = None,
) -> VerifyReport:
    """Prove the ledger at ``url`` extends ``checkpoint``, re-checking only the records after it.

    The records after the checkpoint's size m are checked in full (bodies, chain, signatures, key
    windows). The first m are covered by the stored Merkle tree, proven equal to the checkpoint's
    root, and by inclusion proofs of their key records and of record m, which anchors the chain.
    This is what assay runs before signing its own next checkpoint, cheap after a few appends: the
    new checkpoint then commits to the same first m record hashes as the old one. It is never what
    ``verify`` runs for a user: an edited body before m is for the full verification to find.
    """
    t0 = time.perf_counter()
    trusted, trust_src = _load_trust_arg(trust)
    given = load_checkpoint(checkpoint, checkpoint_text)
    if given is None:
        raise BadInput("verify_extension needs a checkpoint")
    src = Source(url)
    try:
        if given.cp.size == 0:  # nothing to take on the tree's word: the full pass
            report = _full_pass(src, trusted, trust_src, [given], None, worker_count(workers))
        else:
            report = extend(src, trusted, trust_src, given, worker_count(workers))
    finally:
        src.close()
    report.elapsed_s = time.perf_counter() - t0
    return report


def _full_pass(
    src: Source,
    trusted: list[TrustedKey] | None,
    trust_src: str | None,
    given: list[Given],
    since: Given | None,
    workers: int,
) -> VerifyReport:
    """Every record checked from the first, and the ledger checked against every checkpoint in ``given``
    and ``since`` (whose signatures of the records it covers are taken on its word)."""
    keys = KeyState(trusted)
    col = Collector(keys)
    origin = src.origin()
    n = src.max_seq()
    cps = ([since] if since is not None else []) + given
    base: dict[str, Any] = {
        "trust": keys.describe(trust_src),
        "origin": origin,
        "mode": "since-checkpoint" if since is not None else "full+checkpoint" if cps else "full",
        "checkpoints": [g.label for g in cps],
        "checkpoint_sizes": [g.cp.size for g in cps],
    }
    if cps:
        base["checkpoint_size"] = max(g.cp.size for g in cps)
    if not check_origins(cps, origin, col):
        return col.report(size=n, **base)
    check_sizes(cps, n, col)
    sig_after = since.cp.size if since is not None else 0
    frontier = Frontier()
    checked, roots = scan(src, 1, GENESIS_PREV, keys, col, frontier, None, [g.cp.size for g in cps], workers, sig_after)
    signed_by = [check_extends(g, n, roots, keys, col) for g in cps]
    trusted_what = None
    if since is not None:
        if since.cp.size == 0:
            trusted_what = "nothing (the checkpoint is empty)"
        else:
            who = ", ".join(signed_by[0]) or "no trusted key"
            trusted_what = f"signatures of records 1..{since.cp.size} (checkpoint {since.label} signed by {who})"
    report = col.report(size=frontier.size, checked=checked, root=frontier.root().hex(), trusted=trusted_what, **base)
    report.key_events_line = key_events_line(keys.events)
    return report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m assay.audit.verify",
        description="Verify an assay audit ledger offline: every record, always. "
        "Exit 0 intact, 1 tampering found, 2 bad input.",
    )
    parser.add_argument("db_url", nargs="?", help="sqlite:///PATH, a SQLite file path, or postgresql+psycopg://…")
    parser.add_argument("--bundle", metavar="DIR",
                        help="verify an audit bundle (`assay audit export RUN_ID --bundle DIR`) instead of a database")
    parser.add_argument("--witness-key", action="append", default=[], metavar="VKEY|FILE",
                        help="--bundle: a witness whose cosignature the checkpoint must carry (repeatable)")
    parser.add_argument("--quorum", type=int, help="--bundle: witnesses that must have cosigned (default: all)")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--checkpoint", type=Path, help="a signed checkpoint note the ledger must extend")
    given.add_argument(
        "--since-checkpoint", type=Path,
        help="like --checkpoint, but take the signatures of the records it covers on its word "
        "(their bodies, chain and tree are still recomputed)",
    )
    parser.add_argument("--home", type=Path, help="an assay home: also check the newest checkpoint it holds")
    parser.add_argument("--trust", type=Path, help="trust file of public keys (default: trust the genesis key)")
    parser.add_argument("--full", action="store_true", help="accepted for older scripts; verification is always full")
    parser.add_argument("--workers", type=int, default=None, help="processes for signature checks (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.bundle is not None or args.db_url is None:
        if args.bundle is None or args.db_url is not None or args.checkpoint or args.since_checkpoint or args.home:
            parser.error("give a database URL, or --bundle DIR (with only --trust, --witness-key, --quorum, --json)")
        from assay.audit.bundle import run_verify

        return run_verify(args.bundle, str(args.trust) if args.trust else None, args.witness_key, args.quorum, args.json)
    try:
        report = verify_ledger(
            args.db_url, checkpoint=args.checkpoint, trust=args.trust, workers=args.workers,
            since_checkpoint=args.since_checkpoint, home=args.home,
        )
    except BadInput as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": exc.message}))
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.summary())
        if report.ok and report.root:
            print(f"size {report.size}, root {report.root}, trust: {report.trust}")
        for path in report.checkpoints:
            print(f"checkpoint: {path}")
        if report.trusted:
            print(f"trusted without re-checking: {report.trusted}")
        for e in report.errors[1:10]:
            print(f"  also: record {e['seq']}: {e['reason']}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
