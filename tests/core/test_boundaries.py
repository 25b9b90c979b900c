"""Boundaries a test enforces: only the runner calls hooks.

Every module of the package (``core/``, ``plugins/``, ``policies/``, ``audit/``) is parsed
and walked for uses of a plugin manager's ``hook`` relay (``pm.hook.NAME(...)``,
``getattr(pm.hook, NAME)``, ``self.pm.hook``). The runner (``core/kernel/runner.py``) is the one
module allowed to have them: it calls the stage hooks of training and monitoring runs and
collects what the ``register_*`` hooks contribute for every command
(``assay.kernel.runner.collect_trainers``, ``collect_tuners``, ``collect_policies``,
``add_plugin_commands``). The plugin manager itself (``core/kernel/manager.py``) needs no hook call:
it registers, blocks and inspects plugins through pluggy's own API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("core", "plugins", "policies", "audit")
RUNNER = "core/kernel/runner.py"

#: Modules that still call hooks, each with the part of issue 12 that removes the calls.
#: The list only shrinks: an entry whose module no longer calls a hook fails the test below.
STILL_CALLING: dict[str, str] = {}


def hook_uses(source: str) -> list[tuple[int, str]]:
    """``(line, expression)`` for every use of a ``.hook`` attribute in ``source``."""
    uses = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "hook":
            uses.append((node.lineno, ast.unparse(node)))
    return sorted(uses)


def package_modules() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py"))


def callers() -> dict[str, list[tuple[int, str]]]:
    found = {}
    for path in package_modules():
        uses = hook_uses(path.read_text(encoding="utf-8"))
        if uses:
            found[path.relative_to(ROOT).as_posix()] = uses
    return found


@pytest.mark.parametrize(("snippet", "expected"), [
    ("pm.hook.monitor(run=run)", [(1, "pm.hook")]),
    ("self.pm.hook.record(run=run, event=e)", [(1, "self.pm.hook")]),
    ("caller = getattr(pm.hook, name)\ncaller(register=r)", [(1, "pm.hook")]),
    ("relay = state.plugin_manager().hook\nrelay.register_commands(cli=cli)", [(1, "state.plugin_manager().hook")]),
    ("hookimpl = pluggy.HookimplMarker('assay')\n@hookimpl\ndef gate(run): ...", []),
    ("pm.get_hookcallers(plugin)", []),
])
def test_the_walk_finds_every_form_of_a_hook_call(snippet: str, expected: list[tuple[int, str]]) -> None:
    assert hook_uses(snippet) == expected


def test_the_walk_covers_the_whole_package() -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in package_modules()}
    assert {RUNNER, "core/commands/monitoring.py", "core/commands/cli.py", "core/commands/governance.py", "plugins/monitoring.py",
            "audit/ledger.py", "core/web/app.py"} <= modules
    assert len(modules) > 60


def test_only_the_runner_calls_hooks() -> None:
    found = callers()
    assert RUNNER in found, "the runner calls the hooks: the walk must see its calls"
    outside = {path: uses for path, uses in found.items() if path != RUNNER and path not in STILL_CALLING}
    assert not outside, (
        "only core/kernel/runner.py may call hooks; call the runner instead (assay.kernel.runner.collect_trainers, "
        "collect_tuners, collect_policies, add_plugin_commands, Runner, gate_stored_run, monitor_stored_run): "
        + "; ".join(f"{path}:{line}: {expr}" for path, uses in outside.items() for line, expr in uses))


def test_the_list_of_modules_still_calling_hooks_only_shrinks() -> None:
    found = callers()
    done = sorted(path for path in STILL_CALLING if path not in found)
    assert not done, f"{', '.join(done)} no longer call hooks: remove them from STILL_CALLING"
