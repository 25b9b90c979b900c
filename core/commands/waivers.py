"""Waivers: a named person accepts one rule's failure for one model version, until a date.

A waiver is a ``waiver`` ledger record (written by ``assay waive``) whose payload is
``{"rule", "model", "reason", "approver", "expires"}``. The gate receives waivers as plain
data and never reads the ledger itself. A waiver applies on every UTC day up to and
including ``expires`` and never after; it names either a rule id (covering every match of
a wildcard rule) or one expanded id such as ``no-leakage[leakage.duplicates]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from assay.errors import BadInput

WAIVER_KIND = "waiver"
_MODEL_REF = re.compile(r"[^@\s]+@\d+")


@dataclass(frozen=True)
class Waiver:
    """An accepted rule failure for one model version."""

    rule: str
    model: str
    reason: str
    approver: str
    expires: date
    seq: int | None = None
    key_id: str = ""

    def active_on(self, day: date) -> bool:
        """True on every day up to and including ``expires``."""
        return day <= self.expires

    def covers(self, outcome_id: str, rule_id: str) -> bool:
        return self.rule in (outcome_id, rule_id)

    def describe(self) -> str:
        where = f", ledger #{self.seq}" if self.seq is not None else ""
        return f"waived by {self.approver} until {self.expires.isoformat()}{where}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "model": self.model, "reason": self.reason,
                               "approver": self.approver, "expires": self.expires.isoformat()}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.key_id:
            out["key_id"] = self.key_id
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], seq: int | None = None, key_id: str = "") -> Waiver:
        """Read a waiver from a ledger payload (or :meth:`to_json` output); ValueError if malformed."""
        try:
            rule, model = str(data["rule"]), str(data["model"])
            reason, approver = str(data["reason"]), str(data["approver"])
            expires = date.fromisoformat(str(data["expires"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"malformed waiver {dict(data)!r}: {exc}") from exc
        return cls(rule, model, reason, approver, expires,
                   seq if seq is not None else data.get("seq"), key_id or str(data.get("key_id", "")))


def parse_expiry(text: str, today: date | None = None) -> date:
    """Validate ``--expires YYYY-MM-DD``: a real date, not in the past."""
    try:
        expires = date.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--expires {text!r}: expected a date as YYYY-MM-DD, e.g. 2030-06-30") from None
    today = today or utc_today()
    if expires < today:
        raise BadInput(f"--expires {text}: the date is in the past (today is {today.isoformat()} UTC); "
                       "a waiver must expire today or later")
    return expires


def make_waiver(rule: str, model: str, reason: str, approver: str, expires: date) -> Waiver:
    """Build a waiver from command-line values, rejecting blanks and malformed references."""
    if not rule.strip():
        raise BadInput("RULE_ID: give the id of the rule to waive (as shown by `assay gate`)")
    if not _MODEL_REF.fullmatch(model):
        raise BadInput(f"--model {model!r}: expected NAME@VERSION with a version number, e.g. credit-risk@3")
    if not reason.strip():
        raise BadInput("--reason: say why the failure is accepted (it is recorded in the ledger)")
    if not approver.strip():
        raise BadInput("--approver: name the person who accepts the risk")
    return Waiver(rule.strip(), model, reason.strip(), approver.strip(), expires)


def utc_today() -> date:
    return datetime.now(UTC).date()


def waivers_from_records(records: Iterable[Any], model: str) -> list[Waiver]:
    """The waivers for ``model`` among ledger records (objects with ``kind``, ``payload``, ``seq``).

    Malformed waiver payloads are skipped: they cannot have been written by ``assay waive``.
    """
    found = []
    for record in records:
        if getattr(record, "kind", None) != WAIVER_KIND:
            continue
        payload = getattr(record, "payload", {}) or {}
        if payload.get("model") != model:
            continue
        try:
            found.append(Waiver.from_json(payload, getattr(record, "seq", None), getattr(record, "key_id", "")))
        except ValueError:
            continue
    return found


def trusted_waivers(signed: Any, model: str, artifact: str | None) -> tuple[list[Waiver], list[str]]:
    """``model``'s waivers in a verified ledger (``assay.storage.signed.SignedLedger``), and why others were ignored.

    Every record of a verified ledger is signed by a key valid at its position; a waiver also has to
    name this version's artifact, and (where the trust list gives roles) come from an approver or admin.
    """
    accepted, ignored = [], []
    for record in signed.records:
        if record.kind != WAIVER_KIND or (record.payload or {}).get("model") != model:
            continue
        named = (record.payload or {}).get("artifact")
        if artifact and named != artifact:
            ignored.append(f"waiver at ledger seq {record.seq} for {model} is ignored: it names artifact {named}, "
                           f"not this version's {artifact}")
            continue
        roles = signed.signer(record.key_id)["roles"]
        if roles and not {"approver", "admin"} & set(roles):
            ignored.append(f"waiver at ledger seq {record.seq} for {model} is ignored: key {record.key_id} has "
                           f"role(s) {', '.join(roles)}, and waivers need an approver or admin")
            continue
        accepted.append(record)
    return waivers_from_records(accepted, model), ignored


def active_waivers(waivers: Iterable[Waiver], model: str | None, day: date) -> list[Waiver]:
    """The waivers that apply to ``model`` on ``day`` (all models if ``model`` is None)."""
    return [w for w in waivers if (model is None or w.model == model) and w.active_on(day)]
