"""The web view's ASGI app called in-process (litestar's TestClient), on a real team home.

Each page is checked with its JSON twin, and the JSON against what the command line prints
for the same question (``assay audit runs|log --json``, ``assay models list --json``,
``assay verify --json``, ``assay gate --format json``). Security is tested as a user would meet
it: no token, a wrong token, a write request, a name that is a script, a database edited behind
the ledger's back.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from assay.audit.format import DOMAIN_TAG, record_hash
from assay.audit.merkle import leaf_hash, root_from_inclusion
from assay.audit.note import parse_checkpoint, parse_note
from assay.storage.settings import Settings
from assay.web.app import create_app, token_matches
from assay.web.cli import is_loopback, parse_listen
from assay.web.source import READ_ONLY_OPTION, readonly_url
from assay.web.view import LedgerView
from tests.conftest import run_assay
from tests.web.conftest import EVIL, Team

logging.getLogger("httpx").setLevel(logging.WARNING)
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def team(request: pytest.FixtureRequest) -> Team:
    return request.getfixturevalue("sqlite_team" if request.param == "sqlite" else "pg_team")


@pytest.fixture(scope="module")
def served(team: Team) -> Iterator[tuple[TestClient[Any], LedgerView]]:
    view = LedgerView(team.settings, poll=0.2)
    with TestClient(create_app(view)) as client:
        assert view.wait_ready(60)
        assert view.status.ok, view.status.to_json()
        yield client, view


@pytest.fixture
def client(served: tuple[TestClient[Any], LedgerView]) -> TestClient[Any]:
    return served[0]


def get_json(client: TestClient[Any], path: str, status: int = 200) -> Any:
    response = client.get(path)
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def pages_of(team: Team) -> list[str]:
    run = team.runs["blocked"]
    return ["/", "/runs", "/runs?status=blocked&model=churn", f"/runs/{run}", "/models", "/models/credit",
            f"/models/{quoted(EVIL)}", "/lineage", f"/lineage?run={run}", "/lineage?data=" + "d" * 64,
            "/ledger", "/ledger?kind=verdict", "/ledger/1", "/monitoring", "/keys"]


def test_every_page_renders_behind_a_strict_csp_and_has_a_json_twin(team: Team, client: TestClient[Any]) -> None:
    for path in pages_of(team):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:1000])
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert 'class="banner banner-ok"' in page.text and "Ledger verified:" in page.text
        assert "<script>" not in page.text.replace('<script src="/static/proof.js" defer></script>', "")
        twin = "/api/overview" if path == "/" else "/api" + path
        data = get_json(client, twin)
        assert data["ledger"]["ok"] is True and data["ledger"]["state"] == "verified"


def test_runs_are_listed_from_the_ledger_with_filters_and_pages(team: Team, client: TestClient[Any]) -> None:
    data = get_json(client, "/api/runs")
    assert data["total"] == 4
    cli = run_assay("audit", "runs", "--json", home=team.home, env={"ASSAY_DB_URL": team.db})
    by_id = {r["run_id"]: r for r in json.loads(cli.stdout)["runs"]}
    for run in data["runs"]:
        expected = by_id[run["run_id"]]
        for key in ("first_seq", "last_seq", "records", "started", "last_time", "complete"):
            assert run[key] == expected[key], key
    assert {r["run_id"] for r in get_json(client, "/api/runs?status=blocked")["runs"]} == \
        {team.runs["blocked"], team.runs["waived"]}
    [credit] = get_json(client, "/api/runs?model=credit")["runs"]
    assert (credit["model"], credit["decision"], credit["policy"]) == ("credit@1", "pass", "team")
    assert [r["run_id"] for r in get_json(client, "/api/runs?policy=team")["runs"]] == [team.runs["passing"]]
    assert get_json(client, "/api/runs?since=2999-01-01")["total"] == 0
    second = get_json(client, "/api/runs?per_page=1&page=2")
    assert (second["pages"], len(second["runs"]), second["page"]) == (4, 1, 2)


def test_the_run_page_leads_with_what_blocked_it(team: Team, client: TestClient[Any]) -> None:
    run = team.runs["blocked"]
    data = get_json(client, f"/api/runs/{run}")
    recorded = team.ledger().records(run_id=run, kind="verdict")[-1].payload
    assert data["verdict"]["decision"] == "block" == recorded["decision"]
    assert data["verdict"]["reasons"] == recorded["reasons"] and recorded["reasons"]
    first = data["attention"][0]
    assert (first["level"], first["what"], first["kind"]) == ("block", "no-leakage[duplicates]", "rule")
    assert "37 test rows also appear" in first["message"]
    assert "checks.leakage.duplicates.status" in first["technical"]
    # the failing check is the finding that rule judges: said once, under the rule
    assert [i["what"] for i in data["attention"]].count("no-leakage[duplicates]") == 1
    assert not any(i["kind"] == "check" and "duplicates" in i["what"] for i in data["attention"])
    assert all(r["integrity"] == "verified" for r in data["records"])
    html = client.get(f"/runs/{run}").text
    order = [html.index(marker) for marker in ("Needs attention", "Gate decision:", "<h2>Checks</h2>",
                                               "<h2>Fairness: sex</h2>", "Ledger records (")]
    assert order == sorted(order)
    assert "37 test rows also appear in the training data" in html
    assert html.count("Ledger records (") == 1  # the report's own records table is replaced by the checked one


def test_models_have_the_cli_shape_and_the_ledger_stages(team: Team, client: TestClient[Any]) -> None:
    data = get_json(client, "/api/models")
    cli = json.loads(run_assay("models", "list", "--json", home=team.home, env={"ASSAY_DB_URL": team.db}).stdout)
    keys = ("name", "version", "ref", "stage", "family", "run_id", "artifact")
    assert sorted(tuple(m[k] for k in keys) for m in data["models"]) == \
        sorted(tuple(m[k] for k in keys) for m in cli["models"])
    stages = {m["ref"]: m["stage"] for m in data["models"]}
    assert stages["credit@1"] == "production" and stages["fraud@1"] == "staging" and stages["churn@1"] == "none"
    credit = get_json(client, "/api/models/credit")["versions"][0]
    genesis = team.ledger().records(kind="key_added")[0].payload["identity"]
    assert [(a["identity"], a["approver"]) for a in credit["approvals"]] == [(genesis, "rita")]
    assert [(p["from"], p["to"]) for p in credit["promotions"]] == [("none", "production")]
    assert credit["governing"]["ok"] is True
    fraud = get_json(client, "/api/models/fraud")["versions"][0]
    [waiver] = fraud["waivers"]
    assert (waiver["rule"], waiver["expires"], waiver["active"], waiver["approver"]) == \
        ("no-leakage[duplicates]", "2999-12-31", True, "dana")
    assert [v["decision"] for v in fraud["verdicts"]] == ["block", "pass"]


def test_the_production_answer_agrees_with_assay_verify_and_proves_its_checkpoint(team: Team,
                                                                                  client: TestClient[Any]) -> None:
    answer = get_json(client, "/api/models/credit/stages/production")
    cli = team.assay("verify", str(team.files["passing"]), "--json")
    assert cli.returncode == 0, cli.stderr
    verified = json.loads(cli.stdout)
    for key in ("ok", "decision", "verdict_seq", "policy_hash", "artifact", "run_id", "model", "ledger_size"):
        assert answer["verdict"][key] == verified[key], key
    assert answer["ok"] and answer["artifact"] == team.artifacts["passing"] and answer["ref"] == "credit@1"
    cp = answer["checkpoint"]
    assert cp["covers_verdict"] is True
    body, _ = parse_note(cp["note"])
    head = parse_checkpoint(body)
    verdict = team.ledger().records(kind="verdict", run_id=team.runs["passing"])[-1]
    leaf = leaf_hash(bytes.fromhex(verdict.hash))
    proof = [bytes.fromhex(h) for h in cp["verdict_inclusion_proof"]]
    assert root_from_inclusion(verdict.seq - 1, head.size, leaf, proof) == head.root
    missing = get_json(client, "/api/models/churn/stages/production", 404)
    assert missing["ok"] is False and "no such version" in missing["error"]
    blocked = get_json(client, "/api/models/churn/stages/none", 409)
    assert blocked["ok"] is False and "is 'block', not pass" in blocked["reason"]
    staged = get_json(client, "/api/models/fraud/stages/staging")
    assert staged["ok"] is True and staged["decision"] == "pass"


def test_the_ledger_page_is_the_audit_log_with_each_record_checked(team: Team, client: TestClient[Any]) -> None:
    data = get_json(client, "/api/ledger?per_page=500")
    log = json.loads(run_assay("audit", "log", "--json", home=team.home, env={"ASSAY_DB_URL": team.db}).stdout)
    fields = ("seq", "run_id", "kind", "time", "actor", "payload", "prev_hash", "hash", "key_id", "signature")
    assert [{k: r[k] for k in fields} for r in reversed(data["records"])] == \
        [{k: r[k] for k in fields} for r in log["records"]]
    assert {r["integrity"] for r in data["records"]} == {"verified"}
    newest = get_json(client, "/api/ledger?per_page=5")
    assert newest["next_before"] == newest["records"][-1]["seq"]
    older = get_json(client, f"/api/ledger?per_page=5&before={newest['next_before']}")
    assert older["records"][0]["seq"] == newest["next_before"] - 1
    verdicts = get_json(client, "/api/ledger?kind=verdict")["records"]
    assert len(verdicts) == 5 and {r["kind"] for r in verdicts} == {"verdict"}


def test_each_record_proof_recomputes_from_its_bytes_to_the_checkpoint_root(client: TestClient[Any]) -> None:
    size = get_json(client, "/api/status")["status"]["verified_size"]
    for seq in (1, 2, size // 2, size):
        proof = get_json(client, f"/api/ledger/{seq}/proof")
        assert proof["available"] and proof["server_check"] == "ok"
        h = record_hash(bytes.fromhex(proof["prev_hash"]), proof["body"].encode())
        assert h.hex() == proof["record_hash"] and DOMAIN_TAG.hex() == proof["domain_tag_hex"]
        body, _ = parse_note(proof["checkpoint"]["note"])
        head = parse_checkpoint(body)
        hashes = [bytes.fromhex(x) for x in proof["proof"]]
        assert root_from_inclusion(seq - 1, head.size, leaf_hash(h), hashes) == head.root
    page = client.get(f"/ledger/{size}").text
    assert f'data-proof-seq="{size}"' in page and "Download the proof" in page


def test_lineage_links_data_runs_models_verdicts_and_deployment(team: Team, client: TestClient[Any]) -> None:
    graph = get_json(client, f"/api/lineage?run={team.runs['passing']}")["graph"]
    kinds = {n["kind"] for n in graph["nodes"]}
    assert {"data", "run", "model", "verdict", "approval", "promotion", "monitor", "stage"} <= kinds
    stage = next(n for n in graph["nodes"] if n["kind"] == "stage")
    assert stage["label"] == "credit@1 in production" and stage["href"] == "/models/credit"
    data_node = next(n for n in graph["nodes"] if n["kind"] == "data")
    assert data_node["href"] == "/lineage?data=sha256:" + "d" * 64
    same_data = get_json(client, "/api/lineage?data=" + "d" * 64)
    assert {r["run_id"] for r in same_data["runs"]} == {team.runs["passing"], team.runs["blocked"]}
    verdict = next(n for n in graph["nodes"] if n["kind"] == "verdict")
    under = get_json(client, f"/api/lineage?policy={quoted(verdict['policy_hash'])}")
    assert {v["run_id"] for v in under["verdicts"]} == {team.runs["passing"]}
    html = client.get(f"/lineage?run={team.runs['passing']}").text
    assert '<a href="/lineage?data=sha256:' in html and '<a href="/models/credit"' in html


def test_monitoring_history_comes_from_the_monitor_records(client: TestClient[Any]) -> None:
    [credit] = get_json(client, "/api/monitoring")["models"]
    assert credit["model"] == "credit@1"
    assert [r["status"] for r in credit["results"]] == ["stable", "stable", "beyond_policy"]
    assert credit["trend"]["share_drifted"]["direction"] == "rising"
    assert credit["trend"]["share_drifted"]["threshold"] == 0.3
    html = client.get("/monitoring").text
    assert html.count("<svg") == 2 and html.count("<circle") == 6
    overview = get_json(client, "/api/overview")
    assert [m["model"] for m in overview["monitors_beyond_policy"]] == ["credit@1"]


def test_keys_and_checkpoints(team: Team, client: TestClient[Any]) -> None:
    data = get_json(client, "/api/keys")
    [key] = data["keys"]
    assert key["roles"] == ["admin"] and key["valid_from"] == 1
    assert key["identity"] == team.ledger().records(kind="key_added")[0].payload["identity"]
    assert data["checkpoint"]["matches_verified_tree"] is True
    assert data["witnessed"] is None


def test_every_value_is_escaped(team: Team, client: TestClient[Any]) -> None:
    for path in ("/runs", "/models", f"/models/{quoted(EVIL)}", f"/runs/{team.runs['escaped']}",
                 f"/runs/{team.runs['waived']}", "/models/fraud", f"/lineage?run={team.runs['escaped']}",
                 "/ledger?kind=waiver"):
        html = client.get(path).text
        assert EVIL not in html, path
        assert ESCAPED in html, path
    assert get_json(client, f"/api/models/{quoted(EVIL)}")["name"] == EVIL


def test_read_only_by_construction(team: Team, served: tuple[TestClient[Any], LedgerView]) -> None:
    client, view = served
    for path in [*pages_of(team), "/api/runs", "/api/models/credit/stages/production", "/static/proof.js"]:
        for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET"
    routes = create_app(view, start=False).app.routes
    assert {m for r in routes for m in r.methods} <= {"GET", "OPTIONS"}  # OPTIONS never reaches the router
    src = view.reader.source()
    with pytest.raises(Exception, match=r"readonly|read-only"):
        src.query("INSERT INTO ledger_meta (name, value) VALUES (?, ?)", ("web", "write"))
    size = team.ledger().size()
    assert view.reader.max_seq() == size


def test_a_token_guards_every_route(team: Team) -> None:
    token = "s3cret-token-of-thirty-two-bytes"
    view = LedgerView(team.settings)
    with TestClient(create_app(view, token=token.encode())) as client:
        view.wait_ready(60)
        for path in ("/", "/runs", "/api/status", "/static/assay.css", "/no/such/page"):
            bare = client.get(path)
            assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Basic")
            assert "content-security-policy" in bare.headers
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        basic = base64.b64encode(f"reviewer:{token}".encode()).decode()
        assert client.get("/api/runs", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        page = client.get("/keys", headers={"Authorization": f"Bearer {token}"}).text
        assert token not in page


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(team: Team, tmp_path: Path) -> None:
    result = run_assay("serve", "--listen", "0.0.0.0:8765", home=team.home, env={"ASSAY_DB_URL": team.db})
    assert result.returncode == 2
    assert "serving beyond this machine needs --token-file FILE" in result.stderr and "Traceback" not in result.stderr
    short = tmp_path / "token"
    short.write_text("abc\n")
    result = run_assay("serve", "--listen", "0.0.0.0:8765", "--token-file", str(short), home=team.home)
    assert result.returncode == 2 and "shorter than 16 bytes" in result.stderr
    missing = run_assay("serve", home=tmp_path / "empty-home")
    assert missing.returncode == 2 and "no ledger at" in missing.stderr
    bad = run_assay("serve", "--listen", "localhost", home=team.home)
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr


def _tamper_sqlite(db: Path, seq: int, old: bytes, new: bytes) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    for name in ("ledger_records_no_update", "ledger_records_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    body = conn.execute("SELECT body FROM ledger_records WHERE seq = ?", (seq,)).fetchone()[0]
    assert old in body
    conn.execute("UPDATE ledger_records SET body = ? WHERE seq = ?", (body.replace(old, new), seq))
    conn.close()


def test_a_database_edited_behind_the_ledger_turns_the_banner_red(sqlite_team: Team, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(sqlite_team.home, home)
    settings = Settings(home, f"sqlite:///{home / 'assay.db'}")
    view = LedgerView(settings, poll=0.1)
    with TestClient(create_app(view)) as client:
        assert view.wait_ready(60) and view.status.ok
        verdict = next(r for r in get_json(client, f"/api/runs/{sqlite_team.runs['blocked']}")["records"]
                       if r["kind"] == "verdict")
        _tamper_sqlite(home / "assay.db", verdict["seq"], b'"decision":"block"', b'"decision":"pass"')
        run = get_json(client, f"/api/runs/{sqlite_team.runs['blocked']}")
        changed = next(r for r in run["records"] if r["seq"] == verdict["seq"])
        assert changed["integrity"] == "changed"
        assert run["verdict"]["decision"] == "block"  # the page keeps what was verified
        first = run["attention"][0]
        assert (first["kind"], first["level"]) == ("ledger", "block")
        assert f"record {verdict['seq']} differs from the verified ledger" in first["message"]
        for _ in range(200):
            status = get_json(client, "/api/status")["status"]
            if status["state"] == "failed":
                break
            time.sleep(0.05)
        assert status["state"] == "failed" and status["first_bad_seq"] == verdict["seq"]
        page = client.get("/runs").text
        assert 'class="banner banner-bad"' in page
        assert f"tampering found at record {verdict['seq']}" in page
        assert get_json(client, "/api/models/credit/stages/production", 503)["ok"] is False
    fresh = LedgerView(settings)
    with TestClient(create_app(fresh)) as client:
        assert fresh.wait_ready(60)
        response = client.get("/runs")
        assert response.status_code == 503 and f"tampering found at record {verdict['seq']}" in response.text
        assert 'class="banner banner-bad"' in response.text
        assert get_json(client, "/api/runs", 503)["ledger"]["first_bad_seq"] == verdict["seq"]


# --------------------------------------------------------------------------- parsers


@settings(max_examples=300, deadline=None)
@given(header=st.one_of(st.text(max_size=80), st.builds(lambda s, v: f"{s} {v}", st.sampled_from(
    ["Bearer", "bearer", "Basic", "Digest", ""]), st.text(max_size=60))), token=st.binary(min_size=16, max_size=40))
def test_a_header_without_the_token_never_passes(header: str, token: bytes) -> None:
    assert token_matches(header, token) is False


@settings(max_examples=100, deadline=None)
@given(token=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=16, max_size=64),
       user=st.text(alphabet="abcxyz", max_size=8))
def test_bearer_and_basic_spellings_of_the_token_are_accepted(token: str, user: str) -> None:
    assert token_matches(f"Bearer {token}", token.encode())
    assert token_matches("Basic " + base64.b64encode(f"{user}:{token}".encode()).decode(), token.encode())
    assert not token_matches(f"Bearer {token}x", token.encode())


@given(host=st.sampled_from(["127.0.0.1", "localhost", "::1", "127.1.2.3", "0.0.0.0", "10.0.0.5", "example.org"]),
       port=st.integers(min_value=1, max_value=65535))
def test_listen_addresses(host: str, port: int) -> None:
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_listen(shown) == (host, port)
    assert is_loopback(host) == (host in ("127.0.0.1", "localhost", "::1", "127.1.2.3"))


@given(schema=st.from_regex(r"t_[a-z0-9]{1,12}", fullmatch=True),
       extra=st.sampled_from(["", "&sslmode=disable", "&application_name=web"]))
def test_postgres_sessions_are_read_only_and_keep_their_options(schema: str, extra: str) -> None:
    url = readonly_url(f"postgresql+psycopg://u@h:5432/db?options=-csearch_path%3D{schema}{extra}")
    query = dict(urllib.parse.parse_qsl(url.split("?", 1)[1]))
    assert query["options"] == f"-csearch_path={schema} {READ_ONLY_OPTION}"
    assert readonly_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_keys_page_lists_and_checks_witness_cosignatures(sqlite_team: Team, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from assay.audit.witness import COSIGNATURE_ALG, cosign, format_vkey, witnessed_note_path

    home = tmp_path / "home"
    shutil.copytree(sqlite_team.home, home)
    settings = Settings(home, f"sqlite:///{home / 'assay.db'}")
    view = LedgerView(settings)
    note_path = view.checkpoint_path()
    assert note_path is not None
    note = note_path.read_text()
    body, _ = parse_note(note)
    witness, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trusted = format_vkey("witness.example/w1", COSIGNATURE_ALG, witness.public_key().public_bytes_raw())
    absent = format_vkey("witness.example/w2", COSIGNATURE_ALG, stranger.public_key().public_bytes_raw())
    witnessed_note_path(home, view.ledger_id).write_text(note + cosign(body, "witness.example/w1", witness, 1_700_000_000))
    with TestClient(create_app(view, witness_keys=[trusted])) as client:
        assert view.wait_ready(60)
        data = get_json(client, "/api/keys")["witnessed"]
        assert [(c["name"], c["time"]) for c in data["cosignatures"]] == [("witness.example/w1", "2023-11-14T22:13:20Z")]
        assert data["check"]["ok"] is True and data["matches_verified_tree"] is True
        answer = get_json(client, "/api/models/credit/stages/production")
        assert answer["witnessed"]["covers_verdict"] is True
        assert "cosigned by 1 of 1 trusted witness(es)" in client.get("/keys").text
    second = LedgerView(settings)
    with TestClient(create_app(second, witness_keys=[trusted, absent])) as client:
        assert second.wait_ready(60)
        check = get_json(client, "/api/keys")["witnessed"]["check"]
        assert check["ok"] is False and "missing: witness.example/w2" in check["problems"][0]
