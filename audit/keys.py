"""Signing keys on disk: create, load, protect and trust the Ed25519 keys of an assay home.

Layout under ``{home}/keys/`` (directory mode 0700):

* ``<key_id>.key`` — PKCS#8 PEM private key, mode 0600, encrypted when ``ASSAY_KEY_PASSPHRASE`` is set.
  A key file readable by group or others is refused (BadInput naming the file and the chmod fix).
* ``<key_id>.pub`` — the raw public key, hex.
* ``active`` — the key id used for signing.
* ``trust.json`` — the trust file (see ``assay.audit.trust``), kept in step with the ledger's
  key_added / key_rotated / key_revoked records. Nothing else writes it: using a key never trusts
  it. A home's first key becomes its genesis key when it introduces itself at ledger seq 1; every
  later key is trusted only once an admin key has signed a key_added for it (``assay keys add``).

Attestation keys (ECDSA P-256, ``assay keys init --type ecdsa-p256``) live beside them: ``<key_id>.key``
(PKCS#8 PEM, 0600), ``<key_id>.pub`` (PEM SubjectPublicKeyInfo, what ``model_signing verify key
--public_key`` reads) and ``attestor`` naming the one in use. Their key id is the SHA-256 of the
65-byte uncompressed point. They sign attestations (model-signing bundles), never ledger records;
the ledger trusts one only after an admin's key_added for it, and records each signature it makes.
``ASSAY_ATTESTATION_KEY`` overrides it the way ``ASSAY_SIGNING_KEY`` overrides the signing key.

``ASSAY_SIGNING_KEY`` overrides the active key (for CI): if its value starts with ``-----BEGIN`` it is
the PEM text itself, otherwise it is the path of a PEM file (which must also be mode 0600). Such a
key signs only if the ledger already knows it (or it is the genesis key of an empty ledger). Private
key material never appears in records, logs or error messages.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.audit.errors import BadInput
from assay.audit.format import key_id_of
from assay.audit.trust import (
    ECDSA_P256,
    ED25519,
    TrustedKey,
    TrustError,
    dump_trust,
    load_trust,
    resolve_roles,
)

PASSPHRASE_ENV = "ASSAY_KEY_PASSPHRASE"
SIGNING_KEY_ENV = "ASSAY_SIGNING_KEY"
ATTESTATION_KEY_ENV = "ASSAY_ATTESTATION_KEY"

_CI_ENV = ("GITHUB_RUN_ID", "CI_JOB_ID", "BUILD_ID", "BUILDKITE_JOB_ID", "CIRCLE_WORKFLOW_JOB_ID", "CIRCLE_BUILD_NUM")


def default_identity() -> str:
    """``{user}@{host}``: who holds a key when nobody says."""
    return "{user}@{host}".format(**actor())


def actor() -> dict[str, Any]:
    """Who is writing: OS user, host, and the CI job id when a CI system sets one."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    ci_job = None
    for var in _CI_ENV:
        value = os.environ.get(var)
        if value:
            if var == "GITHUB_RUN_ID" and os.environ.get("GITHUB_RUN_ATTEMPT"):
                value = f"{value}/{os.environ['GITHUB_RUN_ATTEMPT']}"
            ci_job = f"{var}={value}"
            break
    return {"user": user, "host": socket.gethostname(), "ci_job": ci_job}


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its id; ``repr`` never shows key material."""

    key_id: str
    public_raw: bytes
    source: str
    private: Ed25519PrivateKey = field(repr=False, compare=False)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey, source: str) -> SigningKey:
        raw = private.public_key().public_bytes_raw()
        return cls(key_id_of(raw), raw, source, private)


def ec_point(public: ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed SEC1 point of a P-256 public key (what its key id hashes)."""
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def ec_public_from_point(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its uncompressed point; ValueError when it is not one."""
    if len(raw) != 65 or raw[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def ec_public_pem(raw: bytes) -> bytes:
    """PEM SubjectPublicKeyInfo of a P-256 point (the file model_signing's verifier takes)."""
    return ec_public_from_point(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(raw: bytes) -> str:
    """The Sigstore bundle's ``publicKey.hint`` for a P-256 point: hex SHA-256 of its PEM, as model_signing computes it."""
    import hashlib

    return hashlib.sha256(ec_public_pem(raw)).hexdigest()


@dataclass(frozen=True)
class AttestationKey:
    """An ECDSA P-256 private key that signs attestations (never ledger records); ``repr`` hides it."""

    key_id: str
    public_raw: bytes
    source: str
    private: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)
    algorithm: ClassVar[str] = ECDSA_P256

    def sign(self, data: bytes) -> bytes:
        """A DER-encoded ECDSA signature over SHA-256(data)."""
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))

    @property
    def public_pem(self) -> bytes:
        return ec_public_pem(self.public_raw)

    @property
    def hint(self) -> str:
        return key_hint(self.public_raw)

    @classmethod
    def from_private(cls, private: ec.EllipticCurvePrivateKey, source: str) -> AttestationKey:
        raw = ec_point(private.public_key())
        return cls(key_id_of(raw), raw, source, private)


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def check_private_mode(path: Path) -> None:
    """Refuse a private key file that group or others can read or write."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise BadInput(
            f"private key {path} is accessible by group or others (mode {mode:04o}); "
            f"fix it with: chmod 600 {path}"
        )


def _load_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    key = _load_private_pem(data, where)
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"private key {where} is not an Ed25519 key")
    return key


def _load_ec_pem(data: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    key = _load_private_pem(data, where)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInput(f"private key {where} is not an ECDSA P-256 key (create one with: assay keys init --type ecdsa-p256)")
    return key


def _load_private_pem(data: bytes, where: str) -> Any:
    passphrase = _passphrase()
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and passphrase is None:
        raise BadInput(f"private key {where} is passphrase-protected; set {PASSPHRASE_ENV}")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except (ValueError, TypeError):
        if encrypted:
            raise BadInput(f"cannot decrypt private key {where}: wrong {PASSPHRASE_ENV}") from None
        raise BadInput(f"{where} is not a PEM private key") from None
    except Exception:
        raise BadInput(f"{where} is not a usable PEM private key") from None
    return key


def _read_private_file(path: Path) -> bytes:
    try:
        check_private_mode(path)
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"private key file {path} does not exist") from None
    except PermissionError:
        raise BadInput(f"private key file {path} is not readable by this user") from None


def load_private_file(path: Path) -> SigningKey:
    """Load a PEM Ed25519 private key file after checking its permissions."""
    return SigningKey.from_private(_load_pem(_read_private_file(path), str(path)), str(path))


def load_attestation_file(path: Path) -> AttestationKey:
    """Load a PEM ECDSA P-256 private key file after checking its permissions."""
    return AttestationKey.from_private(_load_ec_pem(_read_private_file(path), str(path)), str(path))


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class KeyStore:
    """The keys directory of one assay home."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.dir = self.home / "keys"
        self.trust_path = self.dir / "trust.json"
        self.active_path = self.dir / "active"

    # -- locking -------------------------------------------------------------------------------
    _held: ClassVar[dict[str, int]] = {}
    _thread_lock: ClassVar[threading.RLock] = threading.RLock()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive inter-process lock over the keys directory (re-entrant within a process)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = str(self.dir / ".lock")
        with KeyStore._thread_lock:
            if path in KeyStore._held:
                yield
                return
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX)
                except ImportError:  # pragma: no cover - non-POSIX
                    pass
                KeyStore._held[path] = fd
                yield
            finally:
                KeyStore._held.pop(path, None)
                os.close(fd)

    # -- private keys ----------------------------------------------------------------------------
    def key_path(self, key_id: str) -> Path:
        return self.dir / f"{key_id}.key"

    def private_key_ids(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.key"))

    def load(self, key_id: str) -> SigningKey:
        key = load_private_file(self.key_path(key_id))
        if key.key_id != key_id:
            raise BadInput(f"private key file {self.key_path(key_id)} holds a different key than its name says")
        return key

    def generate(self) -> SigningKey:
        """Create and store a new key (not yet active, not yet trusted)."""
        private = Ed25519PrivateKey.generate()
        key = SigningKey.from_private(private, "")
        passphrase = _passphrase()
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.key_path(key.key_id)
        _write_atomic(path, pem, 0o600)
        _write_atomic(self.dir / f"{key.key_id}.pub", key.public_raw.hex().encode() + b"\n", 0o644)
        return SigningKey(key.key_id, key.public_raw, str(path), private)

    def active_id(self) -> str | None:
        try:
            value = self.active_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return value or None

    def set_active(self, key_id: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(self.active_path, key_id.encode() + b"\n", 0o644)

    def env_key(self) -> SigningKey | None:
        """The CI key from ASSAY_SIGNING_KEY (PEM text, or the path of a PEM file), if set."""
        value = os.environ.get(SIGNING_KEY_ENV)
        if not value:
            return None
        if value.lstrip().startswith("-----BEGIN"):
            return SigningKey.from_private(_load_pem(value.strip().encode(), f"${SIGNING_KEY_ENV}"), "env")
        return load_private_file(Path(value).expanduser())

    def active(self, create: bool = True) -> SigningKey:
        """The signing key: ASSAY_SIGNING_KEY, else the home's active key (created on first use).

        This never trusts the key: the ledger decides whether it may sign (``Ledger`` refuses a key
        it does not know, unless it is the genesis key of an empty ledger).
        """
        env = self.env_key()
        if env is not None:
            return env
        kid = self.active_id()
        if kid is None:
            if not create:
                raise BadInput(f"no signing key in {self.dir}; create one with: assay keys init")
            with self.lock():
                kid = self.active_id()
                if kid is None:
                    key = self.generate()
                    self.set_active(key.key_id)
                    return key
        return self.load(kid)

    def public_path(self, key_id: str) -> Path:
        return self.dir / f"{key_id}.pub"

    # -- attestation keys (ECDSA P-256) ----------------------------------------------------------
    @property
    def attestor_path(self) -> Path:
        return self.dir / "attestor"

    def generate_attestor(self) -> AttestationKey:
        """Create and store a new attestation key and make it this home's (not yet trusted)."""
        private = ec.generate_private_key(ec.SECP256R1())
        key = AttestationKey.from_private(private, "")
        passphrase = _passphrase()
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        with self.lock():
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.key_path(key.key_id)
            _write_atomic(path, pem, 0o600)
            _write_atomic(self.public_path(key.key_id), key.public_pem, 0o644)
            _write_atomic(self.attestor_path, key.key_id.encode() + b"\n", 0o644)
        return AttestationKey(key.key_id, key.public_raw, str(path), private)

    def attestor_id(self) -> str | None:
        try:
            value = self.attestor_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return value or None

    def attestor(self) -> AttestationKey:
        """The attestation key: ASSAY_ATTESTATION_KEY (PEM text or a file path), else the home's."""
        value = os.environ.get(ATTESTATION_KEY_ENV)
        if value:
            if value.lstrip().startswith("-----BEGIN"):
                return AttestationKey.from_private(_load_ec_pem(value.strip().encode(), f"${ATTESTATION_KEY_ENV}"), "env")
            return load_attestation_file(Path(value).expanduser())
        kid = self.attestor_id()
        if kid is None:
            raise BadInput(f"no attestation key in {self.dir}; create one with: assay keys init --type ecdsa-p256")
        key = load_attestation_file(self.key_path(kid))
        if key.key_id != kid:
            raise BadInput(f"private key file {self.key_path(kid)} holds a different key than its name says")
        return key

    # -- trust file --------------------------------------------------------------------------------
    def trusted(self, missing_ok: bool = False) -> list[TrustedKey]:
        if missing_ok and not self.trust_path.exists():
            return []
        try:
            return load_trust(self.trust_path)
        except TrustError as exc:
            raise BadInput(str(exc)) from None

    def update_trust(self, change: Callable[[list[TrustedKey]], list[TrustedKey]]) -> list[TrustedKey]:
        """Read-modify-write the trust file under the keys lock (atomic replace)."""
        with self.lock():
            keys = change(self.trusted(missing_ok=True))
            _write_atomic(self.trust_path, dump_trust(keys).encode(), 0o644)
            return keys

    def add_trusted(
        self, key_id: str, public_raw: bytes, name: str = "", valid_from: int | None = None,
        identity: str = "", roles: tuple[str, ...] | list[str] | None = None, algorithm: str = ED25519,
    ) -> None:
        """Record a key the ledger introduced; an entry already there only gains what it lacks."""
        who = identity or name or default_identity()
        granted = None if roles is None else tuple(roles)

        def change(keys: list[TrustedKey]) -> list[TrustedKey]:
            out = []
            for k in keys:
                if k.key_id == key_id:
                    k = k.with_(
                        identity=k.identity or who,
                        name=k.name or who,
                        roles=k.roles if k.roles is not None else granted,
                        valid_from=k.valid_from if k.valid_from is not None else valid_from,
                    )
                out.append(k)
            if not any(k.key_id == key_id for k in keys):
                out.append(TrustedKey(key_id, public_raw.hex(), who, valid_from, None, None, who, granted, algorithm))
            return out

        self.update_trust(change)

    def set_window(self, key_id: str, **changes: int | None) -> None:
        """Set valid_from / valid_until / revoked_at of a trusted key (valid_from only if unset)."""

        def change(keys: list[TrustedKey]) -> list[TrustedKey]:
            out = []
            for k in keys:
                if k.key_id == key_id:
                    c = dict(changes)
                    if "valid_from" in c and k.valid_from is not None:
                        del c["valid_from"]
                    k = k.with_(**c)
                out.append(k)
            return out

        self.update_trust(change)

    def export_trust(self) -> str:
        """The trust file an auditor keeps: every key with its identity, roles and window spelled out."""
        keys = [
            k.with_(identity=k.who, name=k.name or k.who, roles=resolve_roles(k.roles, k.valid_from == 1))
            for k in self.trusted(missing_ok=True)
        ]
        return dump_trust(keys)

    def describe(self) -> list[dict[str, Any]]:
        """Keys known to this home: trusted public keys, whether a private key is here, which is active.

        The active key is listed even before the ledger knows it (``trusted`` false).
        """
        active = self.active_id()
        attestor = self.attestor_id()
        env = os.environ.get(SIGNING_KEY_ENV)
        local = set(self.private_key_ids())
        out = []
        trusted = self.trusted(missing_ok=True)
        for k in trusted:
            out.append(
                {
                    "key_id": k.key_id,
                    "name": k.who,
                    "identity": k.who,
                    "roles": list(resolve_roles(k.roles, k.valid_from == 1)),
                    "public_key": k.public_key,
                    "private_key_here": k.key_id in local,
                    "active": k.key_id == active and not env,
                    "trusted": True,
                    "valid_from": k.valid_from,
                    "valid_until": k.valid_until,
                    "revoked_at": k.revoked_at,
                    "algorithm": k.algorithm,
                    "attestor": k.key_id == attestor,
                }
            )
        if attestor and not any(k.key_id == attestor for k in trusted):
            out.append(
                {
                    "key_id": attestor, "name": "", "identity": "", "roles": ["attestor"],
                    "public_key": self._public_hex(attestor), "private_key_here": attestor in local, "active": False,
                    "trusted": False, "valid_from": None, "valid_until": None, "revoked_at": None,
                    "algorithm": ECDSA_P256, "attestor": True,
                }
            )
        if active and not env and not any(k.key_id == active for k in trusted):
            try:
                public = self.public_path(active).read_text(encoding="utf-8").strip()
            except OSError:
                public = ""
            out.append(
                {
                    "key_id": active, "name": "", "identity": "", "roles": [], "public_key": public,
                    "private_key_here": active in local, "active": True, "trusted": False,
                    "valid_from": None, "valid_until": None, "revoked_at": None,
                    "algorithm": ED25519, "attestor": False,
                }
            )
        return out

    def _public_hex(self, key_id: str) -> str:
        """An attestation key's point, hex, from its PEM .pub file ('' when unreadable)."""
        try:
            key = serialization.load_pem_public_key(self.public_path(key_id).read_bytes())
        except (OSError, ValueError):
            return ""
        return ec_point(key).hex() if isinstance(key, ec.EllipticCurvePublicKey) else ""


def read_public_key(path: Path) -> bytes:
    """A public key file: 64 hex characters (raw Ed25519), or a PEM SubjectPublicKeyInfo."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read public key {path}: {exc.strerror}") from None
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        except (ValueError, TypeError):
            raise BadInput(f"{path} is not an Ed25519 PEM public key") from None
    if text.startswith(b"{"):
        try:
            doc = json.loads(text)
            return bytes.fromhex(doc["public_key"])
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"{path} is JSON without a hex public_key field") from None
    try:
        raw = bytes.fromhex(text.decode())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise BadInput(f"{path} is not a public key (expected 64 hex characters or a PEM public key)")
    return raw


def read_any_public_key(path: Path) -> tuple[str, bytes]:
    """``(algorithm, raw)`` of a public key file: an Ed25519 key as ``read_public_key`` reads it, or a
    PEM ECDSA P-256 key (an attestation key), raw being its uncompressed point."""
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise BadInput(f"cannot read public key {path}: {exc.strerror}") from None
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except (ValueError, TypeError):
            raise BadInput(f"{path} is not a PEM public key") from None
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise BadInput(f"{path} is an ECDSA key on {key.curve.name}; attestation keys are P-256 (secp256r1)")
            return ECDSA_P256, ec_point(key)
    return ED25519, read_public_key(path)


def ensure_signing_key(home: Path) -> SigningKey:
    """The home's signing key, created (0600) if there is none yet — for ``assay init``.

    A home's first key becomes its genesis key (admin) when it introduces itself at seq 1 of an
    empty ledger, on the first append.
    """
    return KeyStore(home).active(create=True)
