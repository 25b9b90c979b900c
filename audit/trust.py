"""The trust file: which public keys may sign which ledger positions (standard library only).

``{home}/keys/trust.json`` (or any file passed with ``--trust``) looks like::

    {"format": "assay-trust/v1",
     "keys": [{"key_id": "<hex sha256 of raw key>", "public_key": "<hex raw Ed25519 key>",
               "name": "alice@laptop", "identity": "alice@laptop", "roles": ["admin"],
               "valid_from": 1, "valid_until": null, "revoked_at": null}]}

Windows are ledger sequence numbers. ``valid_from`` is the first position the key may sign; null
means "from the key's own ``key_added`` record" (only the genesis key, or a key listed here,
introduces itself). ``valid_until`` is the last position it may sign (set when it is rotated out);
``revoked_at`` is the position of its ``key_revoked`` record: it may sign nothing at or after it. The
ledger's own key_added / key_rotated / key_revoked records narrow these windows further during
verification.

``identity`` names the person or system holding the key (approvals count identities, not keys);
``name`` is its older spelling and is read when ``identity`` is absent. ``roles`` lists what the key
may do beyond signing ordinary records: ``signer`` (records only), ``approver`` (its approvals
count), ``admin`` (it may add and revoke keys). Both are optional: files written before they
existed still load, and a key listed without roles counts as ``admin`` if it is the ledger's
genesis key (the self-signed ``key_added`` at seq 1) and as ``signer`` otherwise — the verifier
decides which (``resolve_roles``).

``algorithm`` is ``ed25519`` when absent. An ``ecdsa-p256`` entry is an attestation key (its
``public_key`` is the 65-byte uncompressed SEC1 point, hex, and its key id that point's SHA-256):
it signs attestations such as model-signing bundles, never ledger records, and its only role is
``attestor``. The ledger's key_added record signed by an admin introduces it; a trust file entry
alone never makes it trusted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

FORMAT = "assay-trust/v1"

SIGNER, APPROVER, ADMIN = "signer", "approver", "admin"
ROLES = (SIGNER, APPROVER, ADMIN)
#: The one role of an attestation key (``algorithm`` ecdsa-p256).
ATTESTOR = "attestor"
ED25519, ECDSA_P256 = "ed25519", "ecdsa-p256"
ALGORITHMS = (ED25519, ECDSA_P256)


class TrustError(ValueError):
    """A trust file that cannot be read or is invalid."""


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: str
    name: str = ""
    valid_from: int | None = None
    valid_until: int | None = None
    revoked_at: int | None = None
    identity: str = ""
    #: None: the file does not say (see ``resolve_roles``).
    roles: tuple[str, ...] | None = None
    algorithm: str = ED25519

    @property
    def is_attestor(self) -> bool:
        return self.algorithm == ECDSA_P256

    @property
    def public_raw(self) -> bytes:
        return bytes.fromhex(self.public_key)

    @property
    def who(self) -> str:
        """The identity, falling back to the older ``name`` label."""
        return self.identity or self.name

    def valid_at(self, seq: int) -> bool:
        """Whether this entry's own window allows signing ledger position ``seq``."""
        if self.valid_from is not None and seq < self.valid_from:
            return False
        if self.valid_until is not None and seq > self.valid_until:
            return False
        return not (self.revoked_at is not None and seq >= self.revoked_at)

    def with_(self, **changes: Any) -> TrustedKey:
        return replace(self, **changes)


def resolve_roles(roles: tuple[str, ...] | None, genesis: bool) -> tuple[str, ...]:
    """The roles a key has when a trust entry may leave them out: admin for the genesis key, else signer."""
    if roles is not None:
        return roles
    return (ADMIN,) if genesis else (SIGNER,)


def parse_roles(value: Any, where: str) -> tuple[str, ...]:
    """A roles list (strings from ROLES; duplicates dropped, an empty list means signer); TrustError otherwise."""
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise TrustError(f"{where}: roles must be a list of strings (any of {', '.join(ROLES)})")
    unknown = [r for r in value if r not in ROLES]
    if unknown:
        raise TrustError(f"{where}: unknown role {unknown[0]!r} (valid roles: {', '.join(ROLES)})")
    return tuple(r for r in ROLES if r in value) or (SIGNER,)


def _opt_int(entry: dict[str, Any], field: str, where: str) -> int | None:
    v = entry.get(field)
    if v is None:
        return None
    if type(v) is not int or v < 0:
        raise TrustError(f"{where}: {field} must be a non-negative integer or null")
    return v


def parse_trust(doc: Any, where: str = "trust file") -> list[TrustedKey]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("keys"), list):
        raise TrustError(f"{where}: not an assay trust file (expected format {FORMAT!r} and a keys list)")
    out: list[TrustedKey] = []
    for i, e in enumerate(doc["keys"]):
        w = f"{where}: keys[{i}]"
        if not isinstance(e, dict):
            raise TrustError(f"{w} is not an object")
        pub = e.get("public_key")
        kid = e.get("key_id")
        algorithm = e.get("algorithm", ED25519)
        if algorithm not in ALGORITHMS:
            raise TrustError(f"{w}: unknown algorithm {algorithm!r} (valid: {', '.join(ALGORITHMS)})")
        try:
            raw = bytes.fromhex(pub) if isinstance(pub, str) else b""
        except ValueError:
            raw = b""
        if algorithm == ECDSA_P256:
            if len(raw) != 65 or raw[0] != 4:
                raise TrustError(f"{w}: public_key must be 130 hex characters (an uncompressed P-256 point)")
        elif len(raw) != 32:
            raise TrustError(f"{w}: public_key must be 64 hex characters (a raw Ed25519 key)")
        if kid != hashlib.sha256(raw).hexdigest():
            raise TrustError(f"{w}: key_id does not match the SHA-256 of public_key")
        identity = e.get("identity")
        if identity is not None and not isinstance(identity, str):
            raise TrustError(f"{w}: identity must be a string")
        roles = e.get("roles")
        name = str(e.get("name") or "")
        if algorithm == ECDSA_P256:
            if roles is not None and roles not in ([ATTESTOR], []):
                raise TrustError(f"{w}: an ecdsa-p256 key is an attestation key; its only role is {ATTESTOR!r}")
            roles = None
        out.append(
            TrustedKey(
                key_id=kid,
                public_key=raw.hex(),
                name=name or (identity or ""),
                valid_from=_opt_int(e, "valid_from", w),
                valid_until=_opt_int(e, "valid_until", w),
                revoked_at=_opt_int(e, "revoked_at", w),
                identity=identity or name,
                roles=(ATTESTOR,) if algorithm == ECDSA_P256 else None if roles is None else parse_roles(roles, w),
                algorithm=algorithm,
            )
        )
    return out


def load_trust(path: Path) -> list[TrustedKey]:
    """Read a trust file; TrustError names the file when it is missing or invalid."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrustError(f"trust file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise TrustError(f"trust file {path} is not readable JSON: {exc}") from None
    return parse_trust(doc, str(path))


def dump_trust(keys: list[TrustedKey]) -> str:
    entries = []
    for k in keys:
        e = asdict(k)
        e["roles"] = None if k.roles is None else list(k.roles)
        if k.algorithm == ED25519:
            del e["algorithm"]  # files stay as they were before attestation keys existed
        entries.append(e)
    return json.dumps({"format": FORMAT, "keys": entries}, indent=2) + "\n"
