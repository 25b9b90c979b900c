"""Helpers for the data-and-task tests: runs built from a spec dict, real example data.

End-to-end runs go through the real CLI (``tests.conftest.run_assay``) with OpenMP pinned
to one thread: the 2-core machine is shared, and oversubscribed OpenMP spin-waits make
small fits crawl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, run_assay

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def make_spec(data: dict[str, Any], **sections: dict[str, Any]) -> Any:
    from assay.kernel.spec import RunSpec

    return RunSpec.model_validate({"project": {"name": "t"}, "data": data, **sections})


def make_run(spec: Any, home: Path | None = None) -> Any:
    from assay.kernel.types import Run
    from assay.storage.settings import Settings

    settings = Settings.resolve(home or Path("/nonexistent-assay-home"))
    return Run(run_id="test", spec=spec, spec_path="assay.toml", settings=settings)


def write_spec(directory: Path, text: str) -> Path:
    path = directory / "assay.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cli_run(spec: Path, home: Path, *sets: str) -> tuple[int, dict[str, Any], str]:
    """``assay run SPEC --json -q [--set ...]``: exit code, the JSON object, stderr."""
    args = [a for s in sets for a in ("--set", s)]
    result = run_assay("run", str(spec), "--json", "-q", *args, home=home, env=ONE_THREAD)
    try:
        out = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"assay run printed no JSON (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result.returncode, out, result.stderr


@pytest.fixture
def examples() -> Path:
    return EXAMPLES
