"""Where the public test vectors live (tests/audit/vectors, in the repository) and how tests list them.

Listing a set that is missing or empty raises at collection time, so a broken checkout fails loudly
instead of parametrizing a test over zero cases.
"""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parent / "vectors"

# Every vector set the tests use, with the number of case files each holds.
VECTOR_SETS = {
    "transparency-dev-merkle/testdata/inclusion": 98,
    "transparency-dev-merkle/testdata/consistency": 98,
    "jcs-rfc8785/testdata/input": 6,
    "dsse": 1,
    "sigstore-rekor-v2": 3,
}


class MissingVectors(RuntimeError):
    pass


def case_files(name: str, pattern: str = "*.json") -> list[Path]:
    """The case files of one vector set, sorted; raises MissingVectors when there are none."""
    found = sorted(p for p in (VECTORS / name).rglob(pattern) if p.is_file() and p.name not in ("SOURCE.txt", "LICENSE"))
    if not found:
        raise MissingVectors(f"vector set {VECTORS / name} is missing or empty (it is part of the repository)")
    return found
