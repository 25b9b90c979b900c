"""C2SP signed notes and tlog checkpoints (standard library and ``cryptography`` only).

A checkpoint body is three lines — origin, decimal tree size, base64 root hash — optionally followed
by extension lines. A signed note is the body, a blank line, then one line per signature:
``— <key name> <base64(key hash (4 bytes) ‖ Ed25519 signature (64 bytes))>``, where the key hash is
``SHA-256(key name ‖ "\\n" ‖ 0x01 ‖ raw public key)[:4]``. The signature covers the body bytes,
including its final newline. Specs: c2sp.org/signed-note and c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

EM_DASH = "\u2014"
ED25519_ALG = 0x01


class NoteError(ValueError):
    """A note that is malformed or whose signatures do not verify."""


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)


def key_hash(name: str, public_raw: bytes) -> bytes:
    """The 4-byte key hash that names an Ed25519 key inside a signature line."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_ALG]) + public_raw).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"invalid note key name {name!r}: must be non-empty, without spaces or '+'")


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Append one Ed25519 signature line to ``body`` (which must end in a newline)."""
    _check_name(name)
    if not body.endswith("\n") or "\n\n" in body:
        raise NoteError("note body must end with a newline and contain no blank line")
    public_raw = private_key.public_key().public_bytes_raw()
    sig = private_key.sign(body.encode())
    blob = base64.b64encode(key_hash(name, public_raw) + sig).decode()
    return f"{body}\n{EM_DASH} {name} {blob}\n"


def parse_note(text: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its body and its signature lines (signatures not yet checked)."""
    if "\r" in text:
        raise NoteError("note contains carriage returns")
    sep = text.rfind("\n\n")
    if sep < 0:
        raise NoteError("note has no blank line between body and signatures")
    body, sig_block = text[: sep + 1], text[sep + 2 :]
    if not sig_block.endswith("\n"):
        raise NoteError("note signature block must end with a newline")
    sigs: list[NoteSignature] = []
    for line in sig_block[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise NoteError(f"malformed signature line {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise NoteError(f"signature line for {parts[1]!r} is not base64") from None
        if len(blob) < 5:
            raise NoteError(f"signature line for {parts[1]!r} is too short")
        sigs.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    if not sigs:
        raise NoteError("note has no signatures")
    return body, sigs


def verify_note(text: str, keys: Iterable[tuple[str, bytes]]) -> tuple[str, list[tuple[str, bytes]]]:
    """Verify ``text`` against trusted ``(name, raw Ed25519 public key)`` pairs.

    Returns the body and the keys whose signatures verified; raises NoteError when none does.
    Signatures by unknown keys are ignored (as the spec requires); a signature that claims a
    known key but does not verify is an error.
    """
    body, sigs = parse_note(text)
    by_hash: dict[tuple[str, bytes], list[bytes]] = {}
    for name, pub in keys:
        by_hash.setdefault((name, key_hash(name, pub)), []).append(pub)
    verified: list[tuple[str, bytes]] = []
    for s in sigs:
        candidates = by_hash.get((s.name, s.key_hash))
        if not candidates:
            continue
        ok = False
        for pub in candidates:
            try:
                Ed25519PublicKey.from_public_bytes(pub).verify(s.signature, body.encode())
            except (InvalidSignature, ValueError):
                continue
            ok = True
            verified.append((s.name, pub))
            break
        if not ok:
            raise NoteError(f"signature by {s.name} does not verify")
    if not verified:
        raise NoteError("no signature on the note is by a trusted key")
    return body, verified


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (origin, size, base64 root, extension lines)."""
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("checkpoint body needs origin, size and root lines")
    origin, size_s, root_s, *ext = lines[:-1]
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not (size_s.isascii() and size_s.isdigit()) or (len(size_s) > 1 and size_s[0] == "0"):
        raise NoteError(f"checkpoint size {size_s!r} is not a decimal number")
    try:
        root = base64.b64decode(root_s, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("checkpoint root is not base64") from None
    if len(root) != 32:
        raise NoteError(f"checkpoint root is {len(root)} bytes, not 32")
    if any(not e for e in ext):
        raise NoteError("checkpoint has an empty extension line")
    return Checkpoint(origin, int(size_s), root, tuple(ext))


def sign_checkpoint(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed-note text of a checkpoint."""
    return sign_note(cp.body(), name, private_key)
