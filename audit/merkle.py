"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification (standard library only).

Leaves are ``SHA-256(0x00 ‖ data)``, interior nodes ``SHA-256(0x01 ‖ left ‖ right)``, the empty
tree's root is ``SHA-256("")``. A tree of size ``n`` splits at the largest power of two below
``n``; every subtree the proofs need is then a *perfect* subtree ``(level, index)`` covering leaves
``[index·2^level, (index+1)·2^level)``, which is what the ledger stores and what ``NodeSource``
callables return. Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and rejects any hash that
is not 32 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: Returns the hash of the perfect subtree (level, index); level 0 are leaf hashes.
NodeSource = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof, index, size or hash that does not verify."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """Largest power of two strictly smaller than ``size`` (size ≥ 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (iterative, O(n))."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


class Frontier:
    """The compact range [0, size): the perfect subtrees along the right edge of a growing tree.

    ``append`` returns the interior nodes it completes as ``(level, index, hash)`` so the caller
    can store them; ``root`` folds the range into the tree head.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Iterable[bytes] = ()) -> None:
        self.size = size
        self.nodes: list[bytes] = list(nodes)
        if len(self.nodes) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} needs {bin(size).count('1')} nodes")

    @staticmethod
    def positions(size: int) -> list[tuple[int, int]]:
        """The (level, index) of each perfect subtree in the compact range [0, size), left to right."""
        out: list[tuple[int, int]] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        index = self.size
        self.size += 1
        made: list[tuple[int, int, bytes]] = []
        h = leaf
        level = 0
        while index >> level & 1:
            h = node_hash(self.nodes.pop(), h)
            level += 1
            made.append((level, index >> level, h))
        self.nodes.append(h)
        return made

    def append_subtree(self, level: int, h: bytes) -> None:
        """Append a whole perfect subtree of 2**level leaves (size must be a multiple of it)."""
        if self.size % (1 << level):
            raise ValueError(f"cannot append a level-{level} subtree at size {self.size}")
        index = self.size >> level
        self.size += 1 << level
        while index & 1:
            h = node_hash(self.nodes.pop(), h)
            index >>= 1
        self.nodes.append(h)

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for h in reversed(self.nodes[:-1]):
            acc = node_hash(h, acc)
        return acc


def subtree_hash(start: int, end: int, node: NodeSource) -> bytes:
    """MTH of leaves [start, end) for a subtree that starts aligned (as all RFC 6962 subtrees do)."""
    size = end - start
    if size <= 0:
        raise ValueError("empty subtree")
    if _is_pow2(size) and start % size == 0:
        return node(size.bit_length() - 1, start // size)
    k = _split(size)
    return node_hash(subtree_hash(start, start + k, node), subtree_hash(start + k, end, node))


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """RFC 9162 inclusion proof (audit path) for leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, node))
            start += k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, node: NodeSource) -> list[bytes]:
    """RFC 9162 consistency proof that the tree of ``size1`` leaves is a prefix of ``size2``."""
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to {size2}")
    out: list[bytes] = []

    def sub(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                out.append(subtree_hash(start, end, node))
            return
        k = _split(n)
        if m <= k:
            sub(m, start, start + k, complete)
            out.append(subtree_hash(start + k, end, node))
        else:
            sub(m - k, start + k, end, False)
            out.append(subtree_hash(start, start + k, node))

    sub(size1, 0, size2, True)
    return out


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        n = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash ({n})")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf and its audit path (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless ``proof`` shows leaf ``index`` is in the tree ``(size, root)``."""
    _check_hash(root, "root")
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ProofError unless ``proof`` shows tree ``(size1, root1)`` is a prefix of ``(size2, root2)``.

    Stricter than RFC 9162 in one respect: every root and proof node must be a 32-byte hash even
    when the sizes are equal and nothing is hashed.
    """
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
    if size1 < 0 or size2 < 0:
        raise ProofError("negative tree size")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal but the proof is not empty")
        if root1 != root2:
            raise ProofError("sizes are equal but the roots differ")
        return
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if _is_pow2(size1):
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")
