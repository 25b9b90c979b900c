"""The ``assay`` command line.

Start-up stays light: sub-commands that need heavy libraries live in other modules and
are imported only when invoked (``assay --help`` imports no pandas or scikit-learn).
Errors a user can cause print one message and exit 2; findings exit 1; internal or
plugin errors exit 3 (set ``ASSAY_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from assay import __version__
from assay.errors import AssayError, BadInput
from assay.storage.settings import Settings, redact_url

# name -> ("module:attribute", short help). Imported on first use only.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("assay.commands.audit:audit", "Verify, list, checkpoint and export the audit ledger."),
    "keys": ("assay.commands.audit:keys", "Manage signing keys and the trust list."),
    "gate": ("assay.commands.governance:gate", "Evaluate a policy on a run's recorded evidence."),
    "policy": ("assay.commands.governance:policy", "Check policy files."),
    "verify": ("assay.commands.governance:verify", "Check a model artifact has a valid passing verdict."),
    "approve": ("assay.commands.governance:approve", "Sign an approval for a model version."),
    "waive": ("assay.commands.governance:waive", "Waive a policy rule for a model version, with an expiry."),
    "monitor": ("assay.commands.monitor:monitor", "Check a production batch for drift and decay."),
    "replay": ("assay.commands.replay:replay", "Retrain a recorded run and compare the results."),
    "diff": ("assay.commands.replay:diff", "Show what changed between two runs."),
    "lineage": ("assay.commands.lineage:lineage", "Show where a model came from."),
    "report": ("assay.commands.report:report", "Write an HTML report of a run."),
    "import-mlflow": ("assay.commands.mlflow_import:import_mlflow", "Gate an MLflow-logged scikit-learn model on its evaluation data."),
    "witness": ("assay.commands.witness:witness", "Run an independent checkpoint witness."),
    "serve": ("assay.web.cli:serve", "Serve a read-only web view of runs, verdicts, registry and ledger."),
}


@dataclass(frozen=True)
class CliState(Settings):
    """Global options: the settings plus plugin selection."""

    disabled: tuple[str, ...] = ()
    strict: bool = False

    def plugin_manager(self, extra: tuple[tuple[str, object], ...] = ()) -> Any:
        from assay.kernel.manager import make_plugin_manager

        pm = make_plugin_manager(self.disabled, strict=self.strict, extra_plugins=extra)
        for info in pm.failures:
            click.echo(f"warning: plugin {info.name!r} skipped: {info.error}", err=True)
        return pm


class LazyGroup(click.Group):
    """A group whose listed sub-commands are imported when invoked, not when listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in LAZY_COMMANDS:
            module_name, _, attr = LAZY_COMMANDS[cmd_name][0].partition(":")
            try:
                command = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError):
                return None
            return command
        state = ctx.find_object(CliState)
        if state is not None:  # a command contributed by a plugin
            from assay.kernel.runner import add_plugin_commands

            add_plugin_commands(state.plugin_manager(), self)
            return super().get_command(ctx, cmd_name)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(80)) for name, cmd in self.commands.items() if not cmd.hidden]
        rows += [(name, help_text) for name, (_, help_text) in LAZY_COMMANDS.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="assay")
@click.option("--home", type=click.Path(file_okay=False), envvar="ASSAY_HOME",
              help="State directory (default ./.assay).")
@click.option("--db", "db_url", envvar="ASSAY_DB_URL", help="Database URL (default SQLite in the home).")
@click.option("-p", "plugin_options", multiple=True, metavar="no:NAME", help="Block a plugin: -p no:NAME.")
@click.option("--strict-plugins", is_flag=True, help="Fail when a plugin cannot be loaded.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, db_url: str | None, plugin_options: tuple[str, ...],
        strict_plugins: bool) -> None:
    """Train models behind governance gates, with signed, tamper-evident run records."""
    disabled = []
    for opt in plugin_options:
        if not opt.startswith("no:") or len(opt) < 4:
            raise BadInput(f"-p {opt!r}: expected -p no:NAME to block the plugin NAME")
        disabled.append(opt[3:])
    settings = Settings.resolve(home, db_url)
    ctx.obj = CliState(settings.home, settings.db_url, tuple(disabled), strict_plugins)


# --------------------------------------------------------------------------- run


@cli.command()
@click.argument("spec", default="assay.toml", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key, e.g. split.seed=7.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Train under N seeds (split.seed, +1, ...): N governed runs, then the metric's mean ± sd.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_obj
def run(state: CliState, spec: str, overrides: tuple[str, ...], seeds: int, as_json: bool, quiet: bool) -> None:
    """Train, evaluate and gate the model described by SPEC (default ./assay.toml).

    With --seeds N the spec runs N times, each a complete run under its own seed; each later run's
    evidence lists the earlier ones as its siblings (selection.siblings), so a policy can ask for a
    seed-robustness run, and --json prints {"runs": [...], "metric", "mean", "sd", "seeds"}.
    """
    from assay.commands.terminal import make_console
    from assay.kernel.runner import Runner
    from assay.kernel.spec import load_spec

    run_spec, base_dir = load_spec(spec, list(overrides))
    spec_path = base_dir / Path(spec).name if not Path(spec).is_dir() else base_dir / "assay.toml"
    console = make_console(stderr=True)
    extra: tuple[tuple[str, object], ...] = ()
    if not quiet and (not as_json or sys.stderr.isatty()):
        from assay.commands.terminal import TerminalReporter

        extra = (("terminal", TerminalReporter(console)),)
    pm = state.plugin_manager(extra)
    if seeds == 1:
        result = Runner(pm, state, run_spec, spec_path).execute()
        if as_json:
            click.echo(json.dumps(result.to_json(), sort_keys=True))
        else:
            _print_result(result)
        sys.exit(result.exit_code)
    first = run_spec.split.seed
    results = []
    for seed in range(first, first + seeds):
        seeded, _ = load_spec(spec, [*overrides, f"split.seed={seed}"])
        results.append(Runner(pm, state, seeded, spec_path).execute())
    summary = _seed_summary(run_spec.metric, list(range(first, first + seeds)), results)
    if as_json:
        click.echo(json.dumps({**summary, "runs": [r.to_json() for r in results]}, sort_keys=True))
    else:
        _print_seeds(summary)
    sys.exit(max(r.exit_code for r in results))


def _seed_summary(metric: str, seeds: list[int], results: list[Any]) -> dict[str, Any]:
    """Each seed's run, status and holdout metric, and the metric's mean and standard deviation."""
    import statistics

    rows = []
    for seed, r in zip(seeds, results, strict=True):
        value = ((r.evidence or {}).get("metrics") or {}).get("test", {}).get(metric)
        rows.append({"seed": seed, "run_id": r.run_id, "status": r.status,
                     "value": value if isinstance(value, (int, float)) else None})
    values = [row["value"] for row in rows if row["value"] is not None]
    return {"metric": metric, "seeds": rows, "mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None}


def _print_seeds(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from assay.commands.terminal import make_console

    table = Table(title=f"{summary['metric']} on the holdout, per seed", title_justify="left")
    for col in ("seed", "run", "status", summary["metric"]):
        table.add_column(col, no_wrap=col == "run", justify="right" if col != "run" and col != "status" else "left")
    for row in summary["seeds"]:
        table.add_row(str(row["seed"]), row["run_id"], row["status"],
                      "—" if row["value"] is None else f"{row['value']:.4f}")
    console = make_console()
    console.print(table)
    if summary["mean"] is not None:
        sd = "" if summary["sd"] is None else f" ± {summary['sd']:.4f} (sd)"
        console.print(f"{summary['metric']}: {summary['mean']:.4f}{sd} over {len(summary['seeds'])} seeds; "
                      "`assay gate RUN_ID` shows any run's verdict", soft_wrap=True)


def _print_result(result: Any) -> None:
    from rich.markup import escape

    from assay.commands.terminal import make_console, print_result

    if result.status == "errored":
        err = make_console(stderr=True)
        err.print(f"[red]error:[/] {escape(result.error)}", soft_wrap=True)
        err.print(f"run {result.run_id} recorded as errored; the gate fails closed", soft_wrap=True)
        return
    print_result(make_console(), result)


# --------------------------------------------------------------------------- init


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--data", "data_path", type=click.Path(dir_okay=False), help="CSV or Parquet file to train on.")
@click.option("--target", help="Target column (default: the last column).")
@click.option("--force", is_flag=True, help="Overwrite an existing assay.toml.")
@click.pass_obj
def init(state: CliState, directory: str, data_path: str | None, target: str | None, force: bool) -> None:
    """Scaffold DIRECTORY with assay.toml, a policy file and a signing key."""
    from assay.commands.scaffold import scaffold

    for line in scaffold(state, Path(directory), data_path, target, force):
        click.echo(line)


# --------------------------------------------------------------------------- plugins


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def plugins(state: CliState, as_json: bool) -> None:
    """List plugins with their version, status and the hooks they implement."""
    pm = state.plugin_manager()
    if as_json:
        click.echo(json.dumps({"plugins": [i.to_json() for i in pm.infos]}, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("name", "version", "status", "hooks"):
        table.add_column(col)
    for info in pm.infos:
        table.add_row(info.name, info.version, info.status if not info.error else f"{info.status}: {info.error}",
                      ", ".join(info.hooks))
    Console().print(table)


# --------------------------------------------------------------------------- models


@cli.group()
def models() -> None:
    """The model registry: list, show and promote versions."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_list(state: CliState, as_json: bool) -> None:
    """List registered model versions."""
    from assay.storage.store import RunStore

    rows = RunStore(state).model_versions()
    if as_json:
        click.echo(json.dumps({"models": [_version_json(r) for r in rows]}, sort_keys=True))
        return
    from rich.table import Table
    from rich.text import Text

    from assay.commands.terminal import make_console

    table = Table(show_edge=False)
    for col in ("model", "stage", "family", "run", "artifact", "created"):
        table.add_column(col, overflow="fold")  # ids are copied from here: wrap them, never cut them
    for r in rows:
        table.add_row(*(Text(c) for c in (r.ref, r.stage, r.family, r.run_id, r.artifact,
                                          f"{r.created_at:%Y-%m-%d %H:%M}")))
    make_console().print(table)


@models.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_show(state: CliState, ref: str, as_json: bool) -> None:
    """Show one model version (NAME@VERSION, NAME@latest, NAME@production)."""
    from assay.storage.signed import SignedLedger
    from assay.storage.store import RunStore

    store, signed = RunStore(state), SignedLedger.open(state)
    version = store.resolve_model(ref, signed=signed)
    row = store.signed_run(version.run_id, signed)
    evidence = row.evidence or {}
    data = {**_version_json(version), "status": row.status, "metric": evidence.get("metric"),
            "metrics": evidence.get("metrics", {}), "baseline": evidence.get("baseline", {}),
            "params": evidence.get("model", {}).get("params", {}), "verdict": (row.verdict or {}).get("decision"),
            "data": {k: evidence.get("data", {}).get(k) for k in ("source", "fingerprint", "rows")}}
    if as_json:
        click.echo(json.dumps(data, sort_keys=True, default=str))
        return
    from rich.console import Console
    from rich.pretty import Pretty

    Console().print(Pretty(data))


def _version_json(r: Any) -> dict[str, Any]:
    return {"name": r.name, "version": r.version, "ref": r.ref, "stage": r.stage, "family": r.family,
            "run_id": r.run_id, "artifact": r.artifact, "created_at": r.created_at.isoformat()}


class _PromoteProxy(click.Command):
    """Defers importing the promotion command until it is invoked."""

    def __init__(self) -> None:
        super().__init__("promote", help="Promote NAME@VERSION to a stage (needs a passing verdict).",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                           "help_option_names": []})

    def invoke(self, ctx: click.Context) -> Any:
        from assay.commands.governance import promote

        return promote.main(ctx.args, prog_name="assay models promote", standalone_mode=False, obj=ctx.obj)


models.add_command(_PromoteProxy())


# --------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI and map errors to exit codes without tracebacks."""
    from assay.kernel.environment import prefer_passive_openmp

    prefer_passive_openmp()  # before anything loads scikit-learn's OpenMP runtime
    # At exit Python's collector walks every live object again and again while it tears the modules
    # down: after a 200,000-row run (~200,000 objects, 2,400 modules) 1.5-2.1 s at load 10, 0.15-0.23 s
    # with them frozen. Registered before the command runs, this runs after the exit handlers registered
    # during it (the ledger's checkpoint among them); objects are still freed, cycles left at exit are not walked.
    atexit.register(gc.freeze)
    try:
        code = cli.main(args=argv, prog_name="assay", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except AssayError as exc:
        # Messages may quote a --db / ASSAY_DB_URL or data.source URL: never with its password.
        message = redact_url(exc.message)
        click.echo(f"error: {message}" if exc.exit_code != 1 else message, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(3)
    except Exception as exc:
        if os.environ.get("ASSAY_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {redact_url(str(exc))} (set ASSAY_DEBUG=1 for the traceback)",
                   err=True)
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)  # ctx.exit(N) returns N without standalone mode
