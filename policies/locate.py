"""Where each key of a TOML document is written: line and column, for precise error messages.

``tomllib`` parses values but forgets positions. This scanner walks the text once and
records, for every ``key = value`` line and every ``[table]`` / ``[[array]]`` header, the
1-based line and column of the key and of the value. Multi-line strings and arrays are
stepped over. Keys inside inline tables (``rules = [{...}]``) are not located; lookups fall
back to the nearest enclosing key that was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Key = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Position:
    """A 1-based line and column; ``value_col`` is where the value starts (0 if none)."""

    line: int
    col: int
    value_col: int = 0


def _read_key(text: str, i: int) -> tuple[list[str], int]:
    """Parse a (possibly dotted, possibly quoted) key at ``text[i:]``; return parts and the end."""
    parts: list[str] = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            j = i + 1
            buf = []
            while j < n and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        else:
            m = _BARE_KEY.match(text, i)
            if not m:
                return parts, i
            parts.append(m.group(0))
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, i


def _skip_value(lines: list[str], row: int, col: int) -> int:
    """Return the index of the last line of the value starting at ``lines[row][col]``."""
    depth = 0
    r, c = row, col
    while r < len(lines):
        line = lines[r]
        while c < len(line):
            ch = line[c]
            if line.startswith('"""', c) or line.startswith("'''", c):
                delim = line[c:c + 3]
                end = line.find(delim, c + 3)
                while end < 0:
                    r += 1
                    if r >= len(lines):
                        return len(lines) - 1
                    line = lines[r]
                    end = line.find(delim)
                c = end + 3
                while c < len(line) and line[c] == delim[0]:  # up to two quotes may close the string
                    c += 1
                continue
            if ch in "\"'":
                end = c + 1
                while end < len(line) and line[end] != ch:
                    end += 2 if (ch == '"' and line[end] == "\\") else 1
                c = end + 1
                continue
            if ch == "#":
                break
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            c += 1
        if depth <= 0:
            return r
        r += 1
        c = 0
    return len(lines) - 1


def locate_keys(text: str) -> dict[Key, Position]:
    """Map each key path (``("rules", 2, "op")``) to where it is written."""
    positions: dict[Key, Position] = {}
    counters: dict[Key, int] = {}
    table: Key = ()
    lines = text.splitlines()
    row = 0
    while row < len(lines):
        line = lines[row]
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if not stripped or stripped.startswith("#"):
            row += 1
            continue
        if stripped.startswith("[["):
            parts, _ = _read_key(line, indent + 2)
            array: Key = (*_resolve(tuple(parts[:-1]), counters), *parts[-1:])
            index = counters.get(array, -1) + 1
            counters[array] = index
            table = (*array, index)
            positions[table] = Position(row + 1, indent + 1)
            row += 1
            continue
        if stripped.startswith("["):
            parts, _ = _read_key(line, indent + 1)
            table = _resolve(tuple(parts), counters)
            positions.setdefault(table, Position(row + 1, indent + 1))
            row += 1
            continue
        parts, end = _read_key(line, indent)
        if parts and end < len(line) and line[end] == "=":
            value_at = end + 1
            while value_at < len(line) and line[value_at] in " \t":
                value_at += 1
            key = (*table, *parts)
            positions.setdefault(key, Position(row + 1, indent + 1, value_at + 1))
            row = _skip_value(lines, row, value_at) + 1
            continue
        row += 1
    return positions


def _resolve(parts: Key, counters: dict[Key, int]) -> Key:
    """Expand a header such as ``[rules.extra]`` to the current element of ``[[rules]]``."""
    out: list[str | int] = []
    for part in parts:
        out.append(part)
        if tuple(out) in counters:
            out.append(counters[tuple(out)])
    return tuple(out)


def find(positions: dict[Key, Position], key: Key) -> Position | None:
    """The position of ``key``, or of its nearest located ancestor."""
    probe = tuple(key)
    while probe:
        if probe in positions:
            return positions[probe]
        probe = probe[:-1]
    return None
