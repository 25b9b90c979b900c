"""C2SP signed notes (against a real Sigstore checkpoint) and DSSE envelopes (against the DSSE vectors)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

from assay.audit import dsse, merkle, note


def _rekor(vectors: Path) -> tuple[dict, list[tuple[str, bytes]]]:
    base = vectors / "sigstore-rekor-v2"
    bundle = json.loads((base / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_text())
    root = json.loads((base / "staging_trusted_root.json").read_text())
    keys = []
    for log in root["tlogs"]:
        if log["publicKey"]["keyDetails"] == "PKIX_ED25519":
            pub = load_der_public_key(base64.b64decode(log["publicKey"]["rawBytes"]))
            keys.append((log["baseUrl"].removeprefix("https://"), pub.public_bytes_raw()))  # type: ignore[union-attr]
    return bundle["verificationMaterial"]["tlogEntries"][0], keys


def test_sigstore_checkpoint_and_inclusion_proof(vectors: Path) -> None:
    entry, keys = _rekor(vectors)
    text = entry["inclusionProof"]["checkpoint"]["envelope"]
    body, verified = note.verify_note(text, keys)
    assert verified[0][0] == "log2025-alpha3.rekor.sigstage.dev"
    cp = note.parse_checkpoint(body)
    proof = entry["inclusionProof"]
    assert cp.size == int(proof["treeSize"]) == 4026479
    assert base64.b64encode(cp.root).decode() == proof["rootHash"]
    leaf = merkle.leaf_hash(base64.b64decode(entry["canonicalizedBody"]))
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    merkle.verify_inclusion(int(proof["logIndex"]), cp.size, leaf, hashes, cp.root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(int(proof["logIndex"]) - 1, cp.size, leaf, hashes, cp.root)
    # the witness cosignatures (other key types) are ignored; a tampered body is rejected
    with pytest.raises(note.NoteError):
        note.verify_note(text.replace("4026479", "4026480", 1), keys)
    with pytest.raises(note.NoteError):
        note.verify_note(text, [(name, bytes(32)) for name, _ in keys if "alpha3" not in name])


def test_own_checkpoint_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    cp = note.Checkpoint("assay.ledger/abc", 42, bytes(range(32)), ("assay-key-events 1 AAAA",))
    text = note.sign_checkpoint(cp, "assay.ledger/abc", key)
    assert text.startswith("assay.ledger/abc\n42\n") and "\n\n\u2014 assay.ledger/abc " in text
    body, _ = note.verify_note(text, [("assay.ledger/abc", pub)])
    assert note.parse_checkpoint(body) == cp
    with pytest.raises(note.NoteError):
        note.verify_note(text, [("other.name", pub)])
    with pytest.raises(note.NoteError):
        note.verify_note(text.replace("\n42\n", "\n43\n"), [("assay.ledger/abc", pub)])
    with pytest.raises(note.NoteError):
        note.parse_checkpoint("origin\n12\nAAAA\n")  # root is not 32 bytes


def _dsse_vectors(vectors: Path) -> tuple[dict, list[dict]]:
    doc = json.loads((vectors / "dsse" / "vectors.json").read_text(encoding="utf-8"))
    return doc["keys"], doc["vectors"]


def test_dsse_vectors(vectors: Path) -> None:
    keys, cases = _dsse_vectors(vectors)
    assert len(cases) == 9
    for case in cases:
        trusted = {k: bytes.fromhex(keys[k]["public"]) for k in case["trustedKeys"]}
        env = case["envelope"]
        payload = dsse.b64decode_any(env["payload"])
        assert dsse.pae(case["supportedPayloadTypes"][0] if case["expect"] == "accept" else env["payloadType"],
                        payload).hex() == case["pae"] or case["id"] == "payload-type-swapped"
        try:
            dsse.verify_envelope(env, trusted, case["threshold"], case["supportedPayloadTypes"])
            outcome = "accept"
        except dsse.DsseError:
            outcome = "reject"
        assert outcome == case["expect"], case["id"]


def test_dsse_sign_matches_vector_keys(vectors: Path) -> None:
    keys, cases = _dsse_vectors(vectors)
    seed = bytes.fromhex(keys["A"]["seed"])
    priv = Ed25519PrivateKey.from_private_bytes(seed)
    assert priv.public_key().public_bytes_raw().hex() == keys["A"]["public"]
    first = cases[0]
    payload = dsse.b64decode_any(first["envelope"]["payload"])
    env = dsse.sign_envelope(payload, first["envelope"]["payloadType"], priv, "A")
    assert env["signatures"][0]["sig"] == first["envelope"]["signatures"][0]["sig"]  # Ed25519 is deterministic
    assert dsse.pae(env["payloadType"], payload).hex() == first["pae"]


def test_checkpoint_sizes_are_ascii_decimal() -> None:
    root = "A" * 43 + "="
    assert note.parse_checkpoint(f"o\n12\n{root}\n").size == 12
    for size in ("\u0661\u0662", "012", "1_0", "+1", "", "٣"):
        with pytest.raises(note.NoteError):
            note.parse_checkpoint(f"o\n{size}\n{root}\n")
