"""The verified Merkle tree, kept in memory: every leaf and every complete perfect subtree.

Built from record hashes whose tree head equalled the root a full verification computed, so a
record read later is part of the verified ledger exactly when its hash is the leaf at its
position. Levels are append-only byte arrays (32 bytes a node): readers holding a size keep a
consistent view while the verifier appends.
"""

from __future__ import annotations

from assay.audit.merkle import EMPTY_ROOT, inclusion_proof, leaf_hash, node_hash, subtree_hash

HASH = 32


class MemoryTree:
    """Leaves (level 0) and the interior nodes of complete perfect subtrees, by level."""

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]
        self.size = 0

    def append(self, record_hash: bytes) -> None:
        leaf = leaf_hash(record_hash)
        self.levels[0] += leaf
        index = self.size
        self.size += 1
        h, level = leaf, 0
        while index & 1:
            left = self.node(level, index - 1)
            h = node_hash(left, h)
            level += 1
            index >>= 1
            if len(self.levels) <= level:
                self.levels.append(bytearray())
            self.levels[level] += h

    def node(self, level: int, idx: int) -> bytes:
        data = self.levels[level]
        return bytes(data[idx * HASH : (idx + 1) * HASH])

    def leaf(self, seq: int) -> bytes | None:
        """The leaf hash of record ``seq`` (1-based), or None beyond the tree."""
        if not 1 <= seq <= self.size:
            return None
        return self.node(0, seq - 1)

    def root(self, size: int | None = None) -> bytes:
        n = self.size if size is None else size
        if n == 0:
            return EMPTY_ROOT
        if n > self.size:
            raise ValueError(f"no tree of size {n}: {self.size} leaves are known")
        return subtree_hash(0, n, self.node)

    def proof(self, seq: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of record ``seq`` in the tree of the first ``size`` records."""
        if size > self.size:
            raise ValueError(f"no tree of size {size}: {self.size} leaves are known")
        return inclusion_proof(seq - 1, size, self.node)
