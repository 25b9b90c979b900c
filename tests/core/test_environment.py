"""The environment a run records: the fast package listing equals importlib.metadata's own answer."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from assay.environment import _name_and_version, capture, installed_packages


def _by_importlib() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name.lower(), dist.version)
    return dict(sorted(found.items()))


def test_installed_packages_equal_what_importlib_metadata_parses() -> None:
    fast = installed_packages()
    assert fast == _by_importlib()
    assert {"scikit-learn", "numpy", "pandas", "assay"} <= set(fast)


class _Dist(metadata.Distribution):
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self, filename: str) -> str | None:
        return self.text if filename == "METADATA" else None

    def locate_file(self, path: str | Path) -> Path:  # pragma: no cover - never asked
        raise NotImplementedError


header_value = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                       max_size=30).map(str.strip).filter(bool)


@given(name=header_value, version=header_value, extra=st.lists(st.tuples(
    st.sampled_from(["Summary", "Home-page", "Author", "License", "Requires-Dist", "Classifier"]), header_value),
    max_size=6), body=st.text(max_size=200))
def test_the_header_reader_agrees_with_the_email_parser(name: str, version: str, extra: list[tuple[str, str]],
                                                        body: str) -> None:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"{k}: {v}" for k, v in extra)]
    dist = _Dist("\n".join(lines) + "\n\n" + body)
    assert _name_and_version(dist) == (dist.metadata["Name"], dist.version)


def test_capture_records_the_same_sections(tmp_path: Path) -> None:
    env = capture(tmp_path)
    assert set(env) == {"python", "implementation", "platform", "machine", "executable", "cpu_count", "packages",
                        "numeric_libraries", "variables", "git"}
    assert env["packages"] == _by_importlib()
    assert env["git"] == {"commit": None, "dirty": None}  # not a git work tree
