"""Checkpoints a ledger must extend: loading them, finding the home's newest, and checking one.

A checkpoint is a signed C2SP checkpoint note of size m (``assay.audit.note``). Checked against
a ledger it must be for that ledger (its origin), signed by a key valid at m, no larger than the
ledger, its root that of the ledger's first m records, and its ``assay-key-events`` line that of
the key records up to m.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.audit.errors import BadInput
from assay.audit.format import key_id_of
from assay.audit.keystate import KEY_EVENTS_EXT, KeyState, key_events_line
from assay.audit.merkle import EMPTY_ROOT
from assay.audit.note import Checkpoint, NoteError, parse_checkpoint, parse_note, verify_note
from assay.audit.report import Collector


@dataclass
class Given:
    """A checkpoint the ledger must extend: where it came from, its note text and its parsed body."""

    label: str
    text: str
    cp: Checkpoint


def read_checkpoint_file(path: Path | str) -> str:
    """A checkpoint note file's text; ``BadInput`` naming the file when it is missing or unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"checkpoint file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read checkpoint file {path}: {exc}") from None


def load_checkpoint(
    path: Path | str | None, text: str | None = None, fix: str = "pass a file written by `assay audit checkpoint`"
) -> Given | None:
    if text is None:
        if path is None:
            return None
        text = read_checkpoint_file(path)
    label = str(path) if path is not None else "(given checkpoint text)"
    try:
        body, _sigs = parse_note(text)
        cp = parse_checkpoint(body)
    except NoteError as exc:
        raise BadInput(f"checkpoint {label} is not a valid signed checkpoint note: {exc} ({fix})") from None
    return Given(label, text, cp)


def newest_home_checkpoint(home: Path, ledger_id: str) -> Path | None:
    """The checkpoint of ledger ``ledger_id`` with the largest tree size that ``home`` holds, or None.

    Looks at ``{home}/checkpoints/{ledger_id}.note`` (the one assay keeps current) and
    ``{ledger_id}.*.note`` (copies kept beside it). One that cannot be read or parsed is returned
    at once, so that verifying reports it rather than quietly falling back to an older one.
    """
    folder = Path(home) / "checkpoints"
    if not ledger_id or not folder.is_dir():
        return None
    best: Path | None = None
    best_size = -1
    for path in [folder / f"{ledger_id}.note", *sorted(folder.glob(f"{ledger_id}.*.note"))]:
        if not path.is_file():
            continue
        try:
            size = parse_checkpoint(parse_note(path.read_text(encoding="utf-8"))[0]).size
        except (OSError, UnicodeDecodeError, NoteError):
            return path
        if size > best_size:
            best, best_size = path, size
    return best


HOME_FIX = "it is this home's record of the ledger's size; restore it from a copy, or remove it if you know why it is damaged"


def same_file(a: Path, b: Path | str | None) -> bool:
    try:
        return b is not None and a.resolve() == Path(b).resolve()
    except OSError:
        return False


def check_origins(given: list[Given], origin: str | None, col: Collector) -> bool:
    """Whether every checkpoint is of the ledger ``origin``; a finding for each one that is not."""
    foreign = [g for g in given if g.cp.origin != origin]
    for g in foreign:
        col.add(None, f"checkpoint is for {g.cp.origin}, but this database is {origin} ({g.label}): "
                      "wrong checkpoint or replaced database")
    return not foreign


def check_sizes(given: list[Given], n: int, col: Collector) -> None:
    """A finding for each checkpoint larger than the ledger's ``n`` records."""
    for g in given:
        if n < g.cp.size:
            # Truncated or rolled back: records the checkpoint commits to are gone.
            col.add(n + 1, f"ledger has {n} record(s) but the checkpoint commits to {g.cp.size} ({g.label}): "
                           "tail deleted or older copy restored")


def check_extends(g: Given, n: int, roots: dict[int, bytes], keys: KeyState, col: Collector) -> list[str]:
    """Check that a ledger of ``n`` records, whose roots at the checkpoints' sizes are ``roots``,
    extends ``g``: its signature, its root and its key-events line. Returns the key ids that signed it."""
    signed_by = check_note(g.text, g.cp, keys, col, g.label)
    m = g.cp.size
    if n >= m:
        at = EMPTY_ROOT if m == 0 else roots.get(m)
        if at is None:
            col.add(None, f"the first {m} records cannot be hashed into the checkpoint's tree ({g.label}): records missing")
        elif at != g.cp.root:
            col.add(None, f"ledger does not extend the checkpoint ({g.label}): its first {m} records hash to a "
                          "different root (history rewritten or forked)")
    check_key_events(g.cp, keys.events, col, g.label)
    return signed_by


def check_note(note_text: str, cp: Any, keys: KeyState, col: Collector, label: str = "") -> list[str]:
    """Check a checkpoint note's signature; returns the key ids that signed it."""
    pubs = keys.note_keys(cp.size)
    try:
        _body, verified = verify_note(note_text, [(cp.origin, p) for p in pubs])
    except NoteError as exc:
        col.add(None, f"checkpoint signature ({label}): {exc}" if label else f"checkpoint signature: {exc}")
        return []
    return [key_id_of(pub) for _name, pub in verified]


def check_key_events(cp: Any, events: list[tuple[int, bytes]], col: Collector, label: str = "") -> None:
    line = next((e for e in cp.extensions if e.startswith(KEY_EVENTS_EXT + " ")), None)
    if line is None:
        return
    upto = [(s, h) for s, h in events if s <= cp.size]
    if key_events_line(upto) != line:
        where = f" ({label})" if label else ""
        col.add(None, f"the key records up to the checkpoint differ from those it commits to{where} "
                      "(a key record was hidden or altered)")
