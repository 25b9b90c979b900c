"""Boundaries a test enforces: who may import whom.

The import graph of the package is built by grimp (the library behind import-linter), over
the package laid out as setuptools maps it (core/ -> assay, plugins/ -> assay.plugins, ...),
counting every import, also those inside functions. The rules:

- a plugin imports no other plugin module, and from the rest of assay only the public kit
  (``assay``, ``assay.kit``, ``assay.errors``) and the ledger (``assay.audit``);
- core (``assay.*`` outside the three rooms, and ``assay.web``) imports no plugin;
- ``assay.audit`` imports nothing from core, plugins or policies (it is the bottom layer and
  verifies on a machine without the rest);
- ``assay.policies`` imports no plugin.

Imports that broke a rule were listed below in ``STILL_CROSSING``, each group with the part of
issue 12 that removed it; the list is empty now. It only shrinks: an entry that no longer
occurs fails the test, so it must be deleted with the import it excused, and any new crossing
fails at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = {"core": "assay", "plugins": "assay/plugins", "policies": "assay/policies", "audit": "assay/audit"}
KIT = {"assay", "assay.kit", "assay.errors"}

#: Imports that cross a boundary today, with what removes them (issue 12, "rooms that show it"):
#: none left. A crossing excused here again needs its group and the part of an issue that removes it.
STILL_CROSSING: dict[str, set[tuple[str, str]]] = {}

GRAPH = """
import json, sys
import grimp
graph = grimp.build_graph("assay", cache_dir=None)
print(json.dumps({m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}))
"""


def room(module: str) -> str:
    for name in ("plugins", "policies", "audit", "web"):
        if module == f"assay.{name}" or module.startswith(f"assay.{name}."):
            return name
    return "core"


def crosses(src: str, dst: str, imported: str) -> bool:
    """Whether an import from room ``src`` of module ``imported`` (in room ``dst``) breaks a rule."""
    if src == "plugins":
        return imported not in KIT and dst not in ("audit",) and imported != "assay.plugins"
    if src in ("core", "web", "policies"):
        return dst == "plugins"
    return src == "audit" and dst != "audit"


def crossings(graph: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Every ``(importer, imported)`` pair inside assay that breaks one of the rules."""
    out = set()
    for importer, imported in ((a, b) for a, bs in graph.items() for b in bs):
        if not imported.startswith("assay") or importer == imported:
            continue
        src, dst = room(importer), room(imported)
        if crosses(src, dst, imported):
            out.add((importer, imported))
    return out


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The package's import graph, from a tree of symlinks laid out as the wheel is."""
    tree = tmp_path_factory.mktemp("layout")
    for src, dst in LAYOUT.items():  # subfolders keep their place: core/kernel -> assay/kernel
        for f in (ROOT / src).rglob("*.py"):
            target = tree / dst / f.relative_to(ROOT / src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    proc = subprocess.run([sys.executable, "-c", GRAPH], cwd=tree, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    return json.loads(proc.stdout)


def test_the_graph_sees_every_room_and_lazy_imports(graph: dict[str, list[str]]) -> None:
    assert {"assay.kernel.runner", "assay.plugins.training", "assay.policies.language", "assay.audit.ledger",
            "assay.web.app"} <= set(graph)
    assert len(graph) > 80
    # every package the wheel ships is in the graph
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert set(packages) <= set(graph)
    # imported inside a function only: still an edge
    assert "assay.kit" in graph["assay.commands.scaffold"]


@pytest.mark.parametrize(("importer", "imported", "crosses"), [
    ("assay.plugins.fairness", "assay.plugins.datachecks", True),
    ("assay.plugins.fairness", "assay.kit", False),
    ("assay.plugins.fairness", "assay.kernel.runner", True),
    ("assay.plugins.fairness", "assay.audit.ledger", False),
    ("assay.kernel.runner", "assay.plugins.training", True),
    ("assay.commands.governance", "assay.plugins.loaders", True),
    ("assay.audit.ledger", "assay.storage.settings", True),
    ("assay.audit.ledger", "assay.audit.merkle", False),
    ("assay.kernel.runner", "assay.audit.ledger", False),
])
def test_the_rules(importer: str, imported: str, crosses: bool) -> None:
    assert bool(crossings({importer: [imported]})) is crosses


def test_no_import_crosses_a_boundary_beyond_the_named_ones(graph: dict[str, list[str]]) -> None:
    found = crossings(graph)
    excused = set().union(*STILL_CROSSING.values())
    new = sorted(found - excused)
    assert not new, ("imports across rooms (plugins use only the public kit: assay, assay.kit; core imports "
                     "no plugin; audit imports nothing outside audit): "
                     + "; ".join(f"{a} -> {b}" for a, b in new))
    gone = sorted(excused - found)
    assert not gone, ("these imports no longer occur: delete them from STILL_CROSSING so the list only shrinks: "
                      + "; ".join(f"{a} -> {b}" for a, b in gone))
