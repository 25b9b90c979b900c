"""``assay lineage`` both ways, on real runs: what was trained or evaluated on a dataset, every
verdict under a policy version, and a model version's history with the seq of each record.

One home holds two runs on the same sample of the Adult census data, one run on NYC flights
and a monitored batch of later flights; everything after training is a user's commands:
``assay gate`` (twice, and under the strict pack), ``waive``, ``approve``, ``models promote``
and ``assay monitor``. Lineage reads the signed ledger only: an edit to the runs or registry
tables changes nothing it shows, and an edit to a ledger record stops it (exit 1).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assay.errors import BadInput
from tests.conftest import ADULT_SMALL_SPEC, EXAMPLES, Result, run_assay

FAST = ("--set", "train.tuning=none", "--set", 'train.candidates=["logistic_regression"]', "--set", "split.cv_folds=2")

FLIGHTS_SPEC = """\
[project]
name = "flights-delay"

[data]
source = "flights.csv"
target = "is_delayed"
task = "binary"
sensitive = ["origin"]
drop = ["arr_delay_min", "dep_delay_min", "flight_number", "tailnum", "scheduled_departure", "month"]

[split]
strategy = "stratified"
test_size = 0.25
cv_folds = 2
seed = 42
"""


@dataclass
class Home:
    home: Path
    runs: dict[str, str] = field(default_factory=dict)  # role -> run id
    results: dict[str, Any] = field(default_factory=dict)  # role -> `assay run --json` / command output
    seqs: dict[str, int] = field(default_factory=dict)  # what a command printed as its record's seq

    def assay(self, *args: str, codes: tuple[int, ...] = (0, 1)) -> Result:
        result = run_assay(*args, home=self.home, env={"OMP_NUM_THREADS": "1"}, timeout=300)
        assert result.returncode in codes, (args, result.stderr[-3000:])
        return result

    def lineage(self, *args: str) -> dict[str, Any]:
        result = self.assay("lineage", *args, "--json", codes=(0,))
        return dict(result.json)

    def records(self, fresh: bool = False) -> list[dict[str, Any]]:
        """The ledger as ``assay audit log --json`` lists it (read once unless ``fresh``)."""
        if fresh or "records" not in self.results:
            self.results["records"] = list(self.assay("audit", "log", "--json", codes=(0,)).json["records"])
        return list(self.results["records"])


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Home:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    root = tmp_path_factory.mktemp("lineage")
    adult_dir, flights_dir = root / "adult", root / "flights"
    adult_dir.mkdir()
    flights_dir.mkdir()
    adult = pd.read_csv(EXAMPLES / "adult" / "data" / "adult.csv")
    sample, _ = train_test_split(adult, train_size=2000, stratify=adult["income"], random_state=0)
    sample.to_csv(adult_dir / "adult.csv", index=False)
    (adult_dir / "assay.toml").write_text(ADULT_SMALL_SPEC, encoding="utf-8")
    flights = pd.read_csv(EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv")
    early = flights[flights["month"] <= 4]
    early.sample(2000, random_state=1).to_csv(flights_dir / "flights.csv", index=False)
    flights[flights["month"] >= 9].sample(800, random_state=3).to_csv(flights_dir / "autumn.csv", index=False)
    (flights_dir / "assay.toml").write_text(FLIGHTS_SPEC, encoding="utf-8")

    t = Home(root / "home")
    for role, spec in (("adult1", adult_dir), ("adult2", adult_dir), ("flights", flights_dir)):
        result = t.assay("run", str(spec / "assay.toml"), *FAST, "--json", "-q")
        t.runs[role], t.results[role] = result.json["run_id"], result.json
    a1, a2 = t.runs["adult1"], t.runs["adult2"]
    t.assay("gate", a1, "--format", "json")  # the same evidence, the same policy: the same result twice more
    t.assay("gate", a1, "--format", "json")
    t.results["strict"] = t.assay("gate", a2, "--policy", "assay:strict", "--format", "json").json
    blocking = [r["id"] for r in t.results["adult1"]["verdict"]["rules"] if r["outcome"] == "block"]
    rule = blocking[0].split("[")[0] if blocking else "generalization-gap-small"
    t.results["rule"] = rule
    for role, ref in (("adult1", "adult-small@1"), ("adult2", "adult-small@2")):
        waiver = t.assay("waive", rule, "--model", ref, "--reason", "accepted for the pilot", "--approver",
                         "Dana Risk", "--expires", "2099-01-01", "--json", codes=(0,)).json
        t.seqs[f"waiver {role}"] = waiver["seq"]
        t.assay("gate", t.runs[role], "--format", "json")
    t.seqs["approval"] = t.assay("approve", "adult-small@1", "--approver", "Lee Review", "--json", codes=(0,)).json["seq"]
    t.seqs["staging"] = t.assay("models", "promote", "adult-small@1", "--to", "staging", "--json", codes=(0,)).json["seq"]
    t.seqs["production"] = t.assay("models", "promote", "adult-small@1", "--to", "production", "--json",
                                   codes=(0,)).json["seq"]
    t.seqs["production 2"] = t.assay("models", "promote", "adult-small@2", "--to", "production", "--json",
                                     codes=(0,)).json["seq"]
    t.results["monitor"] = t.assay("monitor", t.runs["flights"], "--current", str(flights_dir / "autumn.csv"),
                                   "--format", "json").json
    return t


def fingerprint(t: Home, role: str) -> str:
    """The training data fingerprint of a run, as its signed ``data`` record holds it."""
    return str(next(r["payload"]["fingerprint"] for r in t.records() if r["kind"] == "data" and r["run_id"] == t.runs[role]))


# --------------------------------------------------------------------------- --data


def test_a_dataset_lists_exactly_the_runs_and_models_trained_on_it(team: Home) -> None:
    adult_fp, flights_fp = fingerprint(team, "adult1"), fingerprint(team, "flights")
    assert adult_fp == fingerprint(team, "adult2") != flights_fp
    found = team.lineage("--data", adult_fp)
    assert found["fingerprint"] == adult_fp and found["runs"] == [team.runs["adult1"], team.runs["adult2"]]
    assert found["models"] == ["adult-small@1", "adult-small@2"]
    assert {u["role"] for u in found["uses"]} == {"training data"} and found["sources"] == ["adult.csv"]
    data_seqs = {r["seq"] for r in team.records() if r["kind"] == "data" and r["run_id"] in found["runs"]}
    assert {u["seq"] for u in found["uses"]} == data_seqs
    # a bare prefix of the hex works too, and finds the other dataset's single run
    other = team.lineage("--data", flights_fp.removeprefix("sha256:")[:10])
    assert other["fingerprint"] == flights_fp and other["runs"] == [team.runs["flights"]]
    assert other["models"] == ["flights-delay@1"]


def test_a_monitored_batch_and_a_split_part_lead_back_to_the_run(team: Home) -> None:
    batch = team.results["monitor"]["data"]["current"]["fingerprint"]
    found = team.lineage("--data", batch)
    (use,) = found["uses"]
    assert use["role"] == "monitored batch" and use["run_id"] == team.runs["flights"]
    assert use["model"] == "flights-delay@1" and use["monitor_id"] == team.results["monitor"]["monitor_id"]
    assert use["status"] == team.results["monitor"]["status"] and use["rows"] == 800
    monitor_seq = next(r["seq"] for r in team.records() if r["kind"] == "monitor")
    assert use["seq"] == monitor_seq
    split = next(r for r in team.records() if r["kind"] == "split" and r["run_id"] == team.runs["adult1"])
    test_part = team.lineage("--data", split["payload"]["test"]["fingerprint"])
    assert {(u["role"], u["run_id"]) for u in test_part["uses"]} == {
        ("test split", team.runs["adult1"]), ("test split", team.runs["adult2"])}  # same data, same seed


def test_the_text_listing_shows_ids_and_digests_whole(team: Home) -> None:
    fp = fingerprint(team, "adult1")
    out = team.assay("lineage", "--data", fp[:20], codes=(0,)).stdout
    assert fp in out and team.runs["adult1"] in out and team.runs["adult2"] in out
    assert "2 run(s), 2 model version(s)" in out


# --------------------------------------------------------------------------- --policy


def test_a_policy_digest_lists_exactly_its_verdicts(team: Home) -> None:
    records = team.records()
    strict_hash = team.results["strict"]["verdict"]["policy_hash"]
    standard_hash = team.results["adult1"]["verdict"]["policy_hash"]
    assert strict_hash != standard_hash
    strict = team.lineage("--policy", strict_hash)
    (only,) = strict["verdicts"]
    assert strict["policy"] == "assay:strict" and strict["total"] == 1
    assert only["run_id"] == team.runs["adult2"] and only["model"] == "adult-small@2" and only["kind"] == "gate"
    assert only["seq"] == max(r["seq"] for r in records if r["kind"] == "verdict" and
                              r["payload"]["policy_hash"] == strict_hash)
    standard = team.lineage("--policy", standard_hash.removeprefix("sha256:")[:8])
    expected = {r["seq"] for r in records if (r["kind"] == "verdict" and r["payload"]["policy_hash"] == standard_hash)
                or (r["kind"] == "monitor" and r["payload"]["verdict"]["policy_hash"] == standard_hash)}
    listed = [s for v in standard["verdicts"] for s in v["seqs"]]
    assert sorted(listed) == sorted(expected) and standard["total"] == len(expected)
    assert sum(standard["decisions"].values()) == len(expected)
    kinds = {(v["kind"], v["run_id"]) for v in standard["verdicts"]}
    assert ("monitor", team.runs["flights"]) in kinds and ("gate", team.runs["flights"]) in kinds
    # adult@1's run verdict and the two identical re-gates are one entry with a count
    repeated = [v for v in standard["verdicts"] if v["run_id"] == team.runs["adult1"] and v["decision"] == "block"]
    assert len(repeated) == 1 and repeated[0]["count"] == 3 and len(repeated[0]["seqs"]) == 3


# --------------------------------------------------------------------------- MODEL@VERSION


def test_a_model_version_shows_its_waivers_approvals_promotions_with_seq(team: Home) -> None:
    graph = team.lineage("adult-small@1")
    assert graph["run_id"] == team.runs["adult1"] and graph["nodes"] and graph["edges"]  # the existing shape
    history = graph["history"]
    assert history["ref"] == "adult-small@1" and history["stage"] == "archived"
    kinds = [(e["kind"], e["count"]) for e in history["events"]]
    assert kinds == [("verdict", 3), ("waiver", 1), ("verdict", 1), ("approval", 1), ("promotion", 1),
                     ("promotion", 1), ("archived", 1)]
    events = history["events"]
    assert events[0]["decision"] == "block" and events[2]["decision"] == "pass"
    assert events[1]["seq"] == team.seqs["waiver adult1"] and events[1]["rule"] == team.results["rule"]
    assert events[3]["seq"] == team.seqs["approval"] and events[3]["approver"] == "Lee Review"
    assert (events[4]["seq"], events[4]["stage"]) == (team.seqs["staging"], "staging")
    assert (events[5]["seq"], events[5]["stage"]) == (team.seqs["production"], "production")
    assert events[6]["seq"] == team.seqs["production 2"] and events[6]["by"] == "adult-small@2"
    assert events[2]["waived"] and all(w.startswith(team.results["rule"]) for w in events[2]["waived"])
    text = team.assay("lineage", "adult-small@1", codes=(0,)).stdout
    first = events[0]["seqs"]
    assert f"{first[0]} ×3 ({first[0]}, {first[1]}, {first[2]})" in text
    assert str(team.seqs["approval"]) in text and "approved by Lee Review" in text


def test_a_monitored_model_shows_its_monitor_result(team: Home) -> None:
    history = team.lineage("flights-delay@1")["history"]
    monitor = next(e for e in history["events"] if e["kind"] == "monitor")
    assert monitor["monitor_id"] == team.results["monitor"]["monitor_id"]
    assert monitor["status"] == team.results["monitor"]["status"]
    assert monitor["share_drifted"] == pytest.approx(team.results["monitor"]["drift"]["share_drifted"])
    by_run_id = team.lineage(team.runs["flights"])  # a run id shows its model's history too
    assert by_run_id["history"] == history


# --------------------------------------------------------------------------- bad input


def test_bad_queries_exit_2_with_one_message_and_write_nothing(team: Home) -> None:
    size = len(team.records(fresh=True))
    cases = [
        (("lineage", "--data", "abc"), "--data 'abc': give at least 6"),
        (("lineage", "--data", "sha256:not-hex!"), "--data 'sha256:not-hex!': expected a SHA-256 digest"),
        (("lineage", "--policy", "ffffffffff"), "--policy sha256:ffffffffff: no policy with that digest"),
        (("lineage", "adult-small@1", "--data", fingerprint(team, "adult1")), "give one of"),
        (("lineage",), "give one of"),
        (("lineage", "--data", fingerprint(team, "adult1"), "--dot"), "--dot draws one run's graph"),
        (("lineage", "adult-small@9"), "adult-small@9"),
    ]
    for args, message in cases:
        result = team.assay(*args, codes=(2,))
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert len(team.records(fresh=True)) == size


def test_a_prefix_matching_several_digests_lists_each_in_full() -> None:
    from assay.commands.lineage import match_digest

    a, b = "sha256:abcdef" + "1" * 58, "sha256:abcdef" + "2" * 58
    with pytest.raises(BadInput) as info:
        match_digest("abcdef", [a, b, "sha256:" + "9" * 64], "dataset", "--data")
    assert a in info.value.message and b in info.value.message and "2 dataset digests" in info.value.message
    assert match_digest("abcdef1", [a, b], "dataset", "--data") == a


HEXDIGEST = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(HEXDIGEST, st.integers(6, 64), st.booleans(), st.booleans())
def test_any_prefix_of_a_digest_is_read_back(digest: str, n: int, tagged: bool, upper: bool) -> None:
    from assay.commands.lineage import parse_digest

    text = ("sha256:" if tagged else "") + digest[:n]
    assert parse_digest(text.upper() if upper else text, "--data") == digest[:n]


@given(st.text(max_size=80))
def test_any_text_is_a_digest_prefix_or_one_clear_error(text: str) -> None:
    from assay.commands.lineage import parse_digest

    try:
        hexpart = parse_digest(text, "--policy")
    except BadInput as exc:
        assert exc.message.startswith("--policy ") and "\n" not in exc.message
    else:
        assert 6 <= len(hexpart) <= 64 and set(hexpart) <= set("0123456789abcdef")


# --------------------------------------------------------------------------- the trust model


def test_edits_to_the_tables_beside_the_ledger_change_nothing_lineage_shows(team: Home, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(team.home, copy)
    other = Home(copy, team.runs, dict(team.results), team.seqs)
    adult_fp, flights_fp = fingerprint(team, "adult1"), fingerprint(team, "flights")
    policy = team.results["adult1"]["verdict"]["policy_hash"]
    queries = [("--data", adult_fp), ("--data", flights_fp), ("--policy", policy), ("adult-small@1",),
               ("adult-small@2",), (team.runs["flights"],)]
    before = [other.lineage(*q) for q in queries]
    db = sqlite3.connect(copy / "assay.db")
    with db:  # the operator rewrites the index tables: adult's runs "trained on flights", registry stages swapped
        n = db.execute("UPDATE runs SET evidence_json = replace(evidence_json, ?, ?), project = 'forged'",
                       (adult_fp, flights_fp)).rowcount
        m = db.execute("UPDATE model_versions SET stage = 'production', run_id = ?", (team.runs["flights"],)).rowcount
        db.execute("DELETE FROM runs WHERE run_id = ?", (team.runs["adult2"],))
    db.close()
    assert n >= 3 and m >= 3
    assert [other.lineage(*q) for q in queries] == before
    # a ledger record edited behind the ledger's back stops lineage instead of being shown
    from tests.audit.tamper_tools import Raw

    raw = Raw(f"sqlite:///{copy / 'assay.db'}")
    raw.drop_triggers()
    seq, body = next((s, b) for s, k, b in raw.rows("SELECT seq, kind, body FROM ledger_records")
                     if k == "data" and adult_fp in bytes(b).decode())
    raw.set(seq, body=bytes(body).replace(adult_fp.encode(), flights_fp.encode()))
    raw.close()
    result = other.assay("lineage", "--data", flights_fp, codes=(1,))
    assert "does not verify" in result.stderr and result.stdout == ""
    assert json.loads(json.dumps(before[1]))["runs"] == [team.runs["flights"]]
