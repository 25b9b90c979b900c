"""Policy language and bundled policy packs (TOML): from evidence to a gate verdict.

Modules, one job each:

- ``expr``      the safe expression grammar: evidence paths, thresholds, ``when`` conditions
- ``locate``    line/column of every TOML key, for ``FILE:LINE:COL`` error messages
- ``language``  the policy TOML language: :class:`Policy`, :class:`Rule`, :func:`load_policy`
- ``evaluate``  policy × evidence (× waivers) → ``RuleOutcome`` list, fail closed
- ``waivers``   waivers: accepted rule failures for one model version, until a date
- ``packs``     the bundled packs ``assay:standard`` and ``assay:strict`` (``packs/*.toml``)
- ``plugin``    the bundled plugin: ``register_policies`` and ``gate`` hook implementations
- ``render``    verdict output: text, json, junit, markdown, sarif
- ``deploy``    deploy-time decisions on the ledger: verify an artifact, approvals, promotion
- ``cli``       the ``gate``, ``policy check``, ``waive``, ``verify``, ``approve`` and
                ``promote`` commands

Only the standard library is imported here, so loading a policy stays cheap.
"""

from assay.policies.evaluate import evaluate_policy
from assay.policies.language import Policy, Rule, load_policy, parse_policy

__all__ = ["Policy", "Rule", "evaluate_policy", "load_policy", "parse_policy"]
