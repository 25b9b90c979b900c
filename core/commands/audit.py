"""``assay audit …`` and ``assay keys …``: the ledger's command line.

Both groups read the global settings from ``ctx.obj`` (an ``assay.storage.settings.Settings``). Imports of
the ledger (sqlmodel) happen inside commands, so attaching these groups keeps ``assay --help`` fast.
Exit codes: 0 ok, 1 tampering found, 2 bad input; ``--json`` prints exactly one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from assay.audit.format import payload_summary
from assay.errors import BadInput, Finding
from assay.storage.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_object(Settings)
    if obj is None:
        obj = Settings.resolve()
    return obj


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True, default=str))


def _require_db(settings: Settings) -> None:
    if settings.is_sqlite:
        from assay.audit.verify import sqlite_path

        path = Path(sqlite_path(settings.db_url))
        if not path.is_file():
            raise BadInput(f"no ledger at {path} (nothing recorded yet; run `assay run` first, or pass --db/--home)")


def _open(settings: Settings) -> Any:
    from assay.audit.ledger import Ledger

    return Ledger.open(settings)


def _write_output(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {output}: {exc.strerror}") from None


# ------------------------------------------------------------------------------------------ audit


@click.group()
def audit() -> None:
    """Verify, list, checkpoint and export the audit ledger."""


@audit.command("verify")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Signed checkpoint the ledger must extend (checked on top of the full verification).")
@click.option(
    "--since-checkpoint", type=click.Path(dir_okay=False),
    help="Like --checkpoint, but take the signatures of the records it covers on its word "
    "(their bodies, chain and Merkle tree are still recomputed); the output says what was trusted.",
)
@click.option("--trust", type=click.Path(dir_okay=False), help="Trust file (default: the home's keys/trust.json).")
@click.option("--full", is_flag=True, help="Accepted for older scripts; verification is always full.")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY|FILE",
              help="A witness's cosignature key, or a file of them (repeatable): the checkpoint must be cosigned.")
@click.option("--quorum", type=click.IntRange(min=1), help="Witnesses of --witness-key that must have cosigned (default: all).")
@click.option("--bundle", type=click.Path(), metavar="DIR",
              help="Verify the audit bundle in DIR (from `audit export RUN_ID --bundle DIR`) instead of a ledger: "
              "no database or home is read; --trust replaces the bundle's keys.json as the trust root.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def verify_cmd(
    ctx: click.Context, witness_keys: tuple[str, ...], quorum: int | None, checkpoint: str | None, since_checkpoint: str | None, trust: str | None, full: bool, bundle: str | None, as_json: bool
) -> None:
    """Re-check every record (hash from its body, chain link, signature, key window) and that the ledger
    extends the home's newest checkpoint; exit 1 naming the first bad record. With --bundle DIR, check
    an audit bundle offline instead; exit 1 naming the file that fails."""
    from assay.audit.keys import KeyStore
    from assay.audit.verify import verify_ledger
    from assay.commands.witness import finish_witness_check, with_witness

    if bundle is not None:
        if checkpoint or since_checkpoint:
            raise BadInput("--bundle carries its own checkpoint: leave out --checkpoint/--since-checkpoint")
        _verify_bundle(bundle, trust, witness_keys, quorum, as_json)
        return
    settings = _settings(ctx)
    _require_db(settings)
    if checkpoint and since_checkpoint:
        raise BadInput("give --checkpoint or --since-checkpoint, not both")
    trust_path: Path | None = Path(trust) if trust else KeyStore(settings.home).trust_path
    if trust is None and trust_path is not None and not trust_path.exists():
        trust_path = None
    witness_check = None
    if witness_keys:
        from assay.audit.witness import verify_witnessed

        witnessed, witness_check = verify_witnessed(settings.home, settings.db_url, checkpoint or since_checkpoint,
                                                    witness_keys, quorum)
        if not since_checkpoint:
            checkpoint = witnessed
    elif quorum is not None:
        raise BadInput("--quorum counts witnesses: give --witness-key VKEY|FILE too")
    report = verify_ledger(
        settings.db_url, checkpoint=checkpoint, trust=trust_path, since_checkpoint=since_checkpoint, home=settings.home
    )
    if as_json:
        _echo_json(with_witness(report.to_json(), witness_check))
    elif report.ok:
        click.echo(report.summary())
        click.echo(f"size {report.size}, root {report.root}")
        click.echo(f"trust: {report.trust}")
        for path in report.checkpoints:
            click.echo(f"checkpoint: {path}")
        if report.trusted:
            click.echo(f"trusted without re-checking: {report.trusted}")
    else:
        for e in report.errors[1:10]:
            where = f"record {e['seq']}" if e["seq"] is not None else "ledger"
            click.echo(f"  also {where}: {e['reason']}")
    if witness_check is not None:
        finish_witness_check(witness_check, as_json, report.ok)
    if not report.ok:
        raise Finding(report.summary())


def _verify_bundle(bundle: str, trust: str | None, witness_keys: tuple[str, ...], quorum: int | None,
                   as_json: bool) -> None:
    from assay.audit.bundle import BundleError, verify_bundle

    try:
        report = verify_bundle(bundle, trust, witness_keys, quorum)
    except BundleError as exc:
        raise BadInput(exc.message) from None
    if as_json:
        _echo_json(report.to_json())
    else:
        for line in report.lines():  # what failed first, then the other problems
            click.echo(line)
    if not report.ok:
        raise click.exceptions.Exit(1)


@audit.command("log")
@click.option("--run", "run_id", help="Only this run's records.")
@click.option("--kind", help="Only records of this kind.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N records.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def log_cmd(ctx: click.Context, run_id: str | None, kind: str | None, limit: int | None, as_json: bool) -> None:
    """List ledger records (decoded from the signed bytes), oldest first."""
    settings = _settings(ctx)
    _require_db(settings)
    ledger = _open(settings)
    records = ledger.records(run_id=run_id, kind=kind)
    if run_id is not None and not records:
        raise BadInput(f"run {run_id!r} has no ledger records (list runs with `assay audit runs`)")
    if limit:
        records = records[-limit:]
    if as_json:
        out: dict[str, Any] = {"records": [r.to_json() for r in records], "count": len(records)}
        if run_id is not None:
            out["run"] = next((r for r in ledger.runs() if r["run_id"] == run_id), None)
        _echo_json(out)
        return
    for r in records:
        click.echo(
            f"{r.seq:>7}  {r.time}  {r.kind:<12} {r.run_id or '-':<28} key {r.key_id}  {payload_summary(r.payload)}"
        )
    if not records:
        click.echo("no records")


@audit.command("runs")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def runs_cmd(ctx: click.Context, as_json: bool) -> None:
    """Summarize runs in the ledger: records, first/last kind, finished, failed or incomplete."""
    settings = _settings(ctx)
    _require_db(settings)
    runs = _open(settings).runs()
    if as_json:
        _echo_json({"runs": runs})
        return
    for r in runs:
        click.echo(
            f"{r['run_id']:<28} {r['status']:<10} records {r['first_seq']}..{r['last_seq']} ({r['records']}), "
            f"last {r['last_kind']} at {r['last_time']}"
        )


@audit.command("checkpoint")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@click.option("--witness", "witness_urls", multiple=True, metavar="URL",
              help="Have this witness cosign the checkpoint (repeatable); the cosigned note is stored as "
              "checkpoints/<ledger id>.witnessed.note and written instead.")
@click.pass_context
def checkpoint_cmd(ctx: click.Context, witness_urls: tuple[str, ...], output: str | None) -> None:
    """Write a signed C2SP checkpoint (tree size and Merkle root) that auditors keep.

    The ledger is verified in full first; over a ledger that does not verify nothing is signed (exit 1).
    The checkpoint also becomes the home's newest, which every later `assay audit verify` checks."""
    settings = _settings(ctx)
    _require_db(settings)
    note = _open(settings).checkpoint()
    if witness_urls:
        from assay.audit.witness import witness_ledger_checkpoint

        note = witness_ledger_checkpoint(settings.home, settings.db_url, note, witness_urls)
    _write_output(note, output)
    if output:
        size = note.split("\n")[1]
        click.echo(f"wrote checkpoint of {size} record(s) to {output}", err=True)


@audit.command("export")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["intoto", "model-signing", "vsa"]), default="intoto",
              show_default=True,
              help="intoto: the run as a signed in-toto statement; model-signing: an OpenSSF model-signing bundle "
                   "of the model (needs --output DIR or --signature F); vsa: a SLSA verification summary of the "
                   "governing verdict, with each rule as an in-toto Test Result beside it.")
@click.option("--output", "-o", type=click.Path(), help="File to write (default: stdout); model-signing: a folder "
              "that receives the model file and its model.sig.")
@click.option("--signature", type=click.Path(dir_okay=False),
              help="model-signing: write the bundle here (to keep beside the model file; with --output, instead "
                   "of DIR/model.sig).")
@click.option("--bundle", type=click.Path(file_okay=False), metavar="DIR",
              help="Write an offline audit bundle into DIR (new or empty): the run's signed records with inclusion "
                   "proofs, the checkpoint, keys, attestation, policy, report and a README; `audit verify --bundle DIR` "
                   "checks it without the database.")
@click.option("--policy-file", type=click.Path(dir_okay=False, exists=True),
              help="--bundle: also ship this policy source file (it must resolve to the run's policy digest; "
                   "policy.json always holds the resolved policy).")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY|FILE",
              help="--bundle: ship these witness keys; each must have cosigned the bundle's checkpoint.")
@click.pass_context
def export_cmd(ctx: click.Context, run_id: str, fmt: str, output: str | None, signature: str | None,
               bundle: str | None, policy_file: str | None, witness_keys: tuple[str, ...]) -> None:
    """Export RUN_ID in a format other tools verify: in-toto (DSSE), OpenSSF model signing, a SLSA VSA,
    or (--bundle DIR) an offline audit bundle."""
    settings = _settings(ctx)
    _require_db(settings)
    if bundle is not None:
        if output or signature or ctx.get_parameter_source("fmt") != click.core.ParameterSource.DEFAULT:
            raise BadInput("--bundle DIR writes a folder of its own: leave out --format, --output and --signature")
        _export_bundle(ctx, settings, run_id, Path(bundle), Path(policy_file) if policy_file else None, witness_keys)
        return
    if policy_file or witness_keys:
        raise BadInput("--policy-file and --witness-key go with --bundle DIR")
    if signature and fmt != "model-signing":
        raise BadInput("--signature is for --format model-signing (where to write the model's bundle)")
    if fmt == "model-signing":
        from assay.commands.modelsign import export_model_signing

        done = export_model_signing(settings, run_id, Path(output) if output else None,
                                    Path(signature) if signature else None)
        click.echo(f"signed the model of run {run_id} (verdict seq {done.verdict_seq}) with attestation key "
                   f"{done.key_id}: bundle {done.signature} (ledger seq {done.attestation_seq})")
        click.echo(f"verify with: {done.verify_command}")
        return
    if fmt == "vsa":
        from assay.commands.vsa import build_vsa, write_vsa

        docs = build_vsa(settings, run_id, output=Path(output) if output else None)
        if output is None:
            click.echo(docs.bundle_text(), nl=False)
            return
        paths = write_vsa(docs, Path(output))
        click.echo(f"wrote VSA ({docs.result}, verdict seq {docs.verdict_seq}) to {paths[0]}; run attestation "
                   f"{paths[1]}, {len(docs.test_results)} test result(s) {paths[2]}", err=True)
        return
    if output and Path(output).is_dir():
        raise BadInput(f"--output {output}: is a folder; give the file to write")
    from assay.audit.export import intoto_envelope

    envelope = intoto_envelope(_open(settings), run_id)
    _write_output(json.dumps(envelope, indent=2) + "\n", output)
    if output:
        click.echo(f"wrote {fmt} attestation for run {run_id} to {output}", err=True)


def _export_bundle(ctx: click.Context, settings: Settings, run_id: str, out: Path, policy_file: Path | None,
                   witness_keys: tuple[str, ...]) -> None:
    """Gather what lives outside the ledger (the report, the policy source) and write the bundle.

    This glue is the one place the audit commands reach into the rest of assay (the report command and
    the policy loader, imported here only); ``assay.audit.bundle`` itself takes both as bytes.
    """
    import contextlib
    import io
    import tempfile

    from assay.audit.bundle import BundleError, BundleRefused, write_bundle

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"--bundle {out}: exists and is not an empty folder (pick a new path)")
    ledger = _open(settings)
    if not ledger.records(run_id=run_id):
        raise BadInput(f"run {run_id!r} has no ledger records (list runs with `assay audit runs`)")
    policy_source = None
    if policy_file is not None:
        policy_source = _policy_source(ledger, run_id, policy_file)
    from assay.commands.report import report as report_cmd

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        with contextlib.redirect_stdout(io.StringIO()):
            ctx.invoke(report_cmd, run_id=run_id, output=str(page))
        html = page.read_text(encoding="utf-8")
    try:
        done = write_bundle(ledger, run_id, out, report_html=html, policy_source=policy_source,
                            witness_keys=witness_keys)
    except BundleRefused as exc:
        raise Finding(exc.message) from None
    except BundleError as exc:
        raise BadInput(exc.message) from None
    witnessed = f", {done.cosignatures} cosignature(s)" if done.cosignatures else ""
    click.echo(f"wrote audit bundle of run {run_id} to {done.path}: {len(done.files)} files, {done.records} record(s) "
               f"({done.run_records} of the run), checkpoint of size {done.checkpoint_size}{witnessed}, "
               f"signed by key {done.key_id}")
    click.echo(f"verify with: assay audit verify --bundle {done.path}")


def _policy_source(ledger: Any, run_id: str, path: Path) -> bytes:
    from assay.kernel.manager import make_plugin_manager
    from assay.kernel.runner import collect_policies
    from assay.policies.language import load_policy

    started = next((r for r in ledger.records(run_id=run_id, kind="run_started")), None)
    recorded = ((started.payload.get("policy") or {}) if started is not None else {}).get("hash")
    try:
        loaded = load_policy(str(path.resolve()), path.resolve().parent, collect_policies(make_plugin_manager()))
    except BadInput as exc:
        raise BadInput(f"--policy-file {path}: not a policy the run could have been gated under: {exc.message}") from None
    if loaded.hash != recorded:
        raise BadInput(f"--policy-file {path}: resolves to policy digest {loaded.hash}, but run {run_id} was gated "
                       f"under {recorded} (pass the file as it was when the run was gated)")
    return path.read_bytes()


# ------------------------------------------------------------------------------------------- keys


@click.group()
def keys() -> None:
    """Manage signing keys and the trust list (changes are ledger records)."""


@keys.command("init")
@click.option("--identity", default="", help="Who holds the key (default: USER@HOST).")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "ecdsa-p256"]), default="ed25519",
              show_default=True,
              help="ed25519: the key that signs ledger records; ecdsa-p256: an attestation key that signs "
                   "model-signing bundles (never ledger records), trusted by an admin's key_added.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_init(ctx: click.Context, identity: str, key_type: str, as_json: bool) -> None:
    """Create this home's signing key if it has none, and record it in the ledger.

    The first key of an empty ledger is its genesis key (admin). Any other new key is created but
    signs nothing until an admin adds it: the command prints what to run (exit 2). With --type
    ecdsa-p256 the same holds for the home's attestation key (role attestor).
    """
    settings = _settings(ctx)
    if key_type == "ecdsa-p256":
        from assay.audit.keys import KeyStore
        from assay.commands.attest import init_attestation_key

        akey, aseq, created = init_attestation_key(settings, identity)
        public = KeyStore(settings.home).public_path(akey.key_id)
        if as_json:
            _echo_json({"key_id": akey.key_id, "algorithm": "ecdsa-p256", "public_key": akey.public_raw.hex(),
                        "public_key_file": str(public), "added_seq": aseq, "source": akey.source, "created": created,
                        "roles": ["attestor"]})
        else:
            click.echo(f"attestation key {akey.key_id} (ecdsa-p256, ledger seq {aseq}), private key {akey.source}, "
                       f"public key {public}")
        return
    key, seq = _open(settings).register_key(identity=identity)
    if as_json:
        _echo_json({"key_id": key.key_id, "public_key": key.public_raw.hex(), "added_seq": seq, "source": key.source})
    else:
        click.echo(f"signing key {key.key_id} (ledger seq {seq}), private key {key.source}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """List trusted keys with identity, roles, validity window in ledger positions, and which is active."""
    from assay.audit.keys import KeyStore

    settings = _settings(ctx)
    entries = KeyStore(settings.home).describe()
    if as_json:
        _echo_json({"keys": entries})
        return
    if not entries:
        click.echo("no keys (create one with: assay keys init)")
    for e in entries:
        window = f"seq {e['valid_from'] or 'key_added'}..{e['valid_until'] or ''}"
        flags = [f for f, on in (("active", e["active"]), ("private key here", e["private_key_here"])) if on]
        if e.get("algorithm") == "ecdsa-p256":
            flags.insert(0, "ecdsa-p256 attestation key" + (", this home's" if e.get("attestor") else ""))
        if e["revoked_at"] is not None:
            flags.append(f"revoked at seq {e['revoked_at']}")
        if not e["trusted"]:
            flags.append("not trusted yet: an admin adds it with `assay keys add`")
        roles = ",".join(e["roles"]) or "-"
        # Key ids are printed whole: a prefix is not an identifier anyone can check.
        click.echo(f"{e['key_id']}  {e['identity'] or '-':<20} {roles:<15} {window:<20} {', '.join(flags)}")


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Replace the active key: the old key signs a key_rotated record introducing the new one."""
    settings = _settings(ctx)
    record, new = _open(settings).rotate_key()
    if as_json:
        _echo_json({"old_key_id": record.payload["old_key_id"], "key_id": new.key_id, "seq": record.seq})
    else:
        click.echo(f"rotated {record.payload['old_key_id']} → {new.key_id} at ledger seq {record.seq} "
                   f"(identity {record.payload.get('identity')}, roles {','.join(record.payload.get('roles') or [])})")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", default="", help="Why (recorded in the ledger).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str, reason: str, as_json: bool) -> None:
    """Revoke KEY_ID: nothing it signs after this point verifies (needs an admin key)."""
    settings = _settings(ctx)
    record = _open(settings).revoke_key(key_id, reason)
    if as_json:
        _echo_json({"key_id": key_id, "revoked_at": record.seq})
    else:
        click.echo(f"revoked {key_id} at ledger seq {record.seq}")


@keys.command("add")
@click.argument("public_key", type=click.Path(dir_okay=False))
@click.option("--identity", default="", help="Who holds the key (a person or a CI system); approvals count identities.")
@click.option("--role", "roles", multiple=True, type=click.Choice(["signer", "approver", "admin", "attestor"]),
              help="What the key may do (repeatable; default signer): sign records, approve, or manage keys; "
                   "attestor (the default and only role of an ECDSA P-256 key) signs attestations.")
@click.option("--name", default="", hidden=True, help="Deprecated: use --identity.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_add(ctx: click.Context, public_key: str, identity: str, roles: tuple[str, ...], name: str,
             as_json: bool) -> None:
    """Trust PUBLIC_KEY (hex or PEM) for IDENTITY: a key_added record signed by this home's admin key.

    This is the only way a key other than the genesis key becomes trusted; a non-admin key is
    refused (exit 1).
    """
    from assay.audit.keys import read_any_public_key

    if identity and name and identity != name:
        raise BadInput("--name is the old spelling of --identity; pass only --identity")
    if not (identity or name):
        raise BadInput("keys add needs --identity NAME (who holds the key), e.g. --identity ci@github")
    settings = _settings(ctx)
    algorithm, raw = read_any_public_key(Path(public_key))
    record = _open(settings).add_key(raw, identity=identity or name,
                                     roles=roles or (("attestor",) if algorithm == "ecdsa-p256" else ("signer",)),
                                     algorithm=algorithm)
    p = record.payload
    if as_json:
        _echo_json({"key_id": p["key_id"], "valid_from": record.seq + 1, "seq": record.seq,
                    "identity": p.get("identity"), "roles": p.get("roles"), "added_by": p.get("added_by")})
    else:
        click.echo(f"added key {p['key_id']} for {p.get('identity')} (roles {','.join(p.get('roles') or [])}; "
                   f"valid from seq {record.seq + 1})")


@keys.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@click.pass_context
def keys_export(ctx: click.Context, output: str | None) -> None:
    """Write the trust file an auditor keeps (public keys, identities, roles, windows): `verify --trust FILE`."""
    from assay.audit.keys import KeyStore

    _write_output(KeyStore(_settings(ctx).home).export_trust(), output)


@keys.command("trust")
@click.argument("trust_file", type=click.Path(dir_okay=False))
@click.pass_context
def keys_trust(ctx: click.Context, trust_file: str) -> None:
    """Merge the keys of TRUST_FILE (e.g. a teammate's `keys export`) into this home's trust file."""
    from assay.audit.keys import KeyStore
    from assay.audit.trust import TrustedKey, TrustError, load_trust

    try:
        incoming = load_trust(Path(trust_file))
    except TrustError as exc:
        raise BadInput(str(exc)) from None

    def merge(current: list[TrustedKey]) -> list[TrustedKey]:
        known = {k.key_id for k in current}
        return current + [k for k in incoming if k.key_id not in known]

    keys_now = KeyStore(_settings(ctx).home).update_trust(merge)
    click.echo(f"trust file now lists {len(keys_now)} key(s)")


@keys.command("vkey")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_vkey(ctx: click.Context, as_json: bool) -> None:
    """Print the ledger's note verifier key for the active key (give it to a witness: `witness add-log`)."""
    from assay.audit.witness import ledger_vkey

    settings = _settings(ctx)
    _require_db(settings)
    vkey, origin = ledger_vkey(settings.home, settings.db_url)
    if as_json:
        _echo_json({"vkey": vkey, "origin": origin})
    else:
        click.echo(vkey)
