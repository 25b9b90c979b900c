"""``assay serve``: start the read-only web view (imports of litestar and Jinja2 happen on invocation)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import click

from assay.errors import BadInput

DEFAULT_LISTEN = "127.0.0.1:8765"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) → (host, port); BadInput naming the option otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--listen {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> bytes:
    """The token in ``path`` (surrounding whitespace removed); BadInput if missing, empty or short."""
    try:
        token = Path(path).read_bytes().strip()
    except FileNotFoundError:
        raise BadInput(f"--token-file {path}: file not found") from None
    except OSError as exc:
        raise BadInput(f"--token-file {path}: cannot read it: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise BadInput(f"--token-file {path}: the token is {'empty' if not token else 'shorter than 16 bytes'}; "
                       "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE")
    if any(c < 0x21 or c > 0x7E for c in token):
        raise BadInput(f"--token-file {path}: the token must be printable ASCII without spaces (one line)")
    return token


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Address to serve on; any address other than loopback needs --token-file.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the token every request must present (Authorization: Bearer TOKEN, "
                   "or as the password of HTTP Basic).")
@click.option("--home", "home_opt", type=click.Path(file_okay=False), default=None,
              help="State directory (same as the global --home).")
@click.option("--db", "db_opt", default=None, help="Database URL (same as the global --db).")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY|FILE",
              help="A witness's cosignature key, or a file of them (repeatable): the keys page checks cosignatures.")
@click.option("--reverify-every", type=click.FloatRange(min=5), default=900.0, show_default=True, metavar="SECONDS",
              help="Verify the whole ledger again this often even when nothing seems to have changed.")
@click.option("--access-log/--no-access-log", default=True, help="Log each request (uvicorn's access log).")
@click.pass_obj
def serve(state: Any, listen: str, token_file: str | None, home_opt: str | None, db_opt: str | None,
          witness_keys: tuple[str, ...], reverify_every: float, access_log: bool) -> None:
    """Serve a read-only web view: runs, verdicts, registry, lineage, ledger, monitoring, keys.

    The database is opened read-only and every route is a GET. The ledger is verified in full
    in the background (again when it changes); a banner on every page says whether it verified.
    """
    from assay.storage.settings import Settings

    host, port = parse_listen(listen)
    token = read_token(token_file) if token_file else None
    if token is None and not is_loopback(host):
        raise BadInput(f"--listen {listen}: serving beyond this machine needs --token-file FILE "
                       "(every request must then carry the token); or listen on 127.0.0.1")
    settings = Settings.resolve(home_opt or (state.home if state is not None else None),
                                db_opt or (state.db_url if state is not None and not home_opt else None))
    keys: list[str] = []
    if witness_keys:
        from assay.audit.witness import load_witness_keys

        keys = load_witness_keys(witness_keys)
    if settings.is_sqlite:
        from assay.audit.verify import sqlite_path

        if not Path(sqlite_path(settings.db_url)).is_file():
            raise BadInput(f"no ledger at {sqlite_path(settings.db_url)} (nothing recorded yet; run `assay run` "
                           "first, or pass --home/--db)")
    from assay.web.app import serve as run_server
    from assay.web.view import LedgerView, default_workers

    view = LedgerView(settings, reverify_every=reverify_every, workers=default_workers())
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    click.echo(f"assay web view of {settings.shown_db_url} on {where} (read-only"
               f"{', token required' if token else ''}); Ctrl-C stops it", err=True)
    run_server(view, host, port, token, keys, access_log=access_log)
