"""Proving a ledger extends a checkpoint, re-checking only the records after it (``verify_extension``).

The first m records (the checkpoint's size) are covered by the ledger's stored Merkle tree, proven
equal to the checkpoint's root, and by inclusion proofs of their key records and of record m,
which anchors the chain; the records after m are checked in full, and a consistency proof joins
the checkpoint's tree to the current one. This is what assay runs before signing its own next
checkpoint; a user's ``verify`` always runs the full pass instead.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature

from assay.audit.checkpoints import Given, check_key_events, check_note, check_origins, check_sizes
from assay.audit.keystate import KeyState, key_events_line
from assay.audit.merkle import (
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from assay.audit.note import Checkpoint
from assay.audit.records import check_row, ed25519_key, scan
from assay.audit.report import Collector, VerifyReport
from assay.audit.source import Source
from assay.audit.trust import TrustedKey

_FORKED = "ledger is not a consistent extension of the checkpoint ({}): history rewritten or forked"


def extend(src: Source, trusted: list[TrustedKey] | None, trust_src: str | None, g: Given, workers: int) -> VerifyReport:
    """Prove the ledger in ``src`` extends the non-empty checkpoint ``g`` (see the module docstring)."""
    cp, m = g.cp, g.cp.size
    keys = KeyState(trusted)
    col = Collector(keys)
    origin = src.origin()
    n = src.max_seq()
    base: dict[str, Any] = {
        "trust": keys.describe(trust_src),
        "origin": origin,
        "mode": "extend",
        "checkpoints": [g.label],
        "checkpoint_sizes": [m],
        "checkpoint_size": m,
        "trusted": f"records 1..{m} through the stored Merkle tree, proven equal to the root of {g.label}",
    }
    if not check_origins([g], origin, col):
        return col.report(size=n, **base)
    if n < m:
        check_sizes([g], n, col)
        return col.report(size=n, **base)
    # 1. The stored tree of the first m records must be the checkpoint's tree.
    if not _stored_tree_is_the_checkpoints(src, cp, col):
        return col.report(size=n, **base)
    # 2. Key records up to m, each proven included in the checkpoint's tree.
    _check_key_records(src, cp, keys, col)
    check_key_events(cp, keys.events, col, g.label)
    check_note(g.text, cp, keys, col, g.label)
    # 3. The last checkpointed record anchors the chain of the new ones.
    anchor = _anchor(src, cp, col)
    if anchor is None:
        return col.report(size=n, **base)
    # 4. Everything new, fully.
    new_leaves: list[bytes] = []
    checked, _ = scan(src, m + 1, anchor, keys, col, _Sink(m), new_leaves, (), workers)
    size = m + len(new_leaves)
    # 5. Consistency proof from the checkpoint to the current tree.
    new_root = _consistent_root(src, cp, new_leaves, col)
    if new_root is None:
        return col.report(size=size, checked=checked, **base)
    report = col.report(size=size, checked=checked, root=new_root.hex(), **base)
    report.key_events_line = key_events_line(keys.events)
    return report


def _stored_tree_is_the_checkpoints(src: Source, cp: Checkpoint, col: Collector) -> bool:
    try:
        if subtree_hash(0, cp.size, src.stored_node) != cp.root:
            raise ProofError("the first records hash to a different root")
    except ProofError as exc:
        col.add(None, _FORKED.format(exc))
        return False
    return True


def _check_key_records(src: Source, cp: Checkpoint, keys: KeyState, col: Collector) -> None:
    """Each key record up to the checkpoint: included in its tree, well formed, validly signed."""
    m = cp.size
    for row in src.key_rows(m):
        seq = row[0]
        reason = None
        try:
            verify_inclusion(seq - 1, m, leaf_hash(row[5]), inclusion_proof(seq - 1, m, src.stored_node), cp.root)
        except ProofError as exc:
            reason = f"key record is not in the checkpointed tree ({exc})"
        if reason is None:
            reason = check_row(row, row[4], {})
        if reason is None:
            reason = keys.check(seq, row[3].hex(), row[2], row[7])
        if reason is None:
            pub = keys.pub.get(row[3].hex())
            try:
                if pub is None:
                    raise InvalidSignature()
                ed25519_key(pub).verify(row[6], row[5])
            except InvalidSignature:
                reason = "bad signature on key record"
        if reason:
            col.add(seq, reason)
        keys.events.append((seq, row[5]))


def _anchor(src: Source, cp: Checkpoint, col: Collector) -> bytes | None:
    """The hash of record m (the checkpoint's last), proven to be the tree's last leaf; None on a finding."""
    m = cp.size
    last = src.row(m)
    if last is None:
        col.add(m, f"record {m} (the checkpoint's last) is missing")
        return None
    try:
        verify_inclusion(m - 1, m, leaf_hash(last[5]), inclusion_proof(m - 1, m, src.stored_node), cp.root)
    except ProofError as exc:
        col.add(m, f"record {m} is not the checkpoint's last record ({exc})")
        return None
    return last[5]


def _consistent_root(src: Source, cp: Checkpoint, new_leaves: list[bytes], col: Collector) -> bytes | None:
    """The current tree's root, proven consistent with the checkpoint's; None on a finding."""
    m = cp.size
    size = m + len(new_leaves)
    node = _hybrid(src, m, new_leaves)
    try:
        new_root = subtree_hash(0, size, node)
        if size == m:
            if new_root != cp.root:
                raise ProofError("stored tree does not match the checkpoint root")
        else:
            verify_consistency(m, size, consistency_proof(m, size, node), cp.root, new_root)
    except ProofError as exc:
        col.add(None, _FORKED.format(exc))
        return None
    return new_root


class _Sink(Frontier):
    """A frontier that only counts (incremental mode keeps the new leaves itself)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.nodes: list[bytes] = []

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        self.size += 1
        return []


def _hybrid(src: Source, m: int, new_leaves: list[bytes]) -> Any:
    """Perfect-subtree hashes: stored ones for leaves < m, computed from verified leaves beyond."""
    cache: dict[tuple[int, int], bytes] = {}

    def node(level: int, idx: int) -> bytes:
        key = (level, idx)
        if key in cache:
            return cache[key]
        start, end = idx << level, (idx + 1) << level
        if end <= m:
            h = src.stored_node(level, idx)
        elif start >= m:
            if end - m > len(new_leaves):
                raise ProofError("subtree beyond the ledger's end")
            h = root_from_leaves(new_leaves[start - m : end - m])
        else:
            h = node_hash(node(level - 1, 2 * idx), node(level - 1, 2 * idx + 1))
        cache[key] = h
        return h

    return node
