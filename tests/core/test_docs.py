"""Every hook has its own heading in docs/hooks.md, and every documented hook exists."""

from __future__ import annotations

import inspect
import re

import assay.kernel.hookspecs as hookspecs
from tests.conftest import ROOT


def hook_names() -> set[str]:
    return {name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "assay_spec")}


def test_every_hook_is_documented() -> None:
    headings = set(re.findall(r"^## (\w+)$", (ROOT / "docs" / "hooks.md").read_text(), flags=re.M))
    documented = {h for h in headings if h.islower()}
    assert hook_names() - documented == set()
    assert documented - hook_names() == set()


def test_every_hookspec_has_a_docstring_saying_how_results_combine() -> None:
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert ":param" in doc, name
        assert re.search(r"first non-None|All (results|implementations|outcomes)", doc), name
