"""Who may sign and approve, from the ledger's key records (standard library and ``cryptography`` only).

The verifier (``assay.audit.verify.KeyState``) replays key_added / key_rotated / key_revoked records
in ledger order from a trust root and reports the outcome as ``VerifyReport.signers``. This module
holds the small pieces other code needs around that replay:

* ``trust_from_public_key`` — a trust root made of one public key (``--key PUB``): pass it as the
  trust list to ``verify_ledger`` / ``Ledger.verify(trusted_keys=...)``. The key is valid from its
  own key_added (the genesis key's self-signed record at seq 1) until it is rotated out, and not at
  or after its revocation; its successors by rotation, and any key it adds while it holds the admin
  role, are trusted through the signed records — nothing else is.
* ``valid_at`` and ``approving_identities`` — read ``VerifyReport.signers``.
* ``replay`` — the same replay over key records the writer reads inside its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from assay.audit.format import key_id_of
from assay.audit.keystate import KeyState
from assay.audit.trust import ADMIN, APPROVER, TrustedKey


def trust_from_public_key(public_raw: bytes) -> list[TrustedKey]:
    """A trust list whose only anchor is ``public_raw``; the verifier follows the ledger from it.

    The entry leaves its window and roles open on purpose: the key becomes valid at its own
    self-signed key_added (so only a genesis key works as a lone root), is admin there, and the
    replay narrows its window at its key_rotated / key_revoked records.
    """
    if len(public_raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return [TrustedKey(key_id_of(public_raw), public_raw.hex(), name="--key")]


def valid_at(signer: Mapping[str, Any], seq: int) -> bool:
    """Whether a ``VerifyReport.signers`` entry may sign ledger position ``seq``."""
    start = signer.get("valid_from")
    if start is None or seq < start:
        return False
    until = signer.get("valid_until")
    if until is not None and seq > until:
        return False
    revoked = signer.get("revoked_at")
    return revoked is None or seq < revoked


def approving_identities(signers: Mapping[str, Mapping[str, Any]],
                         approvals: Iterable[tuple[int, str]]) -> dict[str, int]:
    """Distinct identities among approvals ``(seq, key_id)``: identity -> seq of its first counted approval.

    An approval counts when its key was valid at its position and holds the approver or admin
    role; two keys of one identity count once.
    """
    out: dict[str, int] = {}
    for seq, key_id in approvals:
        signer = signers.get(key_id)
        if signer is None or not valid_at(signer, seq):
            continue
        if not {APPROVER, ADMIN} & set(signer.get("roles") or ()):
            continue
        out.setdefault(str(signer.get("identity") or key_id), seq)
    return out


def replay(rows: Iterable[tuple[int, str, str, bytes]], trusted: list[TrustedKey] | None) -> tuple[KeyState, list[tuple[int, str]]]:
    """Replay key records ``(seq, signer key_id, kind, body)`` in order; returns the state and the findings."""
    state = KeyState(trusted)
    problems: list[tuple[int, str]] = []
    for seq, kid, kind, body in rows:
        reason = state.check(seq, kid, kind, body)
        if reason:
            problems.append((seq, reason))
    return state, problems
