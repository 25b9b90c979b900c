"""Fixtures for the policy tests: a complete, healthy evidence document and policy helpers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from assay.policies import Policy, parse_policy

HERE = Path(__file__).resolve().parent

GOOD_EVIDENCE: dict[str, Any] = {
    "run_id": "01JTESTRUN0000000000000000",
    "task": "binary",
    "metric": "roc_auc",
    "data": {"rows": 4000, "sensitive": ["sex", "race"]},
    "model": {"ref": "credit@3", "family": "hist_gradient_boosting", "artifact": "sha256:" + "ab" * 32},
    "metrics": {
        "train": {"roc_auc": 0.93},
        "cv": {"roc_auc": {"mean": 0.915, "std": 0.004}},
        "test": {"roc_auc": 0.92, "roc_auc_ci": [0.905, 0.934]},
    },
    "baseline": {"name": "dummy", "test": {"roc_auc": 0.5}},
    "gap": {"roc_auc": 0.01, "roc_auc_ci": [-0.004, 0.024]},
    "fairness": {
        "sex": {"selection_rate_ratio": 0.86, "demographic_parity_ratio": 0.86, "equalized_odds_difference": 0.04},
        "race": {"selection_rate_ratio": 0.91, "demographic_parity_ratio": 0.91, "equalized_odds_difference": 0.03},
    },
    "checks": {
        "leakage": {"duplicates": {"status": "pass", "value": 0, "detail": {}},
                    "target_proxy": {"status": "pass", "value": 0.61, "detail": {}}},
        "data": {"missing": {"status": "pass", "value": 0.0, "detail": {}}},
        "generalization": {"cv_spread": {"status": "pass", "value": 0.004, "detail": {}}},
        "fairness": {"small_groups": {"status": "pass", "value": 0, "detail": {}}},
    },
    "selection": {
        "holdout": {"evaluations": 1, "configurations": 1, "earlier": [],
                    "metric": {"name": "roc_auc", "value": 0.92, "ci": [0.905, 0.934], "lower_adjusted": 0.905,
                               "improvement": {"over": "dummy", "value": 0.42, "lower_adjusted": 0.40}}},
        "siblings": {"count": 0, "runs": []},
    },
}


@pytest.fixture
def evidence() -> dict[str, Any]:
    """A fresh copy of a healthy run's evidence (every bundled rule passes on it)."""
    return copy.deepcopy(GOOD_EVIDENCE)


def policy_of(rules: str, header: str = "") -> Policy:
    """Parse a policy from TOML rule tables (for compact tests)."""
    return parse_policy(header + rules, source="test.toml")


def one_rule(**fields: Any) -> Policy:
    """A policy with a single rule built from keyword fields (TOML-encoded)."""
    import json

    lines = ["[[rules]]"]
    fields.setdefault("id", "r")
    for key, value in fields.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return parse_policy("\n".join(lines) + "\n", source="test.toml")
