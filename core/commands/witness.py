"""``assay witness …``: run an independent checkpoint witness (c2sp.org/tlog-witness).

``--home WDIR`` is the witness's own home — its key and state — never a ledger's home. The
witness is meant to run somewhere the ledger's operator does not control; the commands are:

    assay --home WDIR witness init [--name NAME]      create the witness key (0600) and state
    assay --home WDIR witness add-log VKEY            witness the log whose checkpoints VKEY signs
    assay --home WDIR witness vkey                    print the key auditors pass to --witness-key
    assay --home WDIR witness serve --listen H:P      serve POST /add-checkpoint (uvicorn)
    assay --home WDIR witness logs [--json]           the logs witnessed and their latest sizes
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from assay.errors import BadInput
from assay.storage.settings import Settings


def _home(ctx: click.Context) -> Path:
    obj = ctx.find_object(Settings)
    return obj.home if obj is not None else Settings.resolve().home


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True))


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6 address]:PORT`` for IPv6) as (host, port); BadInput otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", value)
    if m is None:
        raise BadInput(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8780 (or [::1]:8780)")
    host, port_s = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    port = int(port_s)
    if not 0 < port < 65536:
        raise BadInput(f"--listen {value!r}: port {port} is outside 1..65535")
    return host, port


@click.group()
def witness() -> None:
    """Run an independent checkpoint witness (its own --home, never a ledger's)."""


@witness.command("init")
@click.option("--name", help="The witness's key name, a schema-less URL (default: a random assay.witness/… name).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def init_cmd(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Create the witness's Ed25519 key (mode 0600) and state database in --home."""
    from assay.audit.witness import WitnessState

    home = _home(ctx)
    state, created = WitnessState.init(home, name)
    if as_json:
        _echo_json({"name": state.name, "vkey": state.vkey, "home": str(home), "created": created})
        return
    click.echo(f"{'created' if created else 'already initialized:'} witness {state.name} in {home}")
    click.echo(state.vkey)


@witness.command("add-log")
@click.argument("vkey")
@click.option("--origin", help="The log's checkpoint origin line (default: the key's name, as assay ledgers use).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def add_log_cmd(ctx: click.Context, vkey: str, origin: str | None, as_json: bool) -> None:
    """Witness the log whose checkpoints VKEY signs (`assay keys vkey` prints a ledger's).

    Run it again with the new key after the log rotates its key: every key added stays trusted.
    """
    from assay.audit.witness import WitnessState

    state = WitnessState.open(_home(ctx))
    log_origin, added = state.add_log(vkey, origin)
    latest = state.latest(log_origin)
    size = latest[0] if latest else 0
    if as_json:
        _echo_json({"origin": log_origin, "vkey": vkey.strip(), "added": added, "size": size})
        return
    verb = "now witnessing" if added else "already witnessing"
    click.echo(f"{verb} {log_origin} with key {vkey.strip().split('+')[1]} (latest cosigned size {size})")


@witness.command("vkey")
@click.pass_context
def vkey_cmd(ctx: click.Context) -> None:
    """Print this witness's cosignature verifier key (for `assay audit verify --witness-key`)."""
    from assay.audit.witness import WitnessState

    click.echo(WitnessState.open(_home(ctx)).vkey)


@witness.command("logs")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def logs_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the logs this witness witnesses, their keys and the latest size it cosigned."""
    from assay.audit.witness import WitnessState

    state = WitnessState.open(_home(ctx))
    logs = state.logs()
    if as_json:
        _echo_json({"witness": state.vkey, "logs": logs})
        return
    if not logs:
        click.echo("no logs yet (add one with: assay --home WDIR witness add-log VKEY)")
    for log in logs:
        flag = f", {log['inconsistent_requests']} inconsistent request(s) kept" if log["inconsistent_requests"] else ""
        click.echo(f"{log['origin']}  size {log['size']}  {len(log['keys'])} key(s){flag}")


@witness.command("serve")
@click.option("--listen", default="127.0.0.1:8780", show_default=True, help="HOST:PORT to listen on.")
@click.option("--no-access-log", is_flag=True, help="Do not log each request.")
@click.pass_context
def serve_cmd(ctx: click.Context, listen: str, no_access_log: bool) -> None:
    """Serve POST /add-checkpoint (and GET /<origin hash>/checkpoint) until interrupted."""
    from assay.audit.witness import WitnessState

    host, port = parse_listen(listen)
    home = _home(ctx)
    state = WitnessState.open(home)
    from assay.audit.witness_server import serve

    click.echo(f"witness {state.vkey} on http://{listen}/add-checkpoint", err=True)
    serve(home, host, port, access_log=not no_access_log)


# ------------------------------------------------------------------ used by `assay audit verify`


def with_witness(data: dict[str, Any], check: Any) -> dict[str, Any]:
    """The verify JSON with a ``witness`` object; ``ok`` is false unless the witnesses agree too."""
    if check is None:
        return data
    return {**data, "ok": bool(data.get("ok")) and check.ok, "witness": check.to_json()}


def finish_witness_check(check: Any, as_json: bool, ledger_ok: bool) -> None:
    """Report the witness check in text mode; a failed check is a Finding (exit 1)."""
    from assay.errors import Finding

    if not as_json:
        if check.ok:
            names = ", ".join(sorted(v.split("+")[0] for v in check.cosigned_by))
            click.echo(
                f"witnessed: checkpoint of size {check.size} cosigned by {len(check.cosigned_by)} of "
                f"{check.witnesses} trusted witness(es) (quorum {check.quorum}): {names}"
            )
        else:
            for p in check.problems:
                click.echo(f"  witness: {p}")
    if not check.ok and ledger_ok:
        raise Finding(f"checkpoint not witnessed: {check.problems[0]}")
