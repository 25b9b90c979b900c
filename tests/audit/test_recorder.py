"""The ledger plugin's ledgers belong to the recorder the plugin manager registers, not to the process.

Two governed runs in one process, each through its own plugin manager and against its own home,
write to two ledgers that share nothing: each home's ledger holds its own run only, verifies, and
carries the checkpoint its run ended with; and two recorders never hand out the same Ledger.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from assay.audit.ledger import Ledger
from assay.audit.plugin import LedgerRecorder
from assay.audit.verify import verify_ledger
from assay.storage.settings import Settings

QUICK = ["train.tuning=none", 'train.candidates=["logistic_regression"]']


def _governed_run(spec_dir: Path, home: Path) -> tuple[Any, Any]:
    """One run of ``spec_dir``'s spec against ``home`` through a plugin manager of its own."""
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec

    spec_path = spec_dir / "assay.toml"
    spec, _ = load_spec(spec_path, QUICK)
    pm = make_plugin_manager()
    result = Runner(pm, Settings.resolve(home), spec, spec_path).execute()
    return pm, result


def test_two_runs_against_two_homes_in_one_process_share_no_ledger(adult_small: Path, tmp_path: Path) -> None:
    first_home, second_home = tmp_path / "first", tmp_path / "second"
    pm1, first = _governed_run(adult_small, first_home)
    pm2, second = _governed_run(adult_small, second_home)
    assert first.status in ("passed", "blocked"), first.error
    assert second.status in ("passed", "blocked"), second.error

    rec1, rec2 = pm1.get_plugin("ledger"), pm2.get_plugin("ledger")
    assert isinstance(rec1, LedgerRecorder) and isinstance(rec2, LedgerRecorder) and rec1 is not rec2
    [led1], [led2] = rec1.ledgers(), rec2.ledgers()
    assert led1 is not led2
    assert led1.settings.home == first_home.absolute() and led2.settings.home == second_home.absolute()

    for home, run_id in ((first_home, first.run_id), (second_home, second.run_id)):
        settings = Settings.resolve(home)
        ledger = Ledger.open(settings)
        assert [r["run_id"] for r in ledger.runs()] == [run_id]
        report = verify_ledger(settings.db_url, trust=home / "keys" / "trust.json", home=home)
        assert report.ok, report.summary()
        # the run's end wrote this home's checkpoint over every record the run appended
        assert report.checkpoint_sizes == [ledger.size()]
        ledger.close()


def test_each_recorder_opens_its_own_ledger_for_the_same_home(tmp_path: Path) -> None:
    settings = Settings.resolve(tmp_path / "home")
    one, other = LedgerRecorder(), LedgerRecorder()
    assert one.ledger_for(settings) is one.ledger_for(settings)  # cached for the recorder's lifetime
    assert one.ledger_for(settings) is not other.ledger_for(settings)
    run = SimpleNamespace(run_id="r1", settings=settings)
    seq = one.record(run, SimpleNamespace(kind="run_started", payload={}))
    # the other recorder's ledger sees the record through the database, not through a shared object
    assert other.ledger_for(settings).size() == seq
    assert [led.settings.home for led in other.ledgers()] == [settings.home]
    for recorder in (one, other):
        for ledger in recorder.ledgers():
            ledger.close()
