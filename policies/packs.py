"""The bundled policy packs (``assay:standard``, ``assay:strict``), read from package data."""

from __future__ import annotations

from functools import cache
from importlib import resources

PACK_PREFIX = "assay:"


@cache
def bundled_packs() -> dict[str, str]:
    """Pack name → TOML text for every ``packs/*.toml`` shipped with assay."""
    folder = resources.files("assay.policies").joinpath("packs")
    packs = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            packs[PACK_PREFIX + entry.name.removesuffix(".toml")] = entry.read_text(encoding="utf-8")
    return packs
