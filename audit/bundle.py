"""The offline audit bundle: one run's signed records and everything needed to check them without the database.

``assay audit export RUN_ID --bundle DIR`` writes (``write_bundle``)::

    README.md                how to verify, with assay and without it
    manifest.json            in-toto Statement v1: every other file as a subject with its SHA-256
    manifest.sig             DSSE envelope whose payload is manifest.json's exact bytes (the home's key)
    records.jsonl            one ledger record per line: its canonical body, byte for byte as hashed and signed
    proofs.jsonl             per record (same order): seq, hash, Ed25519 signature, RFC 9162 inclusion proof
    checkpoint.note          the signed C2SP checkpoint the proofs lead to (with witness cosignatures, if any)
    keys.json                trust file (assay-trust/v1): public keys, identities, roles, validity windows
    attestation.intoto.json  the run's DSSE in-toto attestation (``assay audit export --format intoto``), if it has a model
    policy.json              the resolved policy document the run was gated under; its SHA-256 is the policy digest
    policy.toml              the policy's source file, when the exporter was given it
    report.html              the run's report
    witnesses.txt            witness verifier keys whose cosignatures the checkpoint carries, when given

``records.jsonl`` holds every record from the run's first record to the one that closed it (records of
other runs written in between included, so the hash chain has no gap), the run's later records, and
every key record up to the checkpoint (the checkpoint's ``assay-key-events`` line commits to those, so
none can be left out).

``verify_bundle`` checks, with no database: every record's hash from its body, its chain link to the
record before it, its signature by a key valid at its position (key records replayed from the trust
root: the bundle's keys.json or the auditor's own trust file), each inclusion proof against the
checkpoint root, the checkpoint's signature and key-event line, witness cosignatures (against
witnesses.txt and any ``--witness-key``), the attestation's signature and subject, the policy
digest against the verdict's, and every file against the signed manifest. Merkle, note, DSSE and key
replay code is the ledger verifier's own (``assay.audit.merkle``, ``note``, ``dsse``, ``verify``).

Standard library and ``cryptography`` only; nothing here reads the database except ``write_bundle``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as _dt
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.audit.canonical import canonical
from assay.audit.dsse import INTOTO_PAYLOAD_TYPE, DsseError, sign_envelope, verify_envelope
from assay.audit.format import KEY_KINDS, RUN_END_KINDS, record_hash
from assay.audit.keystate import KEY_EVENTS_EXT, KeyState, key_events_line, named_key
from assay.audit.merkle import ProofError, inclusion_proof, leaf_hash, verify_inclusion
from assay.audit.note import NoteError, parse_checkpoint, parse_note, verify_note
from assay.audit.records import check_row
from assay.audit.source import Source, origin_of
from assay.audit.trust import (
    ATTESTOR,
    ECDSA_P256,
    TrustedKey,
    TrustError,
    dump_trust,
    load_trust,
    parse_trust,
)

if TYPE_CHECKING:
    from assay.audit.ledger import Ledger

FORMAT = "assay-bundle/v1"
PREDICATE_TYPE = "https://assay.dev/audit-bundle/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

README = "README.md"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
RECORDS = "records.jsonl"
PROOFS = "proofs.jsonl"
CHECKPOINT = "checkpoint.note"
KEYS = "keys.json"
ATTESTATION = "attestation.intoto.json"
POLICY = "policy.json"
POLICY_SOURCE = "policy.toml"
REPORT = "report.html"
WITNESSES = "witnesses.txt"

#: Files every bundle has (besides the manifest and its signature).
REQUIRED = (README, RECORDS, PROOFS, CHECKPOINT, KEYS)


class BundleError(Exception):
    """Unusable input (exit 2): a missing folder, a folder that is not a bundle, an unreadable trust file."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BundleRefused(BundleError):
    """Nothing can be exported (exit 1): the ledger does not verify, or the bundle written does not."""


@dataclass(frozen=True)
class Problem:
    """One thing that failed: the bundle file it is in, what is wrong, and the record's seq if one."""

    file: str
    what: str
    seq: int | None = None

    def __str__(self) -> str:
        where = f" (record {self.seq})" if self.seq is not None else ""
        return f"{self.file}{where}: {self.what}"


@dataclass
class BundleReport:
    """The outcome of ``verify_bundle``; ``problems`` lead, in the order they matter."""

    bundle: str
    problems: list[Problem] = field(default_factory=list)
    run_id: str | None = None
    records: int = 0
    run_records: int = 0
    checkpoint_size: int | None = None
    checkpoint_root: str | None = None
    origin: str | None = None
    trust: str = ""
    signed_by: list[str] = field(default_factory=list)
    cosigned_by: list[str] = field(default_factory=list)
    cosignatures_unchecked: int = 0
    verdict: str | None = None
    policy: str | None = None
    policy_hash: str | None = None
    artifact: str | None = None
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, what: str, seq: int | None = None) -> None:
        self.problems.append(Problem(file, what, seq))

    def summary(self) -> str:
        if not self.ok:
            n = len(self.problems)
            return f"bundle {self.bundle} does NOT verify ({n} problem{'s' if n != 1 else ''}): {self.problems[0]}"
        return (f"bundle {self.bundle} verified: run {self.run_id}, {self.records} record(s) "
                f"({self.run_records} of the run), each in checkpoint of size {self.checkpoint_size}")

    def lines(self) -> list[str]:
        """What ``verify --bundle`` prints: the problems first, then what was proven."""
        out = [self.summary()]
        if not self.ok:
            out += [f"  {p}" for p in self.problems[1:]]
            return out
        out.append(f"verdict {self.verdict} under policy {self.policy} ({self.policy_hash}); model {self.artifact}")
        out.append(f"checkpoint {self.origin} size {self.checkpoint_size} root {self.checkpoint_root}, "
                   f"signed by {', '.join(self.signed_by)}")
        if self.cosigned_by:
            out.append(f"cosigned by witness(es): {', '.join(self.cosigned_by)}")
        if self.cosignatures_unchecked:
            out.append(f"{self.cosignatures_unchecked} other signature line(s) on the checkpoint not checked: "
                       "pass --witness-key VKEY to require a witness")
        out.append(f"trust: {self.trust}")
        out.append(f"{self.files} file(s) match the signed manifest")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bundle": self.bundle,
            "problems": [{"file": p.file, "seq": p.seq, "what": p.what} for p in self.problems],
            "run_id": self.run_id,
            "records": self.records,
            "run_records": self.run_records,
            "checkpoint": {"origin": self.origin, "size": self.checkpoint_size, "root": self.checkpoint_root,
                           "signed_by": self.signed_by, "cosigned_by": self.cosigned_by,
                           "unchecked_signature_lines": self.cosignatures_unchecked},
            "trust": self.trust,
            "verdict": {"decision": self.verdict, "policy": self.policy, "policy_hash": self.policy_hash,
                        "artifact": self.artifact},
            "files": self.files,
        }


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _pretty(doc: Any) -> bytes:
    """The one JSON layout the bundle's human-readable files use (and verification insists on)."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _has_key_events(cp_text: str) -> bool:
    try:
        return any(e.startswith(KEY_EVENTS_EXT + " ") for e in parse_checkpoint(parse_note(cp_text)[0]).extensions)
    except NoteError:
        return False


def _checkpoint_covering(ledger: Ledger, need: int) -> str:
    """The newest checkpoint the home holds that covers record ``need`` (a witnessed copy preferred), or a new one."""
    folder = Path(ledger.settings.home) / "checkpoints"
    best: tuple[int, int, str] | None = None
    for path in sorted(folder.glob(f"{ledger.ledger_id}*.note")) if folder.is_dir() else []:
        try:
            text = path.read_text(encoding="utf-8")
            body, sigs = parse_note(text)
            cp = parse_checkpoint(body)
        except (OSError, UnicodeDecodeError, NoteError):
            continue
        if cp.origin != ledger.origin or cp.size < need or not _has_key_events(text):
            continue
        if best is None or (cp.size, len(sigs)) > best[:2]:
            best = (cp.size, len(sigs), text)
    return best[2] if best is not None else ledger.checkpoint()


def _trust_entries(signers: dict[str, dict[str, Any]], attestors: dict[str, dict[str, Any]]) -> list[TrustedKey]:
    keys = [TrustedKey(kid, s["public_key"], name=str(s.get("identity") or ""), valid_from=s.get("valid_from"),
                       valid_until=s.get("valid_until"), revoked_at=s.get("revoked_at"),
                       identity=str(s.get("identity") or ""), roles=tuple(s.get("roles") or ()))
            for kid, s in sorted(signers.items(), key=lambda kv: (kv[1].get("valid_from") or 0, kv[0]))]
    keys += [TrustedKey(kid, a["public_key"], name=str(a.get("identity") or ""), valid_from=a.get("valid_from"),
                        valid_until=a.get("valid_until"), revoked_at=a.get("revoked_at"),
                        identity=str(a.get("identity") or ""), roles=(ATTESTOR,), algorithm=ECDSA_P256)
             for kid, a in sorted(attestors.items())]
    return keys


@dataclass(frozen=True)
class WrittenBundle:
    path: Path
    run_id: str
    files: list[str]
    records: int
    run_records: int
    checkpoint_size: int
    key_id: str
    cosignatures: int


def write_bundle(
    ledger: Ledger,
    run_id: str,
    out: Path,
    *,
    report_html: str | None,
    policy_source: bytes | None = None,
    witness_keys: Sequence[str] = (),
) -> WrittenBundle:
    """Write the audit bundle of ``run_id`` into ``out`` (a new or empty folder) and verify what was written.

    :param report_html: the run's rendered report (written as report.html).
    :param policy_source: the policy file's bytes as the user wrote it (policy.toml), if known.
    :param witness_keys: witness cosignature vkeys to ship in witnesses.txt; each must have cosigned.
    Raises BundleError for unusable input and BundleRefused when the ledger or the bundle does not verify.
    """
    from assay.audit.export import intoto_envelope

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"--bundle {out}: exists and is not an empty folder (pick a new path)")
    run_records = ledger.records(run_id=run_id)
    if not run_records:
        raise BundleError(f"run {run_id!r} has no ledger records (list runs with `assay audit runs`)")
    report = ledger.verify()
    if not report.ok:
        raise BundleRefused(f"the ledger does not verify, so no bundle is written: {report.summary()}")
    end = next((r.seq for r in reversed(run_records) if r.kind in RUN_END_KINDS), run_records[-1].seq)
    src = Source(ledger.settings.db_url)
    try:
        # The checkpoint must also cover the newest key record, so the key that signs the bundle is in it.
        last_key = max((row[0] for row in src.key_rows(src.max_seq())), default=0)
    finally:
        src.close()
    note_text = _checkpoint_covering(ledger, max(run_records[-1].seq, last_key))
    cp = parse_checkpoint(parse_note(note_text)[0])
    m = cp.size
    if witness_keys:
        from assay.audit.witness import check_witnesses, load_witness_keys

        vkeys = load_witness_keys(witness_keys)
        check = check_witnesses(note_text, vkeys, len(dict.fromkeys(vkeys)), run_records[-1].seq)
        if not check.ok:
            raise BundleRefused(f"the checkpoint of size {m} is not cosigned as --witness-key requires: "
                                f"{'; '.join(check.problems)}")
    # A run that ended before training has no model record, so no artifact to attest.
    envelope = intoto_envelope(ledger, run_id) if any(r.kind == "model" for r in run_records) else None
    src = Source(ledger.settings.db_url)
    try:
        rows = {r[0]: r for r in src.iter_range(run_records[0].seq, end)}
        for r in run_records:
            if r.seq > end:
                row = src.row(r.seq)
                if row is not None:
                    rows[r.seq] = row
        for row in src.key_rows(m):
            rows.setdefault(row[0], row)
        seqs = sorted(rows)
        proofs = []
        for seq in seqs:
            h = rows[seq][5]
            path = inclusion_proof(seq - 1, m, src.stored_node)
            try:
                verify_inclusion(seq - 1, m, leaf_hash(h), path, cp.root)
            except ProofError as exc:
                raise BundleRefused(f"record {seq} is not in the checkpoint's tree ({exc}): run `assay audit verify`") from None
            proofs.append({"seq": seq, "hash": h.hex(), "signature": rows[seq][6].hex(), "tree_size": m,
                           "inclusion": [p.hex() for p in path]})
    finally:
        src.close()

    files: dict[str, bytes] = {
        RECORDS: b"".join(rows[s][7] + b"\n" for s in seqs),
        PROOFS: b"".join(canonical(p) + b"\n" for p in proofs),
        CHECKPOINT: note_text.encode("utf-8"),
        KEYS: dump_trust(_trust_entries(report.signers, report.attestors)).encode("utf-8"),
    }
    if envelope is not None:
        files[ATTESTATION] = _pretty(envelope)
    started = next((r for r in run_records if r.kind == "run_started"), None)
    document = ((started.payload.get("policy") or {}) if started else {}).get("document")
    if isinstance(document, dict):
        files[POLICY] = canonical(document)
    if policy_source is not None:
        files[POLICY_SOURCE] = policy_source
    if report_html is not None:
        files[REPORT] = report_html.encode("utf-8")
    if witness_keys:
        files[WITNESSES] = "".join(v + "\n" for v in dict.fromkeys(vkeys)).encode("utf-8")
    key = ledger.signer()
    names = sorted([*files, README, MANIFEST, MANIFEST_SIG])
    files[README] = _readme(run_id, cp.origin, m, seqs, len(run_records), key.key_id, names).encode()

    manifest = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": _sha256(data)}} for name, data in sorted(files.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "format": FORMAT,
            "run_id": run_id,
            "origin": cp.origin,
            "checkpoint": {"size": m, "root": cp.root.hex()},
            "records": seqs,
            "run_records": [r.seq for r in run_records],
            "signed_by": key.key_id,
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    files[MANIFEST] = _pretty(manifest)
    files[MANIFEST_SIG] = _pretty(sign_envelope(files[MANIFEST], INTOTO_PAYLOAD_TYPE, key.private, key.key_id))
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    written = verify_bundle(out)
    if not written.ok:
        raise BundleRefused(f"the bundle written to {out} does not verify: {written.problems[0]}")
    return WrittenBundle(out, run_id, sorted(files), len(seqs), len(run_records), m, key.key_id,
                         len(parse_note(note_text)[1]) - 1)


def _readme(run_id: str, origin: str, size: int, seqs: list[int], run_n: int, key_id: str, names: list[str]) -> str:
    listed = "\n".join(f"- `{n}`" for n in names)
    return f"""# Audit bundle: run {run_id}

This folder proves what the assay ledger `{origin}` recorded for run `{run_id}`:
{len(seqs)} signed ledger records ({run_n} of the run, seq {seqs[0]}..{seqs[-1]}), each with an inclusion
proof against a signed checkpoint of the ledger's first {size} records. The manifest was signed by key
`{key_id}`.

{listed}

## Verify with assay

    assay audit verify --bundle DIR
    python -m assay.audit.verify --bundle DIR        # the same check, no database or assay home needed

Exit 0: every check passed. Exit 1: something changed; the output names the file and what failed.
Exit 2: DIR is missing or is not an audit bundle.

The bundle's `keys.json` is its own trust root: it shows the bundle is consistent and signed by the
keys it lists. To know those are the operator's real keys, check against a trust file you obtained
yourself (`assay keys export` on their side) and, where the ledger is witnessed, against the
witnesses' keys:

    assay audit verify --bundle DIR --trust THEIR_TRUST.json --witness-key WITNESS_VKEY

## Verify without assay

1. **Files.** `manifest.json` is an in-toto Statement; each subject is a file of this folder with
   its SHA-256; in the folder: `jq -r '.subject[] | "\\(.digest.sha256)  \\(.name)"' manifest.json | sha256sum -c`.
2. **Manifest signature.** `manifest.sig` is a DSSE envelope (payloadType
   `application/vnd.in-toto+json`) whose payload is exactly the bytes of `manifest.json`, signed with
   Ed25519 over `PAE = "DSSEv1 <len(type)> <type> <len(payload)> <payload>"` by a key in `keys.json`
   (`public_key` is the raw 32-byte key in hex; `key_id` is its SHA-256).
3. **Records.** Line *i* of `records.jsonl` is a record's canonical JSON body (RFC 8785) exactly as
   signed. Its hash is `SHA-256("assay.ledger.record.v1" 0x00 ‖ prev_hash (32 bytes) ‖ line bytes)`,
   where `prev_hash` is the hex field inside the body; it must equal `hash` on line *i* of
   `proofs.jsonl`, and `signature` there is Ed25519 over the 32 hash bytes by the body's `key_id`.
   Consecutive seq numbers chain: a record's `prev_hash` is the previous record's hash.
4. **Inclusion.** Each proof is an RFC 9162 inclusion proof (leaf `SHA-256(0x00 ‖ hash)`, nodes
   `SHA-256(0x01 ‖ left ‖ right)`) of leaf index `seq - 1` in a tree of `tree_size` leaves; it must
   lead to the root on line 3 of `checkpoint.note` (base64).
5. **Checkpoint.** `checkpoint.note` is a C2SP signed note: the signature line named after the first
   line (the origin) is `base64(4-byte key hash ‖ Ed25519 signature over the body)`. The
   `assay-key-events` line is SHA-256 over `seq (8 bytes, big-endian) ‖ hash` of every key record
   up to the checkpoint: all of them are in `records.jsonl`.
6. **Policy.** `sha256sum policy.json` is the policy digest the verdict record names (`policy_hash`).
7. **Attestation** (when the run recorded a model). `attestation.intoto.json` is a DSSE in-toto attestation any in-toto verifier
   checks with the same key; its subject is the model artifact's SHA-256 from the `model` record.
"""


# ---------------------------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------------------------


def _canonical_b64(value: Any) -> bytes | None:
    """Decode standard base64 that re-encodes to exactly ``value`` (so no two spellings verify)."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == value else None


def _hex(value: Any, size: int | None = None) -> bytes | None:
    if not isinstance(value, str) or value != value.lower():
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if size is None or len(raw) == size else None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _lines(data: bytes) -> list[bytes] | None:
    if not data.endswith(b"\n"):
        return None
    return data[:-1].split(b"\n")


class _Verifier:
    def __init__(self, root: Path, trust: Path | None, witness_keys: Sequence[str], quorum: int | None) -> None:
        self.root = root
        self.report = BundleReport(str(root))
        self.trust_path = trust
        self.witness_keys = list(witness_keys)
        self.quorum = quorum
        self.data: dict[str, bytes] = {}
        self.bodies: dict[int, dict[str, Any]] = {}
        self.hashes: dict[int, bytes] = {}
        self.keys: KeyState | None = None
        self.changed: set[str] = set()  # files whose digest is not the manifest's

    def read(self, name: str) -> bytes | None:
        if name in self.data:
            return self.data[name]
        try:
            data = (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.report.add(name, f"cannot be read ({exc.strerror or exc})")
            return None
        self.data[name] = data
        return data

    def add(self, file: str, what: str, seq: int | None = None) -> None:
        self.report.add(file, what, seq)

    # -- the manifest and its signature ------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        data = self.read(MANIFEST)
        if data is None:
            self.changed.add(MANIFEST)
            self.add(MANIFEST, "missing")
            return None
        doc = _json(data)
        if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != PREDICATE_TYPE \
                or not isinstance(doc.get("subject"), list) or not isinstance(doc.get("predicate"), dict):
            self.add(MANIFEST, f"not an audit bundle manifest (an in-toto Statement of type {PREDICATE_TYPE})")
            return None
        if _pretty(doc) != data:
            self.add(MANIFEST, "not in the layout assay writes (altered after export)")
        return doc

    def files(self, manifest: dict[str, Any]) -> None:
        listed: dict[str, str] = {}
        for i, s in enumerate(manifest["subject"]):
            name = s.get("name") if isinstance(s, dict) else None
            digest = (s.get("digest") or {}).get("sha256") if isinstance(s, dict) and isinstance(s.get("digest"), dict) else None
            if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or name in listed \
                    or name in (MANIFEST, MANIFEST_SIG) or _hex(digest, 32) is None:
                self.add(MANIFEST, f"subject[{i}] is not a file name with a sha256 digest")
                continue
            listed[name] = str(digest)
        present = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        for name in present:
            if name not in listed and name not in (MANIFEST, MANIFEST_SIG):
                self.changed.add(name)
                self.add(name, "is not listed in manifest.json (added after export)")
        for name, digest in listed.items():
            data = self.read(name)
            if data is None:
                self.changed.add(name)
                self.add(name, "is listed in manifest.json but missing")
            elif _sha256(data) != digest:
                self.changed.add(name)
                self.add(name, f"its SHA-256 is {_sha256(data)}, manifest.json lists {digest} (the file was changed)")
        for name in REQUIRED:
            if name not in listed:
                self.add(MANIFEST, f"does not list {name}, which every bundle has")
        self.report.files = len(listed)

    def manifest_signature(self, trusted: dict[str, bytes]) -> None:
        data = self.read(MANIFEST_SIG)
        if data is None:
            self.changed.add(MANIFEST_SIG)
            self.add(MANIFEST_SIG, "missing: the manifest is unsigned")
            return
        env = _json(data)
        if not isinstance(env, dict) or _pretty(env) != data:
            self.add(MANIFEST_SIG, "not a DSSE envelope in the layout assay writes (altered after export)")
            return
        sigs = env.get("signatures")
        if _canonical_b64(env.get("payload")) is None or not isinstance(sigs, list) or \
                any(not isinstance(s, dict) or _canonical_b64(s.get("sig")) is None for s in sigs):
            self.add(MANIFEST_SIG, "payload or signature is not canonical base64 (altered after export)")
            return
        try:
            payload = verify_envelope(env, trusted)
        except (DsseError, ValueError) as exc:
            self.add(MANIFEST_SIG, f"signature does not verify with a key of the trust root ({exc})")
            return
        if payload != self.read(MANIFEST):
            self.add(MANIFEST, "is not the document manifest.sig signs (the manifest was changed)")

    # -- records, proofs, keys ---------------------------------------------------------------------
    def trust(self) -> list[TrustedKey] | None:
        if self.trust_path is not None:
            try:
                keys = load_trust(self.trust_path)
            except TrustError as exc:
                raise BundleError(str(exc)) from None
            self.report.trust = f"trust file {self.trust_path} ({len(keys)} key(s))"
            return keys
        data = self.read(KEYS)
        if data is None:
            self.add(KEYS, "missing: no trust root to check signatures against")
            return None
        doc = _json(data)
        try:
            keys = parse_trust(doc, KEYS)
        except TrustError as exc:
            self.add(KEYS, str(exc))
            return None
        self.report.trust = (f"the bundle's own {KEYS} ({len(keys)} key(s); pass --trust FILE to check against "
                             "a trust file you hold)")
        return keys

    def records(self, cp_root: bytes | None, m: int | None, trusted: list[TrustedKey] | None) -> None:
        rec_data, proof_data = self.read(RECORDS), self.read(PROOFS)
        if rec_data is None:
            self.add(RECORDS, "missing")
        if proof_data is None:
            self.add(PROOFS, "missing")
        if rec_data is None or proof_data is None:
            return
        bodies, proofs = _lines(rec_data), _lines(proof_data)
        if bodies is None or not bodies or bodies == [b""]:
            self.add(RECORDS, "holds no records, or does not end with a newline")
            return
        if proofs is None or len(proofs) != len(bodies):
            self.add(PROOFS, f"needs one line per record of {RECORDS} ({len(bodies)}), ending with a newline")
            return
        keys = KeyState(trusted if trusted is not None else [])
        self.keys = keys
        parsed: list[tuple[int, dict[str, Any], bytes, dict[str, Any]]] = []
        pubkeys = dict(keys.pub)
        last_seq = 0
        for i, (body, line) in enumerate(zip(bodies, proofs, strict=True), 1):
            doc, proof = _json(body), _json(line)
            if not isinstance(doc, dict) or type(doc.get("seq")) is not int or not isinstance(doc.get("kind"), str) \
                    or not isinstance(doc.get("run_id"), str | None) or not isinstance(doc.get("payload"), dict):
                self.add(RECORDS, f"line {i} is not a record body (a JSON object with seq, kind, run_id and payload)")
                continue
            seq = doc["seq"]
            self.bodies.setdefault(seq, doc)  # present, even when its proof line is what is broken
            if not isinstance(proof, dict) or proof.get("seq") != seq or canonical(proof) != line:
                self.add(PROOFS, f"line {i} is not the proof of record {seq} (canonical JSON with its seq)", seq)
                continue
            if seq <= last_seq:
                self.add(RECORDS, f"line {i}: record {seq} is out of order (after record {last_seq})", seq)
                continue
            last_seq = seq
            parsed.append((seq, doc, body, proof))
            if doc.get("kind") in KEY_KINDS:
                payload = doc.get("payload")
                kid = payload.get("key_id") if isinstance(payload, dict) else None
                pub = named_key(payload, kid)
                if pub is not None and isinstance(kid, str):
                    pubkeys.setdefault(kid, pub)
        prev_seq, prev_hash = None, b""
        events: list[tuple[int, bytes]] = []
        for seq, doc, body, proof in parsed:
            h, sig = _hex(proof.get("hash"), 32), _hex(proof.get("signature"))
            prev, key_id = _hex(doc.get("prev_hash"), 32), _hex(doc.get("key_id"), 32)
            path = proof.get("inclusion")
            nodes = [_hex(p, 32) for p in path] if isinstance(path, list) else [None]
            if h is None or sig is None or proof.get("tree_size") != m or any(n is None for n in nodes):
                self.add(PROOFS, "hash, signature, tree_size or inclusion path is malformed", seq)
                continue
            if prev is None or key_id is None:
                self.add(RECORDS, "prev_hash or key_id in the body is not a 32-byte hex hash", seq)
                continue
            self.hashes[seq] = h
            recomputed = record_hash(prev, body)
            if recomputed != h:
                in_tree = cp_root is not None and m is not None and _included(seq, m, recomputed, nodes, cp_root)
                if in_tree:
                    self.add(PROOFS, "the hash given for the record is not the record's hash (altered)", seq)
                else:
                    self.add(RECORDS, f"the {doc['kind']} record's body does not hash to its signed hash: the record "
                                      "was changed", seq)
                continue
            if cp_root is not None and m is not None:
                if seq > m:
                    self.add(RECORDS, f"record {seq} lies beyond the checkpoint's {m} records", seq)
                elif not _included(seq, m, h, nodes, cp_root):
                    self.add(PROOFS, "the inclusion proof does not lead to the checkpoint's root", seq)
            if prev_seq == seq - 1 and prev != prev_hash:
                self.add(RECORDS, f"chain broken: prev_hash is not record {prev_seq}'s hash", seq)
            prev_seq, prev_hash = seq, h
            row = (seq, doc.get("run_id"), doc.get("kind"), key_id, prev, h, sig, body)
            reason = check_row(row, prev, pubkeys)
            if reason and reason.startswith("bad signature"):
                self.add(PROOFS, f"{reason}: the record's signature was changed", seq)
            elif reason:
                self.add(RECORDS, reason, seq)
            if trusted is not None:
                why = keys.check(seq, key_id.hex(), doc.get("kind"), body)
                if why:
                    self.add(RECORDS, f"{why} (trust root: {self.report.trust})", seq)
            if doc.get("kind") in KEY_KINDS and m is not None and seq <= m:
                events.append((seq, h))
        self._key_events = events

    # -- checkpoint ----------------------------------------------------------------------------------
    def checkpoint(self) -> tuple[str, Any] | None:
        data = self.read(CHECKPOINT)
        if data is None:
            self.add(CHECKPOINT, "missing")
            return None
        try:
            text = data.decode("utf-8")
            body, _ = parse_note(text)
            cp = parse_checkpoint(body)
        except (UnicodeDecodeError, NoteError) as exc:
            self.add(CHECKPOINT, f"not a signed checkpoint note ({exc})")
            return None
        self.report.checkpoint_size, self.report.checkpoint_root, self.report.origin = cp.size, cp.root.hex(), cp.origin
        if not cp.origin.startswith(origin_of("")):
            self.add(CHECKPOINT, f"origin {cp.origin!r} is not an assay ledger's")
        return text, cp

    def checkpoint_signatures(self, text: str, cp: Any) -> None:
        if self.keys is None:
            return
        pubs = self.keys.note_keys(cp.size)
        try:
            _, verified = verify_note(text, [(cp.origin, p) for p in pubs])
        except NoteError as exc:
            self.add(CHECKPOINT, f"signature: {exc} (trust root: {self.report.trust})")
            verified = []
        self.report.signed_by = [hashlib.sha256(p).hexdigest() for _, p in verified]
        line = next((e for e in cp.extensions if e.startswith(KEY_EVENTS_EXT + " ")), None)
        if line is None:
            self.add(CHECKPOINT, f"has no {KEY_EVENTS_EXT} line: nothing proves the bundle holds every key record")
        elif key_events_line(getattr(self, "_key_events", [])) != line:
            self.add(RECORDS, "the key records in the bundle differ from those the checkpoint commits to "
                              "(a key record was removed or altered)")
        sig_lines = len(parse_note(text)[1])
        witness_keys = list(self.witness_keys)
        shipped = self.read(WITNESSES)
        if shipped is not None:
            from assay.audit.witness import COSIGNATURE_ALG, VkeyError, parse_vkey

            try:
                shipped_lines = shipped.decode("utf-8").splitlines()
            except UnicodeDecodeError:
                self.add(WITNESSES, "is not UTF-8 text")
                return
            for n, ln in enumerate(shipped_lines, 1):
                if not ln.strip():
                    continue
                try:
                    witness_keys.append(str(parse_vkey(ln, COSIGNATURE_ALG)))
                except VkeyError as exc:
                    self.add(WITNESSES, f"line {n}: {exc}")
                    return
        if witness_keys:
            from assay.audit.witness import check_witnesses

            distinct = len(dict.fromkeys(witness_keys))
            quorum = distinct if self.quorum is None else self.quorum
            if not 1 <= quorum <= distinct:
                raise BundleError(f"--quorum {quorum} must be between 1 and the number of distinct witness keys ({distinct})")
            last_run = max((s for s, d in self.bodies.items() if d.get("run_id") == self.report.run_id), default=None)
            check = check_witnesses(text, witness_keys, quorum, last_run)
            for problem in check.problems:
                self.add(CHECKPOINT, f"witness: {problem}")
            self.report.cosigned_by = sorted(check.cosigned_by)
        self.report.cosignatures_unchecked = max(0, sig_lines - len(self.report.signed_by) - len(self.report.cosigned_by))

    # -- what the records say ------------------------------------------------------------------------
    def run(self, manifest: dict[str, Any] | None) -> None:
        pred = (manifest or {}).get("predicate") or {}
        run_id = pred.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            self.add(MANIFEST, "names no run_id")
            return
        self.report.run_id = run_id
        listed = pred.get("records")
        if isinstance(listed, list) and listed != sorted(self.bodies) and not any(p.file == RECORDS for p in self.report.problems):
            missing = sorted(set(listed) - set(self.bodies)) if all(type(s) is int for s in listed) else []
            self.add(RECORDS, f"does not hold the records manifest.json lists (missing: {missing[:10] or 'see manifest'})")
        cp = pred.get("checkpoint") or {}
        if cp.get("size") != self.report.checkpoint_size or cp.get("root") != self.report.checkpoint_root \
                or pred.get("origin") != self.report.origin:
            self.add(MANIFEST, "names a different checkpoint than checkpoint.note")
        run = sorted(s for s, d in self.bodies.items() if d.get("run_id") == run_id)
        self.report.records, self.report.run_records = len(self.bodies), len(run)
        if not run:
            self.add(RECORDS, f"holds no record of run {run_id}")
            return
        end = next((s for s in reversed(run) if self.bodies[s].get("kind") in RUN_END_KINDS), run[-1])
        gaps = [s for s in range(run[0], end + 1) if s not in self.bodies]
        if gaps:
            self.add(RECORDS, f"record {gaps[0]} is missing: every record from the run's first (seq {run[0]}) to the "
                              f"one that closed it (seq {end}) must be present ({len(gaps)} missing)", gaps[0])
        if self.bodies[run[0]].get("kind") != "run_started":
            self.add(RECORDS, f"the run's first record (seq {run[0]}) is not its run_started", run[0])

        def last(kind: str) -> tuple[int, dict[str, Any]] | None:
            found = [(s, self.bodies[s].get("payload") or {}) for s in run if self.bodies[s].get("kind") == kind]
            return found[-1] if found else None

        self._attestation(run_id, last("model"), last("evidence"), last("verdict"))
        self._policy(last("run_started"), last("evidence"), last("verdict"))

    def _attestation(self, run_id: str, model: Any, evidence: Any, verdict: Any) -> None:
        data = self.read(ATTESTATION)
        if data is None:
            if model is not None:
                self.add(ATTESTATION, f"missing: the run has a model record (seq {model[0]}), whose attestation "
                                      "every bundle of it carries")
            return
        env = _json(data)
        trusted = self._attesting_keys()
        try:
            payload = verify_envelope(env if isinstance(env, dict) else {}, trusted)
        except (DsseError, ValueError, AttributeError) as exc:
            self.add(ATTESTATION, f"signature does not verify with a key of the trust root ({exc})")
            return
        stmt = _json(payload)
        if not isinstance(stmt, dict):
            self.add(ATTESTATION, "payload is not an in-toto Statement")
            return
        found = stmt.get("predicate")
        pred: dict[str, Any] = found if isinstance(found, dict) else {}
        if pred.get("run_id") != run_id:
            self.add(ATTESTATION, f"attests run {pred.get('run_id')!r}, not {run_id}")
        if model is None:
            self.add(RECORDS, "the run has no model record: nothing for the attestation's subject to match")
            return
        artifact = str(model[1].get("artifact") or "")
        self.report.artifact = artifact
        subject = stmt.get("subject")
        digest = None
        if isinstance(subject, list) and subject and isinstance(subject[0], dict):
            digest = (subject[0].get("digest") or {}).get("sha256") if isinstance(subject[0].get("digest"), dict) else None
        if f"sha256:{digest}" != artifact:
            self.add(ATTESTATION, f"subject sha256 {digest} is not the model record's artifact {artifact}")
        found = pred.get("records")
        refs: dict[str, Any] = found if isinstance(found, dict) else {}
        for name, rec in (("model", model), ("evidence", evidence), ("verdict", verdict)):
            ref = refs.get(name)
            if rec is None:
                if ref is not None:
                    self.add(ATTESTATION, f"names a {name} record the bundle does not hold")
                continue
            h = self.hashes.get(rec[0])
            if not isinstance(ref, dict) or ref.get("seq") != rec[0] or h is None or ref.get("hash") != h.hex():
                self.add(ATTESTATION, f"its {name} record reference is not record {rec[0]} of the bundle")
        if evidence is not None and pred.get("evidence_sha256") != _sha256(canonical(evidence[1])):
            self.add(ATTESTATION, "evidence_sha256 is not the digest of the run's evidence record")

    def _attesting_keys(self) -> dict[str, bytes]:
        if self.keys is None or self.report.checkpoint_size is None:
            return {}
        return {hashlib.sha256(p).hexdigest(): p for p in self.keys.note_keys(self.report.checkpoint_size)}

    def _policy(self, started: Any, evidence: Any, verdict: Any) -> None:
        if verdict is None:
            return
        vp = verdict[1]
        digest = vp.get("policy_hash")
        self.report.verdict, self.report.policy, self.report.policy_hash = vp.get("decision"), vp.get("policy"), digest
        data = self.read(POLICY)
        if data is None:
            self.add(POLICY, f"missing: the verdict (record {verdict[0]}) names policy digest {digest}")
            return
        doc = _json(data)
        if not isinstance(doc, dict) or canonical(doc) != data:
            self.add(POLICY, "not the policy document in canonical JSON (altered after export)")
        elif f"sha256:{_sha256(data)}" != digest:
            self.add(POLICY, f"its digest sha256:{_sha256(data)} is not the verdict's policy_hash {digest} "
                             f"(record {verdict[0]})")
        recorded = ((started[1].get("policy") or {}) if started else {}).get("hash")
        if started is not None and recorded != digest:
            self.add(RECORDS, f"run_started records policy {recorded}, the verdict {digest}", started[0])
        if evidence is not None and evidence[1].get("policy_hash") not in (None, digest):
            self.add(RECORDS, f"the evidence's policy_hash is not the verdict's {digest}", evidence[0])


def _included(seq: int, m: int, h: bytes, nodes: list[Any], root: bytes) -> bool:
    try:
        verify_inclusion(seq - 1, m, leaf_hash(h), nodes, root)
    except ProofError:
        return False
    return True


def verify_bundle(path: Path | str, trust: Path | str | None = None, witness_keys: Sequence[str] = (),
                  quorum: int | None = None) -> BundleReport:
    """Verify the audit bundle in ``path`` offline (see the module docstring).

    :param trust: a trust file to use as the root instead of the bundle's keys.json.
    :param witness_keys: witness cosignature vkeys whose cosignatures the checkpoint must carry.
    :param quorum: how many of ``witness_keys`` (plus witnesses.txt) must have cosigned (default: all).
    Raises BundleError when ``path`` is not a bundle or an argument is unusable.
    """
    root = Path(path)
    if not root.exists():
        raise BundleError(f"--bundle {root}: no such folder (write one with `assay audit export RUN_ID --bundle DIR`)")
    if not root.is_dir():
        raise BundleError(f"--bundle {root}: is a file, not a bundle folder")
    if not (root / MANIFEST).is_file() and not (root / MANIFEST_SIG).is_file():
        raise BundleError(f"--bundle {root}: not an audit bundle (no {MANIFEST}); write one with "
                          "`assay audit export RUN_ID --bundle DIR`")
    if witness_keys:
        from assay.audit.witness import load_witness_keys

        try:
            witness_keys = load_witness_keys(witness_keys)
        except Exception as exc:  # BadInput naming the value or file
            raise BundleError(str(getattr(exc, "message", exc))) from None
    elif quorum is not None:
        raise BundleError("--quorum counts witnesses: give --witness-key VKEY|FILE too")
    v = _Verifier(root, Path(trust) if trust is not None else None, witness_keys, quorum)
    manifest = v.manifest()
    if manifest is not None:
        v.files(manifest)
    trusted = v.trust()
    got = v.checkpoint()
    cp = got[1] if got else None
    v.records(cp.root if cp else None, cp.size if cp else None, trusted)
    if got is not None:
        v.checkpoint_signatures(*got)
    v.manifest_signature(v._attesting_keys())
    v.run(manifest)
    # Lead with the files the manifest says were changed, then everything in bundle order.
    order = {name: i for i, name in enumerate((MANIFEST_SIG, MANIFEST, KEYS, CHECKPOINT, RECORDS, PROOFS))}
    # Lead with the files that changed; within a file, a named record says more than the file's digest.
    v.report.problems.sort(key=lambda p: (p.file not in v.changed, order.get(p.file, len(order)), p.seq is None))
    return v.report


# ---------------------------------------------------------------------------------------------
# Command line (``python -m assay.audit.verify --bundle DIR``)
# ---------------------------------------------------------------------------------------------


def run_verify(bundle: str, trust: str | None, witness_keys: Sequence[str], quorum: int | None, as_json: bool) -> int:
    """Verify ``bundle`` and print the outcome; the exit code (0 valid, 1 a problem found, 2 bad usage)."""
    try:
        report = verify_bundle(bundle, trust, witness_keys, quorum)
    except BundleError as exc:
        if as_json:
            print(json.dumps({"ok": False, "error": exc.message}))
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report.to_json(), sort_keys=True))
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m assay.audit.verify --bundle",
        description="Verify an assay audit bundle offline. Exit 0 valid, 1 a problem found (named), 2 bad usage.",
    )
    parser.add_argument("--bundle", required=True, help="the folder `assay audit export RUN_ID --bundle DIR` wrote")
    parser.add_argument("--trust", help="your trust file (default: the bundle's keys.json)")
    parser.add_argument("--witness-key", action="append", default=[], help="a witness's cosignature vkey (repeatable)")
    parser.add_argument("--quorum", type=int, help="witnesses that must have cosigned (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    return run_verify(args.bundle, args.trust, args.witness_key, args.quorum, args.json)


if __name__ == "__main__":
    sys.exit(main())
