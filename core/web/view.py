"""The ledger as the web view knows it: verified in the background, summarised, and checked on read.

A thread verifies the whole ledger (``assay.audit.verify.verify_ledger``: every record re-hashed,
chained, signed by a key valid at its position, consistent with the home's newest checkpoint)
whenever the tree size, the home's checkpoints, the trust file or the database file change, and
again every ``reverify_every`` seconds. A verification that passes publishes a new
:class:`~assay.web.index.LedgerIndex`; one that fails turns the banner red and keeps the last
verified index, so the pages show the ledger as it was verified, never what replaced it.
Until the first verification finishes, the pages show the records as read (an unverified
index, built just before it), each marked unverified under a banner that says so first; what
decides (a deployment's stage answer) waits for the verified index. Requests never verify: they
read the published index and the status, and check each record they show against the verified
tree (a record changed since is reported and triggers a new verification).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.audit.format import Record
from assay.errors import AssayError
from assay.storage.settings import Settings
from assay.web.index import CHANGED, IndexMismatch, LedgerIndex, check_record
from assay.web.source import Reader, change_marks, pg_write_counter, readonly_url

VERIFYING, VERIFIED, FAILED, ERROR = "verifying", "verified", "failed", "error"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass
class Status:
    """The banner: what the last verification found, and what is being checked now."""

    state: str = VERIFYING
    ledger_size: int = 0
    verified_size: int = 0
    checked_at: str | None = None
    duration_s: float | None = None
    report: Any = None  # the last finished VerifyReport
    message: str | None = None  # an error that kept the ledger from being verified
    changed: list[dict[str, Any]] = field(default_factory=list)  # records that differ from the verified tree
    verifying_since: str | None = None
    unverified_size: int = 0  # records shown as read, before the first verification finished

    @property
    def ok(self) -> bool:
        return self.state in (VERIFIED, VERIFYING) and self.verified_size > 0 and not self.changed \
            and (self.report is None or self.report.ok)

    @property
    def level(self) -> str:
        """``ok`` (green), ``pending`` (nothing verified yet) or ``bad`` (red)."""
        if self.changed or self.state in (FAILED, ERROR) or (self.report is not None and not self.report.ok):
            return "bad"
        return "ok" if self.verified_size or (self.report is not None and self.report.ok) else "pending"

    def headline(self) -> str:
        report = self.report
        if self.state == ERROR:
            return f"The ledger could not be verified: {self.message}"
        if report is not None and not report.ok:
            where = f"record {report.first_bad_seq}" if report.first_bad_seq is not None else "the ledger"
            shown = (f"The pages show the ledger as last verified ({self.verified_size} records)."
                     if self.verified_size else "Nothing from this ledger is shown as fact.")
            return f"Ledger does NOT verify — tampering found at {where}: {report.reason}. {shown}"
        if self.changed:
            first = self.changed[0]
            return (f"Record {first['seq']} differs from the verified ledger (read at {first['at']}): the database "
                    "was altered after it was verified. Verifying again; the pages show the ledger as verified.")
        if not self.verified_size and not (report is not None and report.ok):
            if self.unverified_size:
                return (f"Not yet verified: this page shows the {self.unverified_size} records as read from the "
                        "database, before any check. Verification is in progress — every record is re-hashed and "
                        "its signature checked; this banner turns green when it is done.")
            return (f"Not yet verified: the ledger ({self.ledger_size} records) is being read, then verified — "
                    "every record re-hashed and its signature checked; the pages fill in once it has been read.")
        cps = sorted(set(report.checkpoint_sizes)) if report is not None else []
        cp = f", consistent with the checkpoint at size {cps[-1]}" if cps else ""
        text = f"Ledger verified: {self.verified_size} records intact{cp} (checked {self.checked_at})."
        newer = self.ledger_size - self.verified_size
        if newer > 0:
            text += f" {newer} newer record(s) are being verified."
        return text

    @property
    def shows(self) -> str:
        """What the pages show: ``verified`` records, ``unverified`` ones (before the first
        verification finished) or ``nothing``."""
        if self.verified_size:
            return "verified"
        return "unverified" if self.unverified_size else "nothing"

    def to_json(self) -> dict[str, Any]:
        report = self.report
        return {
            "state": self.state, "ok": self.ok, "level": self.level, "headline": self.headline(),
            "shows": self.shows, "unverified_size": self.unverified_size,
            "ledger_size": self.ledger_size, "verified_size": self.verified_size, "checked_at": self.checked_at,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "verifying_since": self.verifying_since, "error": self.message, "changed_records": list(self.changed),
            "first_bad_seq": report.first_bad_seq if report is not None else None,
            "reason": report.reason if report is not None else None,
            "errors": list(report.errors[:20]) if report is not None else [],
            "root": report.root if report is not None and report.ok else None,
            "checkpoint_sizes": sorted(set(report.checkpoint_sizes)) if report is not None else [],
            "trust": report.trust if report is not None else None,
        }


class LedgerView:
    """The web view's window on one ledger (see the module docstring); thread-safe."""

    def __init__(self, settings: Settings, reverify_every: float = 900.0, poll: float = 1.0,
                 workers: int | None = None) -> None:
        self.settings = settings
        self.url = readonly_url(settings.db_url)
        self.reader = Reader(settings.db_url)
        self.reverify_every = reverify_every
        self.poll = poll
        self.workers = workers
        self.ledger_id = self.reader.source().meta("ledger_id") or ""
        self._index: LedgerIndex | None = None
        self._unverified: LedgerIndex | None = None
        self._first_done = False  # the first verification finished: nothing unverified is shown again
        self._status = Status(ledger_size=self.reader.max_seq())
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._key: Any = None
        self._last_full = 0.0

    # ------------------------------------------------------------------ state for requests
    @property
    def index(self) -> LedgerIndex | None:
        return self._index

    @property
    def shown(self) -> LedgerIndex | None:
        """What the pages list: the verified index, else (before the first verification finished)
        the records as read, unverified (``LedgerIndex.verified`` is False)."""
        return self._index if self._index is not None else self._unverified

    @property
    def status(self) -> Status:
        return self._status

    @property
    def trust_path(self) -> Path | None:
        path = self.settings.home / "keys" / "trust.json"
        return path if path.exists() else None

    def checkpoint_path(self) -> Path | None:
        from assay.audit.verify import newest_home_checkpoint

        return newest_home_checkpoint(self.settings.home, self.ledger_id)

    def witnessed_path(self) -> Path:
        from assay.audit.witness import witnessed_note_path

        return witnessed_note_path(self.settings.home, self.ledger_id)

    def check(self, records: list[tuple[Record, bytes]]) -> list[tuple[Record, str]]:
        """Each record read now, with whether it is the verified one (``verified``/``changed``/``unverified``)."""
        index = self._index
        out = []
        for record, h in records:
            state = check_record(index.tree, index.size, record, h) if index is not None else "unverified"
            if state == CHANGED:
                self.note_changed(record.seq)
            out.append((record, state))
        return out

    def note_changed(self, seq: int) -> None:
        with self._lock:
            if not any(c["seq"] == seq for c in self._status.changed):
                self._status.changed.append({"seq": seq, "at": _now()})
                self._status.changed.sort(key=lambda c: c["seq"])
        self._key = None
        self._wake.set()

    # ------------------------------------------------------------------ the verifier thread
    def start(self) -> LedgerView:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="assay-web-verifier", daemon=True)
            self._thread.start()
        return self

    def _read_unverified(self) -> None:
        """Index the records as read, for the pages to show (as unverified) until the first verification ends.

        Done before the first verification rather than beside it: on a busy machine the two would
        share the cores, and the pages would wait for most of the verification's time.
        """
        try:
            index = LedgerIndex.unverified(self.reader, self.reader.max_seq())
        except Exception:  # a gap or a database that cannot be read: the banner says it once verification ends
            return
        with self._lock:
            if not self._first_done and self._index is None:
                self._unverified = index
                self._status = _replace(self._status, unverified_size=index.size)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.reader.close()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the first verification has finished (passed or not)."""
        return self._ready.wait(timeout)

    def refresh(self) -> None:
        """Verify now (the next loop turn), whatever the change key says."""
        self._key = None
        self._wake.set()

    def _change_key(self) -> tuple[Any, ...]:
        home = self.settings.home
        cp = self.checkpoint_path()
        src = self.reader.source()
        return (self.reader.max_seq(), str(cp), _stat(cp) if cp else None, _stat(self.witnessed_path()),
                _stat(home / "keys" / "trust.json"), change_marks(self.settings.db_url), pg_write_counter(src))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._change_key()
            except Exception as exc:
                self._fail(exc)
                key = None
            due = time.monotonic() - self._last_full >= self.reverify_every
            if key is not None and (key != self._key or due):
                self._verify(key)
            self._wake.wait(self.poll)
            self._wake.clear()

    def _fail(self, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
        from assay.storage.settings import redact_url

        with self._lock:
            self._status = _replace(self._status, state=ERROR, message=redact_url(message), verifying_since=None,
                                    unverified_size=0)
            self._first_done, self._unverified = True, None
        self._ready.set()

    def _verify(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._status = _replace(self._status, state=VERIFYING, ledger_size=key[0], verifying_since=_now())
        if not self._first_done and self._index is None and self._unverified is None:
            self._read_unverified()
        t0 = time.perf_counter()
        try:
            report = verify_in_child(self.url, self.trust_path, self.settings.home, self.workers)
        except Exception as exc:
            self._fail(exc)
            self._key = key
            return
        self._last_full = time.monotonic()
        index = self._index
        problem = None
        if report.ok:
            try:
                index, problem = self._publishable(report)
            except IndexMismatch:
                # The database changed between verifying and reading: verify again on the next turn.
                self._key = None
                with self._lock:
                    self._status = _replace(self._status, state=VERIFYING)
                return
        with self._lock:
            self._first_done, self._unverified = True, None
            if problem is not None:  # keep showing what was verified before
                self._status = _replace(self._status, state=ERROR, message=problem, checked_at=_now(),
                                        verifying_since=None, report=report, unverified_size=0)
            else:
                self._index = index
                changed = [] if report.ok else self._status.changed
                self._status = Status(
                    state=VERIFIED if report.ok else FAILED, ledger_size=max(key[0], report.size),
                    verified_size=index.size if index is not None else 0, checked_at=_now(),
                    duration_s=time.perf_counter() - t0, report=report, changed=changed)
        self._key = key
        self._ready.set()

    def _publishable(self, report: Any) -> tuple[LedgerIndex, str | None]:
        """The index of a ledger that verified, or why it cannot replace the one verified before.

        A ledger that verifies on its own can still contradict what this server verified earlier:
        shorter than before (records removed, an older copy restored) or with other first
        records (history rewritten by someone holding a key).
        """
        root = bytes.fromhex(report.root or "")
        current = self._index
        if current is not None and report.size < current.size:
            return current, (f"the ledger now has {report.size} records, but {current.size} were verified earlier: "
                             "records were removed or an older copy restored")
        if current is not None:
            with contextlib.suppress(IndexMismatch):
                return current.extend(self.reader, report.size, root), None
        fresh = LedgerIndex.build(self.reader, report.size, root)
        if current is not None and current.size and fresh.tree.root(current.size) != current.root:
            return current, (f"the first {current.size} records are not the ones verified earlier: the history "
                             "was rewritten (by someone holding a signing key) or another database was put in place")
        return fresh, None


def verify_in_child(url: str, trust: Path | None, home: Path, workers: int | None) -> Any:
    """``verify_ledger`` in a fresh (spawned) process, its report sent back.

    The verifier forks worker processes, which is unsafe from a process that runs threads (the
    server's event loop and request threads could hold a lock at the fork); a spawned child has
    only its main thread. It also keeps the verification's own Python work off the server's GIL,
    so pages stay fast while a million records are checked. The URL travels through the pipe, not
    the command line (where a password would show in the process list).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_verify_ledger, url, trust, home, workers).result()


def _verify_ledger(url: str, trust: Path | None, home: Path, workers: int | None) -> Any:
    from assay.audit.verify import verify_ledger

    return verify_ledger(url, trust=trust, home=home, workers=workers)


def _replace(status: Status, **changes: Any) -> Status:
    from dataclasses import replace

    return replace(status, **changes)


def default_workers() -> int | None:
    """Processes for a verification: every core unless ASSAY_WEB_WORKERS says otherwise."""
    value = os.environ.get("ASSAY_WEB_WORKERS")
    return int(value) if value and value.isdigit() else None
