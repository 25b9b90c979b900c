"""DSSE v1 envelopes: pre-authentication encoding, Ed25519 signing and verification.

PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, where LEN is the decimal byte
length (of the UTF-8 type). Verification accepts standard and URL-safe base64, requires a supported
payload type, and counts distinct trusted keys against the threshold; signatures without a keyid
are tried against every trusted key. Standard library and ``cryptography`` only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class DsseError(ValueError):
    """An envelope that is malformed or does not meet the signature threshold."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def b64decode_any(value: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not."""
    if not isinstance(value, str):
        raise DsseError("base64 field is not a string")
    s = value.strip()
    s += "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return base64.urlsafe_b64decode(s)
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise DsseError("invalid base64") from None


def sign_envelope(payload: bytes, payload_type: str, private_key: Ed25519PrivateKey, keyid: str) -> dict[str, Any]:
    """A DSSE envelope with one Ed25519 signature (standard base64)."""
    sig = private_key.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }


def verify_envelope(
    envelope: Mapping[str, Any],
    trusted: Mapping[str, bytes],
    threshold: int = 1,
    payload_types: Iterable[str] = (INTOTO_PAYLOAD_TYPE,),
) -> bytes:
    """Verify ``envelope`` against ``trusted`` {keyid: raw Ed25519 public key}; return the payload.

    Raises DsseError unless at least ``threshold`` distinct trusted keys signed the PAE.
    """
    if threshold < 1:
        raise DsseError("threshold must be at least 1")
    ptype = envelope.get("payloadType")
    if not isinstance(ptype, str) or not ptype or ptype not in set(payload_types):
        raise DsseError(f"unsupported payloadType {ptype!r}")
    payload = b64decode_any(envelope.get("payload", ""))
    message = pae(ptype, payload)
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise DsseError("envelope has no signatures")
    keys = {kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in trusted.items()}
    accepted: set[str] = set()
    for s in sigs:
        if not isinstance(s, Mapping):
            continue
        try:
            sig = b64decode_any(s.get("sig", ""))
        except DsseError:
            continue
        kid = s.get("keyid")
        candidates = [kid] if kid else list(keys)
        for c in candidates:
            key = keys.get(c) if isinstance(c, str) else None
            if key is None or c in accepted:
                continue
            try:
                key.verify(sig, message)
            except InvalidSignature:
                continue
            accepted.add(c)
            break
    if len(accepted) < threshold:
        raise DsseError(f"{len(accepted)} valid signature(s) by trusted keys, {threshold} required")
    return payload
