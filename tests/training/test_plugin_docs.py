"""The trainer example in docs/plugins.md is real: it registers, and passes the conformance kit."""

from __future__ import annotations

import re
import types

from assay.testing import check_trainer, registered_trainers
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC, flags=re.S)


def test_the_documented_trainer_plugin_registers_and_conforms() -> None:
    source = next(b for b in python_blocks() if "def register_trainers" in b)
    module = types.ModuleType("extra_trees_doc_example")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    (trainer,) = registered_trainers(module)
    assert trainer.name == "extra_trees"
    results = check_trainer(trainer, "multiclass")
    assert all(r.passed for r in results)


def test_the_documented_sections_exist() -> None:
    headings = re.findall(r"^## (.+)$", DOC, flags=re.M)
    assert "Writing a trainer" in headings and "Writing a tuner" in headings
    assert (ROOT / "tests" / "training" / "successive_random.py").exists()
