"""What a verification found: the ``VerifyReport`` it returns and the ``Collector`` of findings behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assay.audit.keystate import KeyState

MAX_ERRORS = 50


@dataclass
class VerifyReport:
    """The outcome of a verification: ``ok``, counts, and the first bad record when not ok.

    ``signers`` maps every key id the verification trusted — from the trust file, the genesis key,
    or introduced by a valid key record — to ``{"identity", "roles", "valid_from", "valid_until",
    "revoked_at", "public_key"}``. Windows are ledger positions: the key may sign seq ``s`` when
    ``valid_from`` is not None and ``valid_from <= s``, ``valid_until`` is None or ``s <=
    valid_until``, and ``revoked_at`` is None or ``s < revoked_at`` (``assay.audit.keyreplay.valid_at``);
    ``valid_from`` None means it may sign nothing. ``identity`` is who holds the key (the key id
    itself when no record or trust entry names one); a rotated-in key keeps its predecessor's
    identity and roles. ``roles`` is a subset of signer / approver / admin. Approvals are counted
    by distinct ``identity`` among keys with the approver or admin role that were valid at the
    approval's position (``assay.audit.keyreplay.approving_identities``): one person holding two
    keys counts once. Only meaningful when ``ok``; it reflects the key records replayed so far.
    """

    ok: bool
    size: int = 0
    checked: int = 0
    root: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "full"
    checkpoint_size: int | None = None
    trust: str = ""
    origin: str | None = None
    elapsed_s: float = 0.0
    key_events_line: str | None = None
    checkpoints: list[str] = field(default_factory=list)  # the checkpoint files the ledger was proven to extend
    checkpoint_sizes: list[int] = field(default_factory=list)
    trusted: str | None = None  # what was taken on a checkpoint's word instead of re-checked (None: nothing)
    signers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: attestation keys (ecdsa-p256) introduced by admins, in the shape of ``KeyState.attestors``
    attestors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        if self.ok:
            sizes = sorted(set(self.checkpoint_sizes))
            extra = ""
            if sizes:
                extra = f", consistent with checkpoint{'s' if len(sizes) > 1 else ''} at size {', '.join(map(str, sizes))}"
            return f"ledger intact: {self.checked} record(s) verified of {self.size}{extra}"
        where = f"record {self.first_bad_seq}" if self.first_bad_seq is not None else "ledger"
        return f"tampering found at {where}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "checked": self.checked,
            "root": self.root,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "errors": self.errors,
            "mode": self.mode,
            "checkpoint_size": self.checkpoint_size,
            "trust": self.trust,
            "origin": self.origin,
            "elapsed_s": round(self.elapsed_s, 4),
            "checkpoints": list(self.checkpoints),
            "trusted": self.trusted,
            "signers": self.signers,
            "attestors": self.attestors,
        }


class Collector:
    """Findings as they are made, ``(seq or None, reason)``; the report lists them in ledger order."""

    def __init__(self, keys: KeyState | None = None) -> None:
        self.errors: list[tuple[int | None, str]] = []
        self.keys = keys  # its replayed signers go into every report

    def add(self, seq: int | None, reason: str) -> None:
        self.errors.append((seq, reason))

    def report(self, **kw: Any) -> VerifyReport:
        errs = sorted(self.errors, key=lambda e: (e[0] is None, e[0] or 0))
        first = errs[0] if errs else None
        return VerifyReport(
            ok=not errs,
            first_bad_seq=first[0] if first else None,
            reason=first[1] if first else None,
            errors=[{"seq": s, "reason": r} for s, r in errs[:MAX_ERRORS]],
            signers=self.keys.signers() if self.keys is not None else {},
            attestors=self.keys.attestors() if self.keys is not None else {},
            **kw,
        )
