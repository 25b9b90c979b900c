"""The trust file: which public keys may sign which ledger positions (standard library only).

``{home}/keys/trust.json`` (or any file passed with ``--trust``) looks like::

    {"format": "assay-trust/v1",
     "keys": [{"key_id": "<hex sha256 of raw key>", "public_key": "<hex raw Ed25519 key>",
               "name": "alice@laptop", "valid_from": 1, "valid_until": null, "revoked_at": null}]}

Windows are ledger sequence numbers. ``valid_from`` is the first position the key may sign; null
means "from the key's own ``key_added`` record", which lets a freshly created key introduce itself.
``valid_until`` is the last position it may sign (set when it is rotated out); ``revoked_at`` is the
position of its ``key_revoked`` record: it may sign nothing at or after it. The ledger's own
key_added / key_rotated / key_revoked records narrow these windows further during verification.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

FORMAT = "assay-trust/v1"


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

    @property
    def public_raw(self) -> bytes:
        return bytes.fromhex(self.public_key)

    def with_(self, **changes: Any) -> TrustedKey:
        return replace(self, **changes)


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
        try:
            raw = bytes.fromhex(pub) if isinstance(pub, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise TrustError(f"{w}: public_key must be 64 hex characters (a raw Ed25519 key)")
        if kid != hashlib.sha256(raw).hexdigest():
            raise TrustError(f"{w}: key_id does not match the SHA-256 of public_key")
        out.append(
            TrustedKey(
                key_id=kid,
                public_key=raw.hex(),
                name=str(e.get("name") or ""),
                valid_from=_opt_int(e, "valid_from", w),
                valid_until=_opt_int(e, "valid_until", w),
                revoked_at=_opt_int(e, "revoked_at", w),
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
    return json.dumps({"format": FORMAT, "keys": [asdict(k) for k in keys]}, indent=2) + "\n"
