"""The gate and deploy commands: ``gate``, ``policy check|show``, ``waive``, ``verify``,
``approve`` and ``promote`` (attached to ``assay`` by the core CLI, imported on first use).

Each command takes the resolved settings from ``ctx.obj`` (``home``, ``db_url``) and maps
outcomes to the exit codes of DESIGN.md: 0 success/pass, 1 a finding (blocked verdict,
failed verification, refused promotion), 2 bad input, 3 internal or plugin error.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click

from assay.errors import AssayError, BadInput, Finding, InternalError
from assay.policies.render import FORMATS, ONLY

# --------------------------------------------------------------------------- helpers


def _plugin_manager(state: Any) -> Any:
    if hasattr(state, "plugin_manager"):
        return state.plugin_manager()
    from assay.kernel.manager import make_plugin_manager

    return make_plugin_manager()


def collect_packs(pm: Any) -> dict[str, str]:
    """Pack name → TOML text from every plugin's ``register_policies`` (collected and validated by the runner)."""
    from assay.kernel.runner import collect_policies

    return collect_policies(pm)


def _open_ledger(state: Any) -> Any:
    from assay.audit.ledger import Ledger

    return Ledger.open(state)


def _resolve_ref(ref: str | None) -> str | None:
    """A ``--policy`` given on the command line: an existing file is taken relative to the CWD."""
    if ref and Path(ref).expanduser().is_file():
        return str(Path(ref).expanduser().resolve())
    return ref


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True, default=str))


def _stdout_console() -> Any:
    from assay.commands.terminal import make_console

    return make_console()


def write_report(output: str, text: str) -> None:
    """Write ``--output``; a missing folder or a path that cannot be written is bad input (exit 2)."""
    path = Path(output)
    if not path.parent.is_dir():
        raise BadInput(f"--output {output}: folder {path.parent} does not exist (create it, or pick another path)")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot write the report: {exc.strerror or exc}") from None


def _err(message: str) -> None:
    click.echo(message, err=True)


# --------------------------------------------------------------------------- gate


def _signed_waivers(signed: Any, model: str | None, artifact: str | None) -> list[Any]:
    """The model's waivers in the verified ledger (others are reported on stderr)."""
    from assay.commands.waivers import trusted_waivers

    if not model:
        return []
    waivers, ignored = trusted_waivers(signed, model, artifact)
    for why in ignored:
        _err(f"warning: {why}")
    return waivers


def _run_row(state: Any, run_id: str) -> Any:
    """The runs-table row of ``run_id`` (an index entry to cross-check), or None when there is none."""
    from assay.storage.store import RunStore

    try:
        return RunStore(state).get_run(run_id)
    except BadInput:
        return None


@click.command()
@click.argument("run_id")
@click.option("--policy", "policy_ref", metavar="FILE|NAME",
              help="Policy file or pack name (default: the run spec's [gate] policy).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to this file instead of stdout.")
@click.option("--only", type=click.Choice(ONLY), default=None,
              help="Rules to list: failing (block, error), attention (and warn, waived) or all "
                   "[default: attention for text, all for json/junit/markdown/sarif].")
@click.pass_obj
def gate(state: Any, run_id: str, policy_ref: str | None, fmt: str, output: str | None, only: str | None) -> None:
    """Evaluate a policy on RUN_ID's recorded evidence and record a signed verdict.

    Waivers recorded with `assay waive` for the run's model apply until they expire.
    Exit 0 when the verdict passes, 1 when it blocks, 3 when gating itself failed.
    """
    from assay.kernel.runner import gate_stored_run
    from assay.policies.render import GateReport, render, text_renderables
    from assay.storage.signed import SignedLedger

    signed = SignedLedger.open(state)
    run_id = signed.resolve_run(run_id)
    evidence, _ = signed.evidence(run_id)
    signed.check_run_row(run_id, _run_row(state, run_id), evidence)
    model_ev = evidence.get("model") or {}
    waivers = _signed_waivers(signed, model_ev.get("ref"), model_ev.get("artifact"))
    pm = _plugin_manager(state)
    try:
        verdict, policy = gate_stored_run(pm, state, run_id, evidence, signed.started(run_id), _resolve_ref(policy_ref),
                                          waivers=[w.to_json() for w in waivers])
    except AssayError:
        raise
    except Exception as exc:
        raise InternalError(f"gating run {run_id} failed: {type(exc).__name__}: {exc}; "
                            "no verdict was recorded (fail closed)") from exc
    recorded = _open_ledger(state).records(run_id=run_id, kind="verdict")
    report = GateReport(run_id=run_id, verdict=verdict, model=model_ev.get("ref"), artifact=model_ev.get("artifact"),
                        policy=policy, ledger_seq=recorded[-1].seq if recorded else None,
                        only=only or ("attention" if fmt == "text" else "all"))
    if fmt == "vsa":  # a signed SLSA summary of this verdict (assay.commands.vsa), not a rendering of it
        from assay.commands.vsa import build_vsa, write_vsa

        report.extra["vsa"] = build_vsa(state, run_id, policy=policy, output=Path(output) if output else None)
        if output:
            paths = write_vsa(report.extra["vsa"], Path(output))
            _err(f"{verdict.decision.upper()}: run {run_id}, policy {verdict.policy}; VSA written to {paths[0]}, "
                 f"run attestation to {paths[1]}, test results to {paths[2]}")
            sys.exit(0 if verdict.decision == "pass" else 1)
    if output:
        write_report(output, render(report, fmt))
        _err(f"{verdict.decision.upper()}: run {run_id}, policy {verdict.policy}; {fmt} report written to {output}")
    elif fmt == "text" and sys.stdout.isatty():
        console = _stdout_console()
        for item in text_renderables(report):
            console.print(item)
    else:
        click.echo(render(report, fmt), nl=False)
    sys.exit(0 if verdict.decision == "pass" else 1)


# --------------------------------------------------------------------------- policy


@click.group()
def policy() -> None:
    """Check and show policy files and packs."""


def _load_for_cli(state: Any, ref: str) -> Any:
    from assay.policies.language import load_policy

    path = Path(ref).expanduser()
    packs = collect_packs(_plugin_manager(state))
    if path.is_file():
        return load_policy(str(path.resolve()), Path.cwd(), packs)
    return load_policy(ref, Path.cwd(), packs)


@policy.command("check")
@click.argument("file", metavar="FILE|NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the parsed policy as one JSON object.")
@click.pass_obj
def policy_check(state: Any, file: str, as_json: bool) -> None:
    """Validate a policy file (or pack); exit 2 with FILE:LINE:COL messages if it is invalid."""
    loaded = _load_for_cli(state, file)
    if as_json:
        _echo_json({"ok": True, "policy": loaded.to_json()})
        return
    stages = {s: len(loaded.rules_for(s)) for s in ("train", "monitor")}
    click.echo(f"ok: {file}: policy {loaded.name!r}, {len(loaded.rules)} rules "
               f"({stages['train']} train, {stages['monitor']} monitor), approvals {loaded.approvals}, "
               f"hash {loaded.hash}")


@policy.command("show")
@click.argument("ref", metavar="FILE|NAME")
@click.pass_obj
def policy_show(state: Any, ref: str) -> None:
    """Show the rules of a policy file or pack."""
    from rich.table import Table
    from rich.text import Text

    loaded = _load_for_cli(state, ref)
    console = _stdout_console()
    console.print(Text(f"{loaded.name}  {loaded.hash}  approvals {loaded.approvals}", style="bold"))
    if loaded.description:
        console.print(Text(loaded.description))
    table = Table(show_edge=False)
    for col in ("id", "stage", "severity", "path", "op", "threshold", "when"):
        table.add_column(col, overflow="fold")
    for r in loaded.rules:
        cells = (r.id, r.stage, r.severity, str(r.path) + (f" ({r.bound} bound)" if r.bound else ""), r.op,
                 r.threshold_text, "; ".join(map(str, r.when)))
        table.add_row(*(Text(c) for c in cells))
    console.print(table)


# --------------------------------------------------------------------------- waive


def _signed(state: Any, trust: str | Path | None = None, checkpoint: str | None = None) -> Any:
    """The verified ledger (Finding when it does not verify)."""
    from assay.storage.signed import SignedLedger

    return SignedLedger.open(state, trust=Path(trust) if isinstance(trust, str) else trust,
                             checkpoint=Path(checkpoint) if checkpoint else None)


def _resolve_version(state: Any, signed: Any, ref: str) -> Any:
    """A model version from the ledger's records, cross-checked with the registry table."""
    from assay.storage.store import RunStore

    return RunStore(state).resolve_model(ref, signed=signed)


def _latest_for_model(records: list[Any], model: str) -> Any:
    found = [r for r in records if (r.payload or {}).get("model") == model]
    return found[-1] if found else None


@click.command()
@click.argument("rule_id")
@click.option("--model", "model_ref", required=True, metavar="NAME@VERSION", help="The model version the waiver is for.")
@click.option("--reason", required=True, help="Why the failure is accepted.")
@click.option("--approver", required=True, help="Who accepts the risk.")
@click.option("--expires", required=True, metavar="YYYY-MM-DD", help="Last day (UTC) the waiver applies.")
@click.option("--json", "as_json", is_flag=True, help="Print the waiver record as one JSON object.")
@click.pass_obj
def waive(state: Any, rule_id: str, model_ref: str, reason: str, approver: str, expires: str, as_json: bool) -> None:
    """Waive RULE_ID for one model version until a date (a signed `waiver` ledger record).

    Re-run `assay gate RUN_ID` afterwards: the waived rule then shows as `waived`. Monitor-stage
    rules (e.g. `drift`) can be waived the same way; later `assay monitor` runs apply the waiver.
    """
    import difflib

    from assay.commands.waivers import WAIVER_KIND, make_waiver, parse_expiry
    from assay.policies.render import base_rule_id

    signed = _signed(state)
    version = _resolve_version(state, signed, model_ref)
    waiver = make_waiver(rule_id, version.ref, reason, approver, parse_expiry(expires))
    ledger = _open_ledger(state)
    verdict = _latest_for_model([r for r in signed.records if r.kind == "verdict"], version.ref)
    monitored = _latest_for_model([r for r in signed.records if r.kind == "monitor"], version.ref)
    if verdict is not None:
        rules = list((verdict.payload or {}).get("rules", []))
        if monitored is not None:  # monitor-stage rules can be waived too
            rules += ((monitored.payload or {}).get("verdict") or {}).get("rules", [])
        ids = [str(r.get("id", "")) for r in rules]
        known = set(ids) | {base_rule_id(i) for i in ids}
        if waiver.rule not in known:
            near = difflib.get_close_matches(waiver.rule, sorted(known), n=1)
            where = " or its latest monitor result" if monitored is not None else ""
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise BadInput(f"RULE_ID {waiver.rule!r}: no such rule in the latest verdict for {version.ref} "
                           f"(seq {verdict.seq}){where}{hint}")
    payload = {**waiver.to_json(), "artifact": version.artifact}
    record = ledger.append(version.run_id, WAIVER_KIND, payload)
    if as_json:
        _echo_json({"seq": record.seq, "hash": record.hash, "key_id": record.key_id, "waiver": payload})
        return
    click.echo(f"waived {waiver.rule} for {version.ref} until {waiver.expires.isoformat()} (ledger seq {record.seq}); "
               f"re-run `assay gate {version.run_id}` to apply it")


# --------------------------------------------------------------------------- verify


@click.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--require-verdict", "require", type=click.Choice(["pass", "any"]), default="pass", show_default=True,
              help="pass: the governing verdict must pass; any: a verdict must exist.")
@click.option("--policy", "policy_ref", metavar="FILE|NAME",
              help="Pin this policy (default: the policy the run was trained under).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False),
              help="Public key (hex or PEM) to trust as the only root; the ledger's rotations and revocations apply.")
@click.option("--trust", "trust_path", type=click.Path(dir_okay=False),
              help="Trust file replacing the home's (e.g. from `assay keys export`).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint the ledger must extend.")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY|FILE",
              help="A witness's cosignature key, or a file of them (repeatable): a checkpoint covering the verdict "
                   "must be cosigned.")
@click.option("--quorum", type=click.IntRange(min=1),
              help="Witnesses of --witness-key that must have cosigned (default: all).")
@click.option("--signature", "signature", type=click.Path(dir_okay=False),
              help="An OpenSSF model-signing bundle of ARTIFACT (`assay audit export --format model-signing`): it "
                   "must name the governing verdict and be signed by a trusted, unrevoked attestation key.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def verify(state: Any, artifact: str, require: str, policy_ref: str | None, key_path: str | None,
           trust_path: str | None, checkpoint: str | None, witness_keys: tuple[str, ...], quorum: int | None,
           signature: str | None, as_json: bool) -> None:
    """Check ARTIFACT may be deployed: its bytes have a passing verdict under the pinned policy.

    Verifies the whole ledger to its head (and against the home's newest checkpoint and
    --checkpoint), then takes the newest verdict for the file's hash under the pinned policy:
    --policy, else the one the run was trained under. Exit 0 only if it passes, else 1.
    """
    from assay.commands.deploy import sha256_file, verify_artifact

    digest = sha256_file(Path(artifact))
    if key_path and trust_path:
        raise BadInput("--key and --trust both name a trust root; give one")
    trust: Any = Path(trust_path) if trust_path else None
    if key_path:
        from assay.audit.keyreplay import trust_from_public_key
        from assay.audit.keys import read_public_key

        trust = trust_from_public_key(read_public_key(Path(key_path)))
    witnessed = None
    if witness_keys:  # the ledger must extend a checkpoint enough independent witnesses cosigned
        from assay.audit.witness import verify_witnessed

        checkpoint, witnessed = verify_witnessed(state.home, state.db_url, checkpoint, witness_keys, quorum)
    elif quorum is not None:
        raise BadInput("--quorum counts witnesses: give --witness-key VKEY|FILE too")
    signed = _signed(state, trust, checkpoint)
    pinned = _load_policy_ref(state, policy_ref).hash if policy_ref else None
    result = verify_artifact(signed, digest, require=require, policy_hash=pinned)
    if witnessed is not None and result.ok:
        problems = list(witnessed.problems)
        if witnessed.size is not None and result.verdict_seq is not None and witnessed.size < result.verdict_seq:
            problems.append(f"the witnessed checkpoint covers records 1..{witnessed.size}, not the verdict at seq "
                            f"{result.verdict_seq}: checkpoint again with `assay audit checkpoint --witness URL`")
        if problems:
            result.ok = False
            result.reason = "; ".join(problems)
        else:
            result.reason += (f"; checkpoint of size {witnessed.size} cosigned by {len(witnessed.cosigned_by)} of "
                              f"{witnessed.witnesses} witness(es)")
    bundle = None
    if signature and result.ok:
        from assay.commands.modelsign import verify_bundle

        try:
            bundle = verify_bundle(signed, Path(signature), digest, result.verdict_seq)
            result.reason += (f"; model-signing bundle {signature} signed by attestation key {bundle['key_id']} "
                              f"({bundle['identity']}), logged at seq {bundle['attestation_seq']}")
        except Finding as exc:
            result.ok = False
            result.reason = f"--signature {signature}: {exc.message}"
    if as_json:
        _echo_json({**result.to_json(), **({"signature": bundle} if signature else {})})
    elif result.ok:
        click.echo(f"OK: {artifact} ({digest}): {result.reason}")
    if not result.ok:
        raise Finding(f"REJECTED: {artifact} ({digest}): {result.reason}")


def _load_policy_ref(state: Any, ref: str) -> Any:
    from assay.policies.language import load_policy

    return load_policy(_resolve_ref(ref) or ref, Path.cwd(), collect_packs(_plugin_manager(state)))


# --------------------------------------------------------------------------- approve


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


@click.command()
@click.argument("model_ref", metavar="NAME@VERSION")
@click.option("--approver", default=None, help="Your name (default: the OS user).")
@click.option("--comment", default="", help="A note recorded with the approval.")
@click.option("--json", "as_json", is_flag=True, help="Print the approval record as one JSON object.")
@click.pass_obj
def approve(state: Any, model_ref: str, approver: str | None, comment: str, as_json: bool) -> None:
    """Record a signed approval of a model version for promotion to production.

    The approval is signed with this home's active key, or the key in ASSAY_SIGNING_KEY. Only
    approvals by distinct identities with the approver (or admin) role count.
    """
    from assay.commands.deploy import APPROVAL_KIND, approval_payload, count_approvals, verify_artifact

    signed = _signed(state)
    version = _resolve_version(state, signed, model_ref)
    ledger = _open_ledger(state)
    signer = ledger.signer()
    for r in signed.records:
        p = r.payload or {}
        if r.kind == APPROVAL_KIND and r.key_id == signer.key_id and p.get("model") == version.ref \
                and p.get("artifact") == version.artifact:
            message = f"{version.ref} is already approved by key {signer.key_id} (ledger seq {r.seq})"
            if as_json:
                _echo_json({"seq": r.seq, "hash": r.hash, "key_id": r.key_id, "approval": p, "existing": True})
            else:
                click.echo(message)
            return
    governing = verify_artifact(signed, version.artifact, require="any")
    verdict = next((r for r in signed.records if r.seq == governing.verdict_seq), None) if governing.ok else None
    payload = approval_payload(version.ref, version.artifact, version.run_id, approver or _current_user(), comment,
                               verdict.seq if verdict else None, verdict.hash if verdict else None)
    record = ledger.append(version.run_id, APPROVAL_KIND, payload)
    approvals, _ = count_approvals(_signed(state), version.ref, version.artifact)
    if as_json:
        _echo_json({"seq": record.seq, "hash": record.hash, "key_id": record.key_id, "approval": payload,
                    "approvals": len(approvals)})
        return
    click.echo(f"approved {version.ref} with key {record.key_id} (ledger seq {record.seq}); "
               f"{len(approvals)} approval(s) by distinct approvers")
    if verdict is None:
        _err(f"note: {version.ref} has no verdict under its policy yet; promotion to production needs a passing one")


# --------------------------------------------------------------------------- promote


def _pinned_policy(state: Any, signed: Any, run_id: str, explicit: str | None) -> dict[str, Any]:
    """The policy a promotion is held to: the one the run was trained under (from its signed records).

    ``--policy`` may supply that policy's document when the ledger lacks it (runs of older
    versions); it must be the same policy, by digest.
    """
    from assay.commands.deploy import training_policy

    pinned = training_policy(signed, run_id)
    if explicit:
        loaded = _load_policy_ref(state, explicit)
        if loaded.hash != pinned["hash"]:
            raise BadInput(f"--policy {explicit}: its digest {loaded.hash} is not that of the policy run {run_id} was "
                           f"trained under ({pinned['name']}, {pinned['hash']}); promotion is held to that policy")
        pinned.update(name=loaded.name, approvals=loaded.approvals)
    return pinned


@click.command()
@click.argument("model_ref", metavar="NAME@VERSION")
@click.option("--to", "stage", required=True, type=click.Choice(["none", "staging", "production", "archived"]),
              help="The stage to move the version to.")
@click.option("--policy", "policy_ref", metavar="FILE|NAME",
              help="The policy the run was trained under, when the ledger lacks its document.")
@click.option("--trust", "trust_path", type=click.Path(dir_okay=False),
              help="Trust file of keys whose verdicts and approvals count (default: the home's).")
@click.option("--json", "as_json", is_flag=True, help="Print the promotion record as one JSON object.")
@click.pass_obj
def promote(state: Any, model_ref: str, stage: str, policy_ref: str | None, trust_path: str | None,
            as_json: bool) -> None:
    """Move a model version to a stage; production needs a passing verdict and the policy's approvals.

    Each promotion is a signed `promotion` ledger record; the registry's stage follows it.
    """
    from assay.commands.deploy import PROMOTION_KIND, check_promotion
    from assay.storage.store import RunStore

    signed = _signed(state, trust_path)
    version = _resolve_version(state, signed, model_ref)
    policy = _pinned_policy(state, signed, version.run_id, policy_ref) if stage == "production" else {}
    check = check_promotion(signed, version, stage, policy)
    if not check.allowed:
        if as_json:
            _echo_json({"allowed": False, "reason": check.reason, "promotion": check.payload})
        raise Finding(check.reason)
    record = _open_ledger(state).append(version.run_id, PROMOTION_KIND, check.payload)
    RunStore(state).set_stage(version.name, version.version, stage)
    if as_json:
        _echo_json({"allowed": True, "seq": record.seq, "hash": record.hash, "promotion": check.payload})
        return
    click.echo(f"{check.reason} (ledger seq {record.seq})")
