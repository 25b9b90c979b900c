"""The audit room stands alone: with only ``assay/audit/`` on the machine (an empty ``assay``
package around it, no core, plugins or policies), ``python -m assay.audit.verify`` checks a
ledger, finds tampering, and refuses bad input, importing nothing of assay outside the audit room
and none of the heavy libraries the rest of assay uses.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from assay.audit.ledger import Ledger
from assay.storage.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# Runs the verifier's command line, then reports what it imported. A meta-path hook refuses the
# libraries the rest of assay needs, so an import of one anywhere in the audit room fails here.
PROBE = """
import importlib.abc, json, sys
REFUSED = ("sqlalchemy", "sqlmodel", "pandas", "numpy", "sklearn", "pydantic", "click", "pluggy")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ImportError(f"the audit room imported {name}")
        return None
sys.meta_path.insert(0, Refuse())
import assay
from assay.audit import verify
code = verify.main(sys.argv[1:])
outside = sorted(m for m in sys.modules if m.startswith("assay") and m != "assay" and not m.startswith("assay.audit"))
print(json.dumps({"code": code, "assay": assay.__file__, "outside": outside}), file=sys.stderr)
"""


def _alone(tmp_path: Path) -> Path:
    """A tree holding an empty ``assay`` package and the audit room's modules, nothing else."""
    tree = tmp_path / "alone"
    (tree / "assay" / "audit").mkdir(parents=True)
    (tree / "assay" / "__init__.py").write_text("", encoding="utf-8")
    for f in (ROOT / "audit").glob("*.py"):
        (tree / "assay" / "audit" / f.name).write_bytes(f.read_bytes())
    return tree


def _verify_alone(tree: Path, *args: str) -> tuple[dict[str, object], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ASSAY_"))}
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120)
    *_, last = done.stderr.strip().splitlines()
    probe = json.loads(last)
    assert probe["assay"] == str(tree / "assay" / "__init__.py"), probe
    assert probe["outside"] == [], probe
    return probe, done.stdout


def test_the_verifier_runs_with_only_the_audit_room(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home, f"sqlite:///{home / 'assay.db'}")
    ledger = Ledger.open(settings)
    ledger.append_many([("r1", "data", {"i": i}) for i in range(12)])
    ledger.close()
    tree = _alone(tmp_path)
    trust = str(home / "keys" / "trust.json")

    probe, out = _verify_alone(tree, settings.db_url, "--json", "--trust", trust, "--home", str(home))
    report = json.loads(out)
    assert probe["code"] == 0 and report["ok"] is True and report["checked"] == report["size"] == 13, report
    assert report["mode"] == "full+checkpoint" and report["checkpoints"], report

    db = sqlite3.connect(home / "assay.db")
    db.execute("DROP TRIGGER IF EXISTS ledger_records_no_update")
    [(body,)] = db.execute("SELECT body FROM ledger_records WHERE seq = 7").fetchall()
    db.execute("UPDATE ledger_records SET body = ? WHERE seq = 7", (bytes(body).replace(b'"i":5', b'"i":6'),))
    db.commit()
    db.close()
    probe, out = _verify_alone(tree, settings.db_url, "--json", "--trust", trust)
    report = json.loads(out)
    assert probe["code"] == 1 and report["ok"] is False and report["first_bad_seq"] == 7, report

    probe, out = _verify_alone(tree, str(tmp_path / "none.db"), "--json")
    assert probe["code"] == 2 and "does not exist" in json.loads(out)["error"]
