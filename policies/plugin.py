"""The bundled gate plugin: registers the policy packs and evaluates policies at the gate.

Registered like any third-party plugin (entry point ``policies`` in the ``assay`` group).
The gate reads only the evidence document and the waivers the caller put in
``run.facts["waivers"]`` (plain ``Waiver.to_json()`` mappings, already read from the
ledger); ``run.facts["today"]`` (``YYYY-MM-DD``) fixes the date for waiver expiry, which
otherwise is today in UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from assay.hookspecs import hookimpl
from assay.policies.evaluate import evaluate_policy
from assay.policies.language import Policy
from assay.policies.packs import bundled_packs
from assay.policies.waivers import Waiver
from assay.types import RuleOutcome, Run


@hookimpl
def register_policies(register: Callable[[str, str], None]) -> None:
    """Contribute ``assay:standard`` and ``assay:strict``."""
    for name, text in bundled_packs().items():
        register(name, text)


def waivers_from_facts(run: Run) -> list[Waiver]:
    """The waivers the caller passed in ``run.facts["waivers"]`` (malformed ones are ignored)."""
    found = []
    for item in run.facts.get("waivers", ()) or ():
        try:
            found.append(item if isinstance(item, Waiver) else Waiver.from_json(item))
        except (ValueError, AttributeError):
            continue
    return found


def gate_date(run: Run) -> date | None:
    value = run.facts.get("today")
    if isinstance(value, date):
        return value
    return date.fromisoformat(value) if isinstance(value, str) and value else None


@hookimpl
def gate(run: Run, evidence: dict[str, Any], policy: Any) -> list[RuleOutcome] | None:
    """Evaluate an assay policy's train-stage rules on the evidence (other policy types: not ours)."""
    if not isinstance(policy, Policy):
        return None
    return evaluate_policy(policy, evidence, stage="train", waivers=waivers_from_facts(run), today=gate_date(run))
