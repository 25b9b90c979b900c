"""RFC 6962 / 9162 Merkle hashing and proofs: known answers, public vectors, properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.audit import merkle as M
from tests.audit.public_vectors import VECTORS, case_files

VECTOR_DIR = VECTORS / "transparency-dev-merkle"

# RFC 9162 lets equal-size consistency checks compare roots of any length; this verifier also
# demands 32-byte roots there (the issue: "hashes that are not 32 bytes are rejected"). This one
# probe compares two equal 12-byte placeholder roots and expects acceptance; we reject it.
STRICTER_THAN_REFERENCE = {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


def _probes(kind: str) -> list[Path]:
    return case_files(f"transparency-dev-merkle/testdata/{kind}")


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def test_vector_folders_present(vectors: Path) -> None:
    assert len(_probes("inclusion")) == 98
    assert len(_probes("consistency")) == 98


def test_rfc6962_reference_tree(vectors: Path) -> None:
    ref = json.loads((vectors / "transparency-dev-merkle" / "rfc6962_reference_tree.json").read_text())
    leaves = [M.leaf_hash(bytes.fromhex(x)) for x in ref["leaf_inputs_hex"]]
    assert [h.hex() for h in leaves] == ref["node_hashes_by_level_hex"][0]
    level = leaves
    for expected in ref["node_hashes_by_level_hex"][1:]:
        level = [M.node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        assert [h.hex() for h in level] == expected
    for size, root in enumerate(ref["root_by_tree_size_hex"]):
        assert M.root_from_leaves(leaves[:size]).hex() == root


def test_rfc6962_known_answers() -> None:
    assert M.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert M.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert M.leaf_hash(b"L123456") == hashlib.sha256(b"\x00L123456").digest()
    assert M.node_hash(b"N123", b"N456") == hashlib.sha256(b"\x01N123N456").digest()


@pytest.mark.parametrize("path", _probes("inclusion"), ids=lambda p: str(p.relative_to(VECTOR_DIR / "testdata")))
def test_inclusion_vectors(path: Path) -> None:
    d = json.loads(path.read_text())
    proof = [_b64(p) for p in d["proof"] or []]
    try:
        M.verify_inclusion(d["leafIdx"], d["treeSize"], _b64(d["leafHash"]), proof, _b64(d["root"]))
        rejected = False
    except M.ProofError:
        rejected = True
    assert rejected == d["wantErr"], d["desc"]


@pytest.mark.parametrize("path", _probes("consistency"), ids=lambda p: str(p.relative_to(VECTOR_DIR / "testdata")))
def test_consistency_vectors(path: Path) -> None:
    d = json.loads(path.read_text())
    proof = [_b64(p) for p in d["proof"] or []]
    try:
        M.verify_consistency(d["size1"], d["size2"], proof, _b64(d["root1"]), _b64(d["root2"]))
        rejected = False
    except M.ProofError:
        rejected = True
    rel = str(path.relative_to(VECTOR_DIR / "testdata"))
    if rel in STRICTER_THAN_REFERENCE:
        assert rejected and not d["wantErr"]
        assert len(_b64(d["root1"])) != 32
    else:
        assert rejected == d["wantErr"], d["desc"]


def _tree(n: int) -> tuple[list[bytes], M.NodeSource]:
    leaves = [M.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]

    def node(level: int, idx: int) -> bytes:
        return M.root_from_leaves(leaves[idx << level : (idx + 1) << level])

    return leaves, node


def _flip(b: bytes, bit: int) -> bytes:
    i = (bit // 8) % len(b)
    return b[:i] + bytes([b[i] ^ (1 << (bit % 8))]) + b[i + 1 :]


def _shape(index: int, size: int, length: int) -> list[bool] | None:
    """The left/right hashing order RFC 9162 verification uses, or None if the pair is invalid."""
    if not 0 <= index < size:
        return None
    fn, sn, out = index, size - 1, []
    for _ in range(length):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            out.append(True)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            out.append(False)
        fn >>= 1
        sn >>= 1
    return out if sn == 0 else None


def _cshape(size1: int, size2: int, length: int) -> tuple[bool, list[tuple[bool, bool]]] | None:
    """The hashing order of RFC 9162 consistency verification, or None if the sizes are invalid."""
    if not 0 < size1 < size2:
        return None
    pow2 = size1 & (size1 - 1) == 0
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    out = []
    for _ in range(length - (0 if pow2 else 1)):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            out.append((True, True))
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            out.append((False, False))
        fn >>= 1
        sn >>= 1
    return (pow2, out) if sn == 0 else None


@st.composite
def tree_and_leaf(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(1, 300))
    return n, draw(st.integers(0, n - 1))


@st.composite
def tree_and_prefix(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(2, 300))
    return draw(st.integers(1, n - 1)), n


@settings(max_examples=150, deadline=None)
@given(tree_and_leaf(), st.data())
def test_inclusion_proofs_verify_and_mutations_fail(tl: tuple[int, int], data: st.DataObject) -> None:
    n, i = tl
    leaves, node = _tree(n)
    root = M.root_from_leaves(leaves)
    proof = M.inclusion_proof(i, n, node)
    M.verify_inclusion(i, n, leaves[i], proof, root)
    mutation = data.draw(st.sampled_from(["proof_bit", "drop", "add", "index", "size", "root", "leaf", "short_hash"]))
    bad_proof, bad_i, bad_n, bad_root, bad_leaf = list(proof), i, n, root, leaves[i]
    if mutation == "proof_bit":
        if not proof:
            mutation = "root"
        else:
            k = data.draw(st.integers(0, len(proof) - 1))
            bad_proof[k] = _flip(proof[k], data.draw(st.integers(0, 255)))
    if mutation == "drop":
        if not proof:
            mutation = "add"
        else:
            del bad_proof[data.draw(st.integers(0, len(proof) - 1))]
    if mutation == "add":
        bad_proof.insert(data.draw(st.integers(0, len(proof))), hashlib.sha256(b"x").digest())
    if mutation == "index":
        bad_i = data.draw(st.integers(0, 2 * n).filter(lambda x: x != i))
    if mutation == "size":
        bad_n = data.draw(st.integers(0, 2 * n + 2).filter(lambda x: x != n))
    if mutation == "root":
        bad_root = _flip(root, data.draw(st.integers(0, 255)))
    if mutation == "leaf":
        bad_leaf = _flip(leaves[i], data.draw(st.integers(0, 255)))
    if mutation == "short_hash":
        cut = data.draw(st.sampled_from([0, 1, 31, 33, 64]))
        target = data.draw(st.sampled_from(["root", "leaf", "proof"]))
        if target == "root":
            bad_root = (root * 3)[:cut]
        elif target == "leaf":
            bad_leaf = (leaves[i] * 3)[:cut]
        elif proof:
            bad_proof[0] = (proof[0] * 3)[:cut]
        else:
            bad_root = (root * 3)[:cut]
    if mutation in ("index", "size") and _shape(bad_i, bad_n, len(proof)) == _shape(i, n, len(proof)):
        # (index, size) only choose the left/right order in which the path is hashed; another pair
        # with the very same order is indistinguishable by any verifier (e.g. leaf 0 of 129 vs 130).
        return
    with pytest.raises(M.ProofError):
        M.verify_inclusion(bad_i, bad_n, bad_leaf, bad_proof, bad_root)


@settings(max_examples=150, deadline=None)
@given(tree_and_prefix(), st.data())
def test_consistency_proofs_verify_and_mutations_fail(mn: tuple[int, int], data: st.DataObject) -> None:
    m, n = mn
    leaves, node = _tree(n)
    r1, r2 = M.root_from_leaves(leaves[:m]), M.root_from_leaves(leaves)
    proof = M.consistency_proof(m, n, node)
    M.verify_consistency(m, n, proof, r1, r2)
    mutation = data.draw(st.sampled_from(["proof_bit", "drop", "add", "size1", "size2", "root1", "root2", "short"]))
    bp, bm, bn, b1, b2 = list(proof), m, n, r1, r2
    if mutation == "proof_bit":
        k = data.draw(st.integers(0, len(proof) - 1))
        bp[k] = _flip(proof[k], data.draw(st.integers(0, 255)))
    elif mutation == "drop":
        del bp[data.draw(st.integers(0, len(proof) - 1))]
    elif mutation == "add":
        bp.insert(data.draw(st.integers(0, len(proof))), hashlib.sha256(b"y").digest())
    elif mutation == "size1":
        bm = data.draw(st.integers(0, n + 3).filter(lambda x: x != m))
    elif mutation == "size2":
        bn = data.draw(st.integers(0, 2 * n + 2).filter(lambda x: x != n))
    elif mutation == "root1":
        b1 = _flip(r1, data.draw(st.integers(0, 255)))
    elif mutation == "root2":
        b2 = _flip(r2, data.draw(st.integers(0, 255)))
    else:
        cut = data.draw(st.sampled_from([0, 1, 31, 33]))
        which = data.draw(st.sampled_from(["root1", "root2", "proof"]))
        if which == "root1":
            b1 = (r1 * 2)[:cut]
        elif which == "root2":
            b2 = (r2 * 2)[:cut]
        else:
            bp[0] = (proof[0] * 2)[:cut]
    if mutation in ("size1", "size2") and _cshape(bm, bn, len(proof)) == _cshape(m, n, len(proof)):
        return  # same hashing order: indistinguishable by any verifier (see _shape)
    with pytest.raises(M.ProofError):
        M.verify_consistency(bm, bn, bp, b1, b2)


def test_equal_sizes_and_non_32_byte_roots_rejected() -> None:
    r = hashlib.sha256(b"r").digest()
    M.verify_consistency(5, 5, [], r, r)
    with pytest.raises(M.ProofError):
        M.verify_consistency(5, 5, [], r[:12], r[:12])
    with pytest.raises(M.ProofError):
        M.verify_consistency(5, 5, [r], r, r)
    with pytest.raises(M.ProofError):
        M.verify_inclusion(0, 1, r[:31], [], r[:31])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 11))
def test_frontier_and_subtrees_match_recursive_definition(n: int, level: int) -> None:
    leaves, node = _tree(n)
    f = M.Frontier()
    made = {}
    for leaf in leaves:
        for lv, ix, h in f.append(leaf):
            made[(lv, ix)] = h
    assert f.root() == M.root_from_leaves(leaves)
    for (lv, ix), h in list(made.items())[:50]:
        assert h == node(lv, ix)
    # append_subtree agrees with leaf-by-leaf appends
    g = M.Frontier()
    size = 1 << level
    full = (n // size) * size
    for start in range(0, full, size):
        g.append_subtree(level, node(level, start // size))
    for leaf in leaves[full:]:
        g.append(leaf)
    assert g.root() == f.root()
    assert M.Frontier(n, [node(lv, ix) for lv, ix in M.Frontier.positions(n)]).root() == f.root()
