"""The ASGI application of ``assay serve``: server-rendered pages, each with a JSON twin under ``/api``.

Read-only by construction: every route is a GET (any other method is answered 405 before
routing), the database is opened read-only (``assay.web.source``), and nothing here writes to
the home. A guard in front of the router adds a strict Content-Security-Policy (scripts and
styles from this origin only, no inline script) and, when a token is configured, requires it on
every request — ``Authorization: Bearer TOKEN``, or HTTP Basic with the token as the password so
that a browser can ask for it — compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader
from litestar import Litestar, Request, Response, get
from markupsafe import Markup

from assay.web import pages

try:  # litestar ≥ 2.17 asks for path parameters to be marked; older releases infer them
    from litestar.params import PathParameter

    PathStr: Any = Annotated[str, PathParameter()]
    PathInt: Any = Annotated[int, PathParameter()]
except ImportError:  # pragma: no cover - older litestar
    PathStr, PathInt = str, int
from assay.web.pages import PageError
from assay.web.view import LedgerView

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
STATIC = {"assay.css": "text/css", "proof.js": "text/javascript"}
NAV = [("/", "Attention"), ("/runs", "Runs"), ("/models", "Models"), ("/lineage", "Lineage"), ("/ledger", "Ledger"),
       ("/monitoring", "Monitoring"), ("/keys", "Keys & witnesses")]
STAGES = ("none", "staging", "production", "archived")


def token_matches(header: str, token: bytes) -> bool:
    """``Authorization: Bearer TOKEN`` or ``Basic base64(any-user:TOKEN)``, compared in constant time."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        given = value.encode()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value, validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
    else:
        return False
    return hmac.compare_digest(given, token)


class Guard:
    """ASGI middleware: GET only, the bearer token when there is one, and the security headers."""

    def __init__(self, app: Any, token: bytes | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "GET":
            await _plain(send, 405, b"this view is read-only: only GET requests are answered\n", [(b"allow", b"GET")])
            return
        if self.token is not None:
            header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), "")
            if not token_matches(header, self.token):
                await _plain(send, 401, b"a token is required: send Authorization: Bearer TOKEN\n",
                             [(b"www-authenticate", b'Basic realm="assay", charset="UTF-8"')])
                return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in SECURITY_HEADERS if k not in present]]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Callable[..., Any], status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *extra, *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- templates


def _q(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _qs_filter(values: dict[str, Any]) -> str:
    """``a=1&b=2&`` from the non-empty values (a prefix for one more parameter)."""
    kept = {k: v for k, v in values.items() if v not in (None, "")}
    return urllib.parse.urlencode(kept) + "&" if kept else ""


def _when(value: Any) -> str:
    text = str(value or "")
    return text[:19].replace("T", " ") if text else "—"


def make_env() -> Environment:
    """Templates with every value escaped; a payload key a record lacks renders empty, never a 500."""
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True, undefined=ChainableUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(q=_q, qs=_qs_filter, num=_num, when=_when, tojson_pretty=lambda v: json.dumps(v, indent=2, sort_keys=True,
                                                                                       default=str))
    return env


# --------------------------------------------------------------------------- the app


def create_app(view: LedgerView, token: bytes | None = None, witness_keys: list[str] | None = None,
               start: bool = True) -> Any:
    """The guarded ASGI app over ``view`` (its verifier starts with the app unless ``start`` is false)."""
    env = make_env()
    wkeys = list(witness_keys or [])

    def html(template: str, status_code: int = 200, **context: Any) -> Response[str]:
        text = env.get_template(template).render(status=view.status, nav=NAV, db=pages.describe_db(view), **context)
        headers = {"retry-after": "2"} if status_code == 503 else {}
        return Response(text, status_code=status_code, media_type="text/html", headers=headers)

    def api(data: dict[str, Any], status_code: int = 200) -> Response[str]:
        body = json.dumps({**data, "ledger": pages.ledger_state(view)}, sort_keys=True, default=str)
        headers = {"retry-after": "2"} if status_code == 503 else {}
        return Response(body, status_code=status_code, media_type="application/json", headers=headers)

    def page(template: str, path: str, build: Callable[[], dict[str, Any]],
             extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Response[str]:
        try:
            data = build()
        except PageError as exc:
            return html("error.html", exc.status, message=exc.message, api_path=path, active=_active(path))
        more = extra(data) if extra is not None else {}
        return html(template, data=data, api_path="/api" + path if path != "/" else "/api/overview",
                    active=_active(path), **more)

    def answer(build: Callable[[], dict[str, Any]]) -> Response[str]:
        try:
            return api(build())
        except PageError as exc:
            return api({"error": exc.message, **exc.data}, exc.status)

    def _query(request: Request[Any, Any, Any]) -> Callable[[str], str]:
        return lambda name: str(request.query_params.get(name) or "").strip()

    def _int(value: str) -> int | None:
        return int(value) if value.isdigit() else None

    # -- overview
    @get("/", sync_to_thread=True)
    def overview_html() -> Response[str]:
        return page("overview.html", "/", lambda: pages.overview(view))

    @get("/api/overview", sync_to_thread=True)
    def overview_api() -> Response[str]:
        return answer(lambda: pages.overview(view))

    @get("/api/status", sync_to_thread=True)
    def status_api() -> Response[str]:
        return api({"status": view.status.to_json(), "ledger_id": view.ledger_id, "database": pages.describe_db(view)})

    # -- runs
    def _runs(request: Request[Any, Any, Any]) -> dict[str, Any]:
        q = _query(request)
        return pages.runs_page(view, q("model"), q("status"), q("policy"), q("since"), q("until"),
                               _int(q("page")), _int(q("per_page")))

    @get("/runs", sync_to_thread=True)
    def runs_html(request: Request[Any, Any, Any]) -> Response[str]:
        return page("runs.html", "/runs" + _qs(request), lambda: _runs(request))

    @get("/api/runs", sync_to_thread=True)
    def runs_api(request: Request[Any, Any, Any]) -> Response[str]:
        return answer(lambda: _runs(request))

    @get("/runs/{run_id:str}", sync_to_thread=True)
    def run_html(run_id: PathStr) -> Response[str]:
        return page("run.html", f"/runs/{run_id}", lambda: pages.run_page(view, run_id),
                    lambda data: {"report": Markup(pages.run_report_html(view, data))})  # assay.commands.report escapes every value

    @get("/api/runs/{run_id:str}", sync_to_thread=True)
    def run_api(run_id: PathStr) -> Response[str]:
        return answer(lambda: pages.run_page(view, run_id))

    # -- models (a name may hold any character, '/' included: the rest of the path is parsed here)
    @get("/models", sync_to_thread=True)
    def models_html(request: Request[Any, Any, Any]) -> Response[str]:
        q = _query(request)
        return page("models.html", "/models" + _qs(request), lambda: pages.models_page(view, _int(q("page"))))

    @get("/api/models", sync_to_thread=True)
    def models_api(request: Request[Any, Any, Any]) -> Response[str]:
        q = _query(request)
        return answer(lambda: pages.models_page(view, _int(q("page")), _int(q("per_page"))))

    @get("/models/{rest:path}", sync_to_thread=True)
    def model_html(rest: PathStr, request: Request[Any, Any, Any]) -> Response[str]:
        name = rest.lstrip("/")
        q = _query(request)
        return page("model.html", f"/models/{_q(name)}", lambda: pages.model_page(view, name, _int(q("page"))))

    @get("/api/models/{rest:path}", sync_to_thread=True)
    def model_api(rest: PathStr, request: Request[Any, Any, Any]) -> Response[str]:
        name = rest.lstrip("/")
        head, sep, stage = name.rpartition("/stages/")
        if sep and stage in STAGES and head:
            try:
                data = pages.stage_answer(view, head, stage, wkeys)
            except PageError as exc:
                return api({"ok": False, "error": exc.message, **exc.data, "model": head, "stage": stage}, exc.status)
            return api(data, 200 if data["ok"] else 409)
        q = _query(request)
        return answer(lambda: pages.model_page(view, name, _int(q("page")), _int(q("per_page"))))

    # -- lineage
    def _lineage(request: Request[Any, Any, Any]) -> dict[str, Any]:
        q = _query(request)
        return pages.lineage_page(view, q("run"), q("data"), q("policy"), _int(q("page")), _int(q("per_page")))

    @get("/lineage", sync_to_thread=True)
    def lineage_html(request: Request[Any, Any, Any]) -> Response[str]:
        return page("lineage.html", "/lineage" + _qs(request), lambda: _lineage(request),
                    lambda data: {"svg": pages.layout(data["graph"])} if data["mode"] == "run" else {})

    @get("/api/lineage", sync_to_thread=True)
    def lineage_api(request: Request[Any, Any, Any]) -> Response[str]:
        return answer(lambda: _lineage(request))

    # -- ledger
    def _ledger(request: Request[Any, Any, Any]) -> dict[str, Any]:
        q = _query(request)
        return pages.ledger_page(view, _int(q("before")), q("kind"), q("run"), _int(q("per_page")))

    @get("/ledger", sync_to_thread=True)
    def ledger_html(request: Request[Any, Any, Any]) -> Response[str]:
        return page("ledger.html", "/ledger" + _qs(request), lambda: _ledger(request))

    @get("/api/ledger", sync_to_thread=True)
    def ledger_api(request: Request[Any, Any, Any]) -> Response[str]:
        return answer(lambda: _ledger(request))

    @get("/ledger/{seq:int}", sync_to_thread=True)
    def record_html(seq: PathInt) -> Response[str]:
        return page("record.html", f"/ledger/{seq}", lambda: pages.record_page(view, seq))

    @get("/api/ledger/{seq:int}", sync_to_thread=True)
    def record_api(seq: PathInt) -> Response[str]:
        return answer(lambda: pages.record_page(view, seq))

    @get("/api/ledger/{seq:int}/proof", sync_to_thread=True)
    def proof_api(seq: PathInt) -> Response[str]:
        def build() -> dict[str, Any]:
            return pages.record_page(view, seq)["proof"]

        response = answer(build)
        response.headers["content-disposition"] = f'inline; filename="record-{seq}-proof.json"'
        return response

    # -- monitoring, keys
    @get("/monitoring", sync_to_thread=True)
    def monitoring_html(request: Request[Any, Any, Any]) -> Response[str]:
        q = _query(request)
        return page("monitoring.html", "/monitoring" + _qs(request),
                    lambda: pages.monitoring_page(view, q("model"), _int(q("page"))),
                    lambda data: {"charts": {m["model"]: [Markup(c) for c in pages.monitoring_charts(m)]
                                             for m in data["models"]}})

    @get("/api/monitoring", sync_to_thread=True)
    def monitoring_api(request: Request[Any, Any, Any]) -> Response[str]:
        q = _query(request)
        return answer(lambda: pages.monitoring_page(view, q("model"), _int(q("page")), _int(q("per_page"))))

    @get("/keys", sync_to_thread=True)
    def keys_html() -> Response[str]:
        return page("keys.html", "/keys", lambda: pages.keys_page(view, wkeys))

    @get("/api/keys", sync_to_thread=True)
    def keys_api() -> Response[str]:
        return answer(lambda: pages.keys_page(view, wkeys))

    # -- assets bundled in the package
    @get("/static/{name:str}", sync_to_thread=True)
    def static(name: PathStr) -> Response[bytes]:
        if name == "report.css":
            from assay.commands.report import CSS

            return Response(CSS.encode(), media_type="text/css")
        if name not in STATIC:
            return Response(b"not found\n", status_code=404, media_type="text/plain")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name])

    handlers = [overview_html, overview_api, status_api, runs_html, runs_api, run_html, run_api, models_html,
                models_api, model_html, model_api, lineage_html, lineage_api, ledger_html, ledger_api, record_html,
                record_api, proof_api, monitoring_html, monitoring_api, keys_html, keys_api, static]
    hooks: dict[str, Any] = {}
    if start:
        hooks = {"on_startup": [lambda: view.start()], "on_shutdown": [lambda: view.stop()]}
    app = Litestar(route_handlers=handlers, openapi_config=None, debug=False,
                   exception_handlers={500: _internal_error}, **hooks)
    return Guard(app, token)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """Exit code 3's counterpart: a 500 whose traceback goes to the server's log, never to the page."""
    logging.getLogger("assay.web").error("internal error on %s", request.url.path, exc_info=exc)
    return Response(f"internal error: {type(exc).__name__} (the server's log has the traceback)\n",
                    status_code=500, media_type="text/plain")


def _qs(request: Request[Any, Any, Any]) -> str:
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"?{query}" if query else ""


def _active(path: str) -> str:
    first = "/" + path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return first if first != "/api" else "/"


def serve(view: LedgerView, host: str, port: int, token: bytes | None, witness_keys: list[str],
          access_log: bool = True) -> None:
    """Run the web view on ``host:port`` until interrupted (uvicorn, as the witness server is run)."""
    import uvicorn

    uvicorn.run(create_app(view, token, witness_keys), host=host, port=port, access_log=access_log,
                log_level="info", server_header=False)
