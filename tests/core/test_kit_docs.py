"""The plugin docs are the code: hook signatures match the hookspecs, versions are stated, examples run."""

from __future__ import annotations

import inspect
import re
import types

import pytest

import assay
import assay.kernel.hookspecs as hookspecs
from tests.conftest import ROOT

HOOKS_DOC = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
VERSION = tuple(int(p) for p in assay.__version__.split(".")[:2])


def hookspecs_by_name() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "assay_spec")}


def documented_signature(name: str) -> tuple[list[str], str]:
    """The argument names and return annotation docs/hooks.md gives under ``## name``."""
    section = re.search(rf"^## {name}\n(.*?)(?=^## |\Z)", HOOKS_DOC, flags=re.M | re.S)
    assert section, f"docs/hooks.md has no '## {name}' section"
    line = re.match(rf"`{name}\(([^)]*)\)(?: -> ([^`]+))?`", section.group(1))
    assert line, f"docs/hooks.md, ## {name}: the section must open with `{name}(ARGS) -> RETURNS`"
    args = [a.strip() for a in line.group(1).split(",") if a.strip()]
    return args, (line.group(2) or "None").strip()


@pytest.mark.parametrize("name", sorted(hookspecs_by_name()))
def test_each_documented_signature_is_the_hookspecs(name: str) -> None:
    signature = inspect.signature(hookspecs_by_name()[name])  # type: ignore[arg-type]
    args, returns = documented_signature(name)
    assert args == list(signature.parameters), f"docs/hooks.md documents {name}({', '.join(args)})"
    assert returns == str(signature.return_annotation), f"docs/hooks.md: {name} returns {returns}"


def test_a_drifted_signature_is_caught() -> None:
    """The comparison is not vacuous: a hookspec with one more argument no longer matches its doc."""

    def evaluate(run: object, model: object, splits: object, scores: object, target_domain: object,
                 extra: object) -> None: ...

    args, _ = documented_signature("evaluate")
    assert args != list(inspect.signature(evaluate).parameters)


@pytest.mark.parametrize("name", sorted(hookspecs_by_name()))
def test_each_hookspec_says_when_it_was_added(name: str) -> None:
    doc = inspect.getdoc(hookspecs_by_name()[name]) or ""
    added = re.findall(r"^\.\. versionadded:: (\d+)\.(\d+)$", doc, flags=re.M)
    assert len(added) == 1, f"{name}: one '.. versionadded:: X.Y' line in its docstring"
    assert tuple(map(int, added[0])) <= VERSION, f"{name}: added in a version after {assay.__version__}"
    for major, minor in re.findall(r"^\.\. versionchanged:: (\d+)\.(\d+)", doc, flags=re.M):
        assert tuple(map(int, added[0])) <= (int(major), int(minor)) <= VERSION, name


def test_the_evolution_rule_is_written_down() -> None:
    section = re.search(r"^## Evolving the hooks\n(.*?)(?=^## )", HOOKS_DOC, flags=re.M | re.S)
    assert section, "docs/hooks.md has no 'Evolving the hooks' section"
    text = section.group(1)
    assert "only added" in text and "warn_on_impl_args" in text and "versionadded" in text


def test_no_hookspec_warns_about_an_argument_it_no_longer_has() -> None:
    """``warn_on_impl_args`` names arguments the spec still declares (the release of warning before removal)."""
    for name, fn in hookspecs_by_name().items():
        opts = fn.assay_spec  # type: ignore[attr-defined]
        warned = set(opts.get("warn_on_impl_args") or {})
        assert warned <= set(inspect.signature(fn).parameters), name  # type: ignore[arg-type]


# --------------------------------------------------------------------------- plugins.md


PLUGINS_DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_plugins_doc_sends_no_author_into_core() -> None:
    assert "TRUSTED_TYPES" not in PLUGINS_DOC
    assert "make_search(estimator, trainer, cv" not in PLUGINS_DOC
    for block in re.findall(r"```python\n(.*?)```", PLUGINS_DOC, flags=re.S):
        for module in re.findall(r"^\s*(?:from|import) (assay[\w.]*)", block, flags=re.M):
            assert module in ("assay", "assay.kit", "assay.testing"), f"docs/plugins.md imports {module}"


def test_the_documented_tuner_registers_and_conforms() -> None:
    from assay.testing import check_tuner, registered_tuners

    source = next(b for b in re.findall(r"```python\n(.*?)```", PLUGINS_DOC, flags=re.S)
                  if "def register_tuners" in b)
    module = types.ModuleType("tuner_doc_example")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    (tuner,) = registered_tuners(module)
    assert tuner.name == "sampled_grid"
    results = check_tuner(tuner)
    assert all(r.passed for r in results) and len(results) == 7


def test_the_readme_trainer_registers_and_conforms() -> None:
    from assay.testing import check_trainer, registered_trainers

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    source = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "def register_trainers" in b)
    module = types.ModuleType("readme_trainer_example")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    (trainer,) = registered_trainers(module)
    results = check_trainer(trainer, "binary")  # raises TrainerCheckFailed, naming the check, if it breaks
    assert [r.name for r in results if r.passed][-1] == "check_skops_roundtrip"


# --------------------------------------------------------------------------- checks.md


CHECKS_DOC = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")


def documented_helpers() -> list[tuple[str, list[str]]]:
    """``(name, arguments)`` of each row of the table under "The kit's check helpers" in docs/checks.md."""
    section = re.search(r"^## The kit's check helpers\n(.*?)(?=^## |\Z)", CHECKS_DOC, flags=re.M | re.S)
    assert section, "docs/checks.md has no 'The kit's check helpers' section"
    rows = re.findall(r"^\| `(\w+)\(([^)]*)\)` \|", section.group(1), flags=re.M)
    return [(name, [a.strip() for a in args.split(",") if a.strip()]) for name, args in rows]


def test_the_documented_check_helpers_are_the_kits() -> None:
    import assay.kit as kit

    helpers = documented_helpers()
    assert [name for name, _ in helpers] == ["guarded", "run_checks", "with_fix", "dataset_drop"]
    for name, args in helpers:
        assert name in kit.__all__, f"docs/checks.md documents assay.kit.{name}, which the kit does not export"
        fn = getattr(kit, name)
        assert args == list(inspect.signature(fn).parameters), f"docs/checks.md documents {name}({', '.join(args)})"
        added = re.findall(r"^\.\. versionadded:: (\d+)\.(\d+)$", inspect.getdoc(fn) or "", flags=re.M)
        assert len(added) == 1 and tuple(map(int, added[0])) <= VERSION, f"assay.kit.{name}: one versionadded line"

