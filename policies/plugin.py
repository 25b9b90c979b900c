"""The bundled gate plugin: registers the policy packs and evaluates policies at the gate.

Registered like any third-party plugin (entry point ``policies`` in the ``assay`` group).
The gate reads only the evidence document and the arguments the runner passes: the stage
whose rules apply, the waivers (plain ``Waiver.to_json()`` mappings, already read from the
ledger) and ``today``, the date for waiver expiry (None: today in UTC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from assay.commands.waivers import Waiver
from assay.kernel.hookspecs import hookimpl
from assay.kernel.types import RuleOutcome
from assay.policies.evaluate import evaluate_policy
from assay.policies.language import Policy
from assay.policies.packs import bundled_packs


@hookimpl
def register_policies(register: Callable[[str, str], None]) -> None:
    """Contribute ``assay:standard`` and ``assay:strict``."""
    for name, text in bundled_packs().items():
        register(name, text)


def parse_waivers(items: Sequence[Any]) -> list[Waiver]:
    """The waivers the runner passed (malformed ones are ignored)."""
    found = []
    for item in items or ():
        try:
            found.append(item if isinstance(item, Waiver) else Waiver.from_json(item))
        except (ValueError, AttributeError):
            continue
    return found


@hookimpl
def gate(evidence: dict[str, Any], policy: Any, stage: str, waivers: Sequence[Any],
         today: date | None) -> list[RuleOutcome] | None:
    """Evaluate an assay policy's rules of ``stage`` on the evidence (other policy types: not ours)."""
    if not isinstance(policy, Policy):
        return None
    return evaluate_policy(policy, evidence, stage=stage, waivers=parse_waivers(waivers), today=today)
