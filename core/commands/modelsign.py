"""OpenSSF model signing: a run's model as a Sigstore bundle that ``model_signing verify key`` accepts.

``assay audit export RUN_ID --format model-signing`` writes a Sigstore bundle (media type
``application/vnd.dev.sigstore.bundle.v0.3+json``) holding a DSSE envelope whose payload is an in-toto
Statement v1 with the predicate ``https://model_signing/signature/v1.0``, exactly as the
``model-signing`` package lays it out for a key-signed model:

* ``predicate.serialization``: method ``files``, hash ``sha256``, no symlinks, and the ignored
  paths (git files, and the bundle itself when it sits in the model folder);
* ``predicate.resources``: each file of the model with its SHA-256 (``.`` when the model is a
  single file), in name order;
* the subject: the model's name and the SHA-256 over the resources' raw digests in that order;
* ``verificationMaterial.publicKey.hint``: hex SHA-256 of the attestation key's PEM, no tlog
  entries; one ECDSA P-256 signature (DER) over the DSSE pre-authentication encoding.

assay's verdict rides in one more predicate field, ``https://assay.dev/model-signing/verdict/v1``
(in-toto lets producers add fields named by URIs; the model-signing verifier ignores fields it does
not know): the governing verdict's seq, record hash, decision, policy and policy digest, the
ledger's origin, and a signed checkpoint covering that verdict. ``assay verify ARTIFACT --signature
F`` checks those against the verified ledger (``verify_bundle``).

Only a model whose governing verdict passes is signed: a consumer that runs only the model-signing
verifier never sees the verdict, so a signature must not exist for a blocked model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.audit.canonical import canonical
from assay.audit.dsse import INTOTO_PAYLOAD_TYPE, pae
from assay.commands.attest import (
    check_quoted_checkpoint,
    checkpoint_summary,
    covering_checkpoint,
    record_signature,
    sha256_hex,
    signing_attestor,
)
from assay.errors import BadInput, Finding

if TYPE_CHECKING:
    from assay.storage.settings import Settings
    from assay.storage.signed import SignedLedger

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
VERDICT_FIELD = "https://assay.dev/model-signing/verdict/v1"
SIGNATURE_NAME = "model.sig"
MODEL_NAME = "model.skops"
#: what model_signing ignores in a model folder by default (it records them in the predicate)
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")


@dataclass(frozen=True)
class Exported:
    signature: Path
    model: Path
    key_id: str
    public_key: Path
    attestation_seq: int
    verdict_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"format": "model-signing", "signature": str(self.signature), "model": str(self.model),
                "key_id": self.key_id, "public_key": str(self.public_key), "attestation_seq": self.attestation_seq,
                "verdict_seq": self.verdict_seq, "verify": self.verify_command}

    @property
    def verify_command(self) -> str:
        return (f"model_signing verify key {self.model} --signature {self.signature} "
                f"--public_key {self.public_key}")


def root_digest(resources: list[dict[str, str]]) -> str:
    """The subject digest model_signing expects: SHA-256 over the resources' raw digests, in order."""
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r["digest"]))
    return h.hexdigest()


def _model_layout(output_dir: Path | None, signature: Path | None, model_ref: str
                  ) -> tuple[Path, Path, str, list[str]]:
    """(model path to sign, bundle path, resource name, ignored paths) for the two ways of exporting."""
    if output_dir is None:
        assert signature is not None
        if not signature.parent.is_dir():
            raise BadInput(f"--signature {signature}: folder {signature.parent} does not exist")
        # A single-file model: model_signing names its one resource "." whatever the file is called.
        return Path(f"{model_ref}.skops"), signature, ".", list(GIT_PATHS)
    if output_dir.exists() and not output_dir.is_dir():
        raise BadInput(f"--output {output_dir}: is a file; model-signing writes a folder (the model and {SIGNATURE_NAME})")
    if not output_dir.parent.is_dir():
        raise BadInput(f"--output {output_dir}: folder {output_dir.parent} does not exist")
    bundle = signature or output_dir / SIGNATURE_NAME
    if not bundle.parent.is_dir() and bundle.parent != output_dir:
        raise BadInput(f"--signature {bundle}: folder {bundle.parent} does not exist")
    ignored = list(GIT_PATHS)
    try:
        inside = bundle.resolve().relative_to(output_dir.resolve())
        ignored.append(inside.as_posix())
    except ValueError:
        inside = None
    if output_dir.is_dir():
        allowed = {MODEL_NAME, *GIT_PATHS, *([inside.parts[0]] if inside is not None else [])}
        others = sorted(p.name for p in output_dir.iterdir() if p.name not in allowed)
        if others:
            raise BadInput(f"--output {output_dir}: holds {', '.join(others[:5])}; the model folder is signed whole, "
                           "so give an empty or new folder")
    return output_dir, bundle, MODEL_NAME, ignored


def export_model_signing(settings: Settings, run_ref: str, output_dir: Path | None = None,
                         signature: Path | None = None) -> Exported:
    """Sign RUN's model for model_signing (see the module docstring) and log the signature in the ledger.

    Finding when the governing verdict does not pass, or the attestation key is not trusted.
    """
    from assay.commands.deploy import verify_artifact
    from assay.storage.signed import SignedLedger
    from assay.storage.store import ArtifactStore

    if output_dir is None and signature is None:
        raise BadInput("--format model-signing needs --output DIR (a folder with the model and its model.sig) "
                       "or --signature F (a bundle for the model file)")
    signed = SignedLedger.open(settings)
    run_id = signed.resolve_run(run_ref)
    model = signed.last(run_id, "model")
    if model is None:
        raise BadInput(f"run {run_id} has no model record: there is no model to sign")
    artifact = str(model.payload.get("artifact") or "")
    ref = f"{model.payload.get('name') or 'model'}@{model.payload.get('version')}"
    result = verify_artifact(signed, artifact, require="pass")
    if not result.ok or result.verdict_seq is None:
        raise Finding(f"not signing {ref} ({artifact}): {result.reason}. A model-signing signature carries no "
                      "verdict its verifier reads, so only a model whose governing verdict passes is signed")
    key, _info = signing_attestor(settings, signed)
    data = ArtifactStore(settings.home).get_bytes(artifact)  # checks the stored bytes against the digest
    verdict = next(r for r in signed.records if r.seq == result.verdict_seq)
    note = covering_checkpoint(settings, verdict.seq)
    model_path, bundle_path, resource_name, ignored = _model_layout(output_dir, signature, ref)

    resources = [{"name": resource_name, "algorithm": "sha256", "digest": artifact.removeprefix("sha256:")}]
    statement: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_path.name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                              "ignore_paths": ignored},
            "resources": resources,
            VERDICT_FIELD: {
                "run_id": run_id, "model": ref, "artifact": artifact,
                "verdict": {"seq": verdict.seq, "hash": verdict.hash, "key_id": verdict.key_id,
                            "decision": result.decision, "policy": result.policy, "policy_hash": result.policy_hash},
                "ledger": {"origin": signed.report.origin, "size": len(signed.records)},
                "checkpoint": checkpoint_summary(note),
                "attestation_key": key.key_id,
            },
        },
    }
    payload = canonical(statement)
    message = pae(INTOTO_PAYLOAD_TYPE, payload)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(key.sign(message)).decode(), "keyid": key.key_id}],
        },
    }
    if output_dir is not None:
        output_dir.mkdir(exist_ok=True)
        _write(output_dir / MODEL_NAME, data)
    _write(bundle_path, (json.dumps(bundle, indent=2) + "\n").encode())
    record = record_signature(settings, run_id, key, message, {
        "format": "model-signing", "payload_type": INTOTO_PAYLOAD_TYPE, "predicate_type": PREDICATE_TYPE,
        "payload_sha256": sha256_hex(payload), "subject": statement["subject"][0], "artifact": artifact,
        "verdict_seq": verdict.seq,
    })
    from assay.audit.keys import KeyStore

    public = KeyStore(settings.home).public_path(key.key_id)
    return Exported(bundle_path, model_path if output_dir is not None else Path("MODEL_FILE"), key.key_id, public,
                    record.seq, verdict.seq)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None


# --------------------------------------------------------------------------- verification


def read_bundle(path: Path) -> dict[str, Any]:
    """A Sigstore bundle file as JSON (BadInput when it is not one)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--signature {path}: file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"--signature {path}: not a JSON Sigstore bundle ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("dsseEnvelope"), dict):
        raise BadInput(f"--signature {path}: not a Sigstore bundle with a DSSE envelope "
                       "(write one with: assay audit export RUN_ID --format model-signing)")
    return doc


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise Finding("the bundle's DSSE envelope has a payload or signature that is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Finding("the bundle's DSSE envelope has a payload or signature that is not base64") from None


def verify_bundle(signed: SignedLedger, path: Path, artifact: str, verdict_seq: int | None) -> dict[str, Any]:
    """Check a model-signing bundle for ``artifact`` (``sha256:HEX``) against the verified ledger.

    It must be signed by an attestation key an admin introduced and nobody revoked, over a statement
    whose resources are exactly that artifact; the ledger must log that signature; and the verdict it
    names must be the governing one (``verdict_seq``) with the same decision and policy digest, under
    a checkpoint of this ledger that covers it. Returns what was checked; Finding otherwise.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from assay.audit.keys import ec_public_from_point, key_hint

    bundle = read_bundle(path)
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise Finding(f"the bundle's media type is {bundle.get('mediaType')!r}, not {BUNDLE_MEDIA_TYPE}")
    envelope = bundle["dsseEnvelope"]
    material = bundle.get("verificationMaterial")
    public = material.get("publicKey") if isinstance(material, dict) else None
    hint = public.get("hint") if isinstance(public, dict) else None
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        raise Finding("the bundle's DSSE envelope has no list of signatures")
    if envelope.get("payloadType") != INTOTO_PAYLOAD_TYPE:
        raise Finding(f"the bundle's payload type is {envelope.get('payloadType')!r}, not {INTOTO_PAYLOAD_TYPE}")
    payload = _b64(envelope.get("payload"))
    message = pae(INTOTO_PAYLOAD_TYPE, payload)
    attestors = getattr(signed.report, "attestors", None) or {}
    signer: tuple[str, dict[str, Any]] | None = None
    for sig in signatures:
        if not isinstance(sig, dict):
            continue
        raw_sig = _b64(sig.get("sig"))
        for kid, info in attestors.items():
            point = bytes.fromhex(info["public_key"])
            if sig.get("keyid") not in (None, "", kid) and hint != key_hint(point):
                continue
            try:
                ec_public_from_point(point).verify(raw_sig, message, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                continue
            signer = (kid, info)
            break
        if signer:
            break
    if signer is None:
        raise Finding("the bundle is not signed by any attestation key this ledger trusts "
                      "(or its statement was changed after signing)")
    kid, info = signer
    if info.get("revoked_at") is not None:
        raise Finding(f"the bundle's attestation key {kid} was revoked at ledger seq {info['revoked_at']}")
    if info.get("valid_until") is not None:
        raise Finding(f"the bundle's attestation key {kid} is retired (valid until seq {info['valid_until']})")
    logged = [r for r in signed.records if r.kind == "attestation" and r.payload.get("key_id") == kid
              and r.payload.get("signed_sha256") == sha256_hex(message)]
    if not logged:
        raise Finding(f"no attestation record in the ledger logs this signature by {kid}: it was not made by "
                      "`assay audit export`")
    if info.get("valid_from") is None or logged[0].seq < info["valid_from"]:
        raise Finding(f"the signature by {kid} is logged at seq {logged[0].seq}, before the key was trusted")
    try:
        statement = json.loads(payload)
    except ValueError:
        raise Finding("the bundle's payload is not JSON") from None
    problem = _statement_problem(statement, artifact)
    if problem:
        raise Finding(f"the bundle's statement {problem}")
    extra = statement["predicate"].get(VERDICT_FIELD)
    if not isinstance(extra, dict) or not isinstance(extra.get("verdict"), dict):
        raise Finding(f"the bundle carries no assay verdict ({VERDICT_FIELD}); export it with assay")
    named = extra["verdict"]
    if verdict_seq is None or named.get("seq") != verdict_seq:
        raise Finding(f"the bundle names the verdict at seq {named.get('seq')}, but the governing verdict for "
                      f"{artifact} is at seq {verdict_seq}")
    record = next(r for r in signed.records if r.seq == verdict_seq)
    rp = record.payload or {}
    for field_name, expected in (("hash", record.hash), ("decision", rp.get("decision")),
                                 ("policy_hash", rp.get("policy_hash"))):
        if named.get(field_name) != expected:
            raise Finding(f"the bundle's verdict {field_name} {named.get(field_name)!r} is not the ledger's "
                          f"{expected!r} (verdict seq {verdict_seq})")
    why = check_quoted_checkpoint(signed, extra.get("checkpoint"), verdict_seq)
    if why:
        raise Finding(f"the bundle's checkpoint does not vouch for this ledger: {why}")
    return {"path": str(path), "key_id": kid, "identity": info.get("identity"), "attestation_seq": logged[0].seq,
            "verdict_seq": verdict_seq, "checkpoint_size": extra["checkpoint"].get("size")}


def _statement_problem(statement: Any, artifact: str) -> str | None:
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        return f"is not an in-toto Statement v1 ({STATEMENT_TYPE})"
    if statement.get("predicateType") != PREDICATE_TYPE:
        return f"has predicate type {statement.get('predicateType')!r}, not {PREDICATE_TYPE}"
    predicate = statement.get("predicate")
    resources = predicate.get("resources") if isinstance(predicate, dict) else None
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        return "has no resources"
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        return "does not have exactly one subject"
    try:
        root = root_digest(resources)
    except (KeyError, TypeError, ValueError):
        return "has a resource without a hex digest"
    if not isinstance(subjects[0].get("digest"), dict) or subjects[0]["digest"].get("sha256") != root:
        return "subject digest is not the digest of its resources"
    digest = artifact.removeprefix("sha256:")
    if len(resources) != 1 or resources[0].get("algorithm") != "sha256" or resources[0].get("digest") != digest:
        shown = ", ".join(f"{r.get('name')}={r.get('digest')}" for r in resources[:3])
        return f"signs {shown}, not exactly the model file {artifact}"
    return None
