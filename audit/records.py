"""The checks every record gets: its position, chain link, hash, indexed columns and signature.

``scan`` walks the ledger from a position in ranges of ``CHUNK`` sequence numbers aligned to the
Merkle tree, over several processes when it is long (each reads and checks its own ranges over
its own connection), while this process replays key validity (``KeyState``) and folds the ranges'
leaves or subtree roots into the Merkle frontier, in ledger order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from assay.audit.format import KEY_KINDS, record_hash
from assay.audit.keystate import KeyState, named_key
from assay.audit.merkle import Frontier, leaf_hash, root_from_leaves
from assay.audit.report import Collector
from assay.audit.source import Row, Source, blob

CHUNK = 2048
PARALLEL_MIN = 6000

_PUBKEYS: dict[bytes, Ed25519PublicKey] = {}


def ed25519_key(raw: bytes) -> Ed25519PublicKey:
    """The public key object for ``raw`` (parsed once per process: a ledger has few keys)."""
    key = _PUBKEYS.get(raw)
    if key is None:
        key = _PUBKEYS[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return key


_DECODE = json.JSONDecoder().decode


def check_row(row: Row, prev: bytes, pubkeys: dict[str, bytes]) -> str | None:
    """Why ``row`` is bad given the previous record's hash, or None."""
    seq, run_id, kind, key_id, prev_col, h, sig, body = row
    try:
        doc = _DECODE(body.decode())
    except ValueError:  # UnicodeDecodeError included
        return "record body is not valid JSON"
    if not isinstance(doc, dict):
        return "record body is not a JSON object"
    claimed = doc.get("seq")
    if claimed != seq:
        return f"record stored at seq {seq} claims seq {claimed!r} (moved, swapped or inserted)"
    if doc.get("prev_hash") != prev.hex():
        return "chain broken: prev_hash in the signed body is not the previous record's hash"
    if prev_col != prev:
        return "chain broken: stored prev_hash column is not the previous record's hash"
    if record_hash(prev, body) != h:
        return "hash mismatch: the record's bytes do not hash to its stored hash"
    kid = key_id.hex()
    if doc.get("key_id") != kid:
        return "stored key_id column differs from the signed body"
    if doc.get("kind") != kind or doc.get("run_id") != run_id:
        return "stored kind/run_id columns differ from the signed body"
    pub = pubkeys.get(kid)
    if pub is not None:
        try:
            ed25519_key(pub).verify(sig, h)
        except InvalidSignature:
            return f"bad signature (does not verify with key {kid})"
    return None


@dataclass
class Chunk:
    """What checking one range of sequence numbers found (small: no rows travel between processes).

    ``segments`` are runs of consecutive records signed by one key, in order, ``(first, last,
    key_id, kind, body, hash)``; key records are segments of their own and carry their body and
    hash, so the caller can replay key validity in ledger order without seeing every row.
    """

    errors: list[tuple[int, str]]
    segments: list[tuple[int, int, str, Any, bytes | None, bytes | None]]
    leaves: bytes  # the 32-byte leaf hashes, concatenated
    root: bytes | None  # the subtree root of a range of CHUNK records without gaps


def check_range(src: Source, first: int, last: int, start_seq: int, start_prev: bytes,
                pubkeys: dict[str, bytes], sig_after: int = 0) -> Chunk:
    """Check records ``first..last``; the chain is anchored at the last stored record before ``first``.

    Signatures are checked only for records after ``sig_after`` (0: all of them).
    """
    prev = start_prev
    if first > start_seq:
        before = src.query("SELECT hash FROM ledger_records WHERE seq < ? AND seq >= ? ORDER BY seq DESC LIMIT 1",
                           (first, start_seq))
        if before:
            prev = blob(before[0][0])
    errors: list[tuple[int, str]] = []
    segments: list[tuple[int, int, str, Any, bytes | None, bytes | None]] = []
    leaves: list[bytes] = []
    expected = first
    for row in src.iter_range(first, last):
        seq, kind = row[0], row[2]
        if seq != expected:
            errors.append((expected, f"gap: record {expected} is missing (next stored is {seq})"))
        expected = seq + 1
        reason = check_row(row, prev, pubkeys if seq > sig_after else _NO_KEYS)
        if reason:
            errors.append((seq, reason))
        kid = row[3].hex()
        if kind in KEY_KINDS:
            segments.append((seq, seq, kid, kind, row[7], row[5]))
        elif segments and segments[-1][1] == seq - 1 and segments[-1][2] == kid and segments[-1][4] is None:
            segments[-1] = (segments[-1][0], seq, kid, None, None, None)
        else:
            segments.append((seq, seq, kid, None, None, None))
        leaves.append(leaf_hash(row[5]))
        prev = row[5]
    if expected <= last:
        after = src.query("SELECT MIN(seq) FROM ledger_records WHERE seq > ?", (last,))[0][0]
        nxt = f"next stored is {after}" if after is not None else "none stored after it"
        errors.append((expected, f"gap: record {expected} is missing ({nxt})"))
    return Chunk(errors, segments, b"".join(leaves), root_from_leaves(leaves) if len(leaves) == CHUNK else None)


_NO_KEYS: dict[str, bytes] = {}
_WORKER_SOURCE: list[Source] = []


def _init_worker(url: str) -> None:
    # Each worker reads its own ranges over its own connection (never the parent's, forked or not).
    _WORKER_SOURCE[:] = [Source(url)]


def _worker_range(task: tuple[int, int, int, bytes, dict[str, bytes], int]) -> Chunk:
    return check_range(_WORKER_SOURCE[0], *task)


def worker_count(requested: int | None) -> int:
    if requested:
        return max(1, requested)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def signing_keys(src: Source, keys: KeyState, n: int) -> dict[str, bytes]:
    """Every public key the ledger or the trust file names, by key id, for the signature checks.

    A key id is the hash of its public key, so a signature that verifies under ``pubkeys[kid]``
    was made by that key; whether the key was allowed to sign at that position is decided
    separately, by replaying the key records in order (``KeyState``).
    """
    pubkeys = dict(keys.pub)
    for row in src.key_rows(n):
        try:
            payload = json.loads(row[7]).get("payload")
        except (ValueError, AttributeError):
            continue
        kid = payload.get("key_id") if isinstance(payload, dict) else None
        pub = named_key(payload, kid)
        if pub is not None and isinstance(kid, str):
            pubkeys.setdefault(kid, pub)
    return pubkeys


def replay_keys(chunk: Chunk, keys: KeyState, col: Collector) -> None:
    """Key validity for every record of ``chunk``, in ledger order."""
    for first, last, kid, kind, body, h in chunk.segments:
        if kind is not None:  # a key record: it may change which keys are valid after it
            reason = keys.check(first, kid, kind, body or b"")
            if reason:
                col.add(first, reason)
            keys.events.append((first, h or b""))
        elif keys.check(first, kid, None, b"") or (last != first and keys.check(last, kid, None, b"")):
            # Validity windows are intervals, so the ends decide; on failure name every bad record.
            for seq in range(first, last + 1):
                reason = keys.check(seq, kid, None, b"")
                if reason:
                    col.add(seq, reason)


def scan(
    src: Source,
    start_seq: int,
    start_prev: bytes,
    keys: KeyState,
    col: Collector,
    frontier: Frontier,
    leaves_out: list[bytes] | None,
    capture_at: Sequence[int],
    workers: int,
    sig_after: int = 0,
) -> tuple[int, dict[int, bytes]]:
    """Check every record from ``start_seq`` on; returns (records checked, {size: root} at capture_at).

    The records are checked in ranges of CHUNK sequence numbers aligned to the Merkle tree; with
    several workers each process reads and checks its own ranges, and this one only replays key
    validity and folds the ranges' leaves or subtree roots into the frontier, in order. Signatures
    of records up to ``sig_after`` are not checked (everything else is).
    """
    n = src.max_seq()
    pubkeys = signing_keys(src, keys, n)
    wanted = set(capture_at)
    captured: dict[int, bytes] = {}
    count = 0

    def ranges() -> Iterator[tuple[int, int, int, bytes, dict[str, bytes], int]]:
        first = start_seq
        while first <= n:
            last = min(n, ((first - 1) // CHUNK + 1) * CHUNK)
            yield first, last, start_seq, start_prev, pubkeys, sig_after
            first = last + 1

    def handle(chunk: Chunk) -> None:
        nonlocal count
        replay_keys(chunk, keys, col)
        for seq, reason in chunk.errors:
            col.add(seq, reason)
        size = len(chunk.leaves) // 32
        count += size
        crosses = any(frontier.size < c < frontier.size + size for c in wanted)
        if chunk.root is not None and frontier.size % CHUNK == 0 and leaves_out is None and not crosses:
            frontier.append_subtree(CHUNK.bit_length() - 1, chunk.root)
            if frontier.size in wanted:
                captured[frontier.size] = frontier.root()
            return
        for i in range(0, len(chunk.leaves), 32):
            leaf = chunk.leaves[i : i + 32]
            frontier.append(leaf)
            if leaves_out is not None:
                leaves_out.append(leaf)
            if frontier.size in wanted:
                captured[frontier.size] = frontier.root()

    if workers > 1 and n - start_seq + 1 >= PARALLEL_MIN:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(src.url,)) as pool:
            for chunk in pool.imap(_worker_range, ranges()):
                handle(chunk)
    else:
        for task in ranges():
            handle(check_range(src, *task))
    return count, captured
