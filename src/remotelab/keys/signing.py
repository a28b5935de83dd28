"""The Ed25519 key that signs what the gateway (or the lab's own queue) accepted, and the
public keys a worker trusts.

The private key ``submission.key`` stays where experiments are accepted (the lab host);
workers need only the public keys, every ``submission*.pub`` of their keys directory: the
current one and those kept after a rotation (:func:`rotate_signing_key`) until the queue
signed by them has drained. Prefect never sees the private key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from remotelab.errors import RemotelabError
from remotelab.keys.files import is_private, keys_dir, write_private

PRIVATE_FILE = "submission.key"
PUBLIC_FILE = "submission.pub"
#: the public keys a worker trusts (the current one and those kept after a rotation)
PUBLIC_GLOB = "submission*.pub"


class SubmissionKeyError(RemotelabError, ValueError):
    """A submission key that is not private, not Ed25519, or not there."""


class SignatureInvalid(ValueError):
    """A signature that is missing, malformed, by an unknown key, or not over this content."""


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: ``payload`` as JSON, keys sorted, no spaces, ASCII only."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def key_id(public: Ed25519PublicKey) -> str:
    """A public key's short name: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Signer:
    """Signs payloads with the submission key."""

    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, payload: Mapping[str, Any]) -> dict[str, str]:
        """The signature of ``payload``: ``{"key": key id, "sig": base64}``."""
        sig = self.private.sign(canonical(payload))
        return {"key": self.key_id, "sig": base64.b64encode(sig).decode()}

    def verifier(self) -> Verifier:
        """A verifier trusting this signer's key only."""
        public = self.private.public_key()
        return Verifier({key_id(public): public})


@dataclass(frozen=True)
class Verifier:
    """Checks signatures against the trusted public keys (key id → key). With
    ``directory``, a key id not known yet is looked for there again (a key copied in after
    a rotation is trusted without a restart)."""

    keys: dict[str, Ed25519PublicKey]
    directory: Path | None = None

    def verify(self, payload: Mapping[str, Any], signature: Any) -> str:
        """The key id that signed ``payload``; :class:`SignatureInvalid` saying why not."""
        if not isinstance(signature, Mapping):
            raise SignatureInvalid("it carries no signature of the gateway")
        kid, sig = signature.get("key"), signature.get("sig")
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise SignatureInvalid("its signature is malformed")
        if kid not in self.keys and self.directory is not None:
            self.keys.update(_trusted(self.directory))
        public = self.keys.get(kid)
        if public is None:
            trusted = ", ".join(sorted(self.keys)) or "none"
            raise SignatureInvalid(
                f"it is signed with key {kid[:16]}, which this worker does not trust "
                f"(trusted: {trusted}); copy the gateway's {PUBLIC_FILE} to the worker's keys "
                "directory"
            )
        try:
            public.verify(base64.b64decode(sig, validate=True), canonical(payload))
        except (InvalidSignature, ValueError):
            raise SignatureInvalid(
                "its signature does not match what it holds: it was changed after the gateway "
                "accepted it"
            ) from None
        return kid


def _load_private(path: Path) -> Ed25519PrivateKey:
    if not is_private(path):
        raise SubmissionKeyError(
            f"{path} can be read by others; make it 0600 (chmod 600 {path.name})"
        )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SubmissionKeyError(f"{path} is not an Ed25519 private key")
    return key


def _write_pair(directory: Path) -> Signer:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(directory / PUBLIC_FILE, public_pem(private.public_key()))
    write_private(directory / PRIVATE_FILE, pem)
    return Signer(private)


def load_or_make_signer(directory: Path | None = None) -> Signer:
    """The submission signer of ``directory`` (default: the keys directory); a new key pair
    is made, readable by this user only, if there is none."""
    directory = directory or keys_dir()
    path = directory / PRIVATE_FILE
    if path.exists():
        return Signer(_load_private(path))
    return _write_pair(directory)


def load_verifier(directory: Path | None = None) -> Verifier:
    """A verifier trusting every ``submission*.pub`` of ``directory`` (default: the keys
    directory). With neither public nor private key there, this is the lab host's first
    start: the key pair is made (a worker on another host then names the key it lacks)."""
    directory = directory or keys_dir()
    if not any(directory.glob(PUBLIC_GLOB)) and not (directory / PRIVATE_FILE).exists():
        load_or_make_signer(directory)
    return Verifier(_trusted(directory), directory)


def _trusted(directory: Path) -> dict[str, Ed25519PublicKey]:
    """The public keys of ``directory``: its ``submission*.pub`` and its private key's."""
    keys: dict[str, Ed25519PublicKey] = {}
    for file in sorted(directory.glob(PUBLIC_GLOB)):
        public = serialization.load_pem_public_key(file.read_bytes())
        if isinstance(public, Ed25519PublicKey):
            keys[key_id(public)] = public
    if (directory / PRIVATE_FILE).exists():
        public = _load_private(directory / PRIVATE_FILE).public_key()
        keys[key_id(public)] = public
    return keys


def rotate_signing_key(directory: Path | None = None) -> tuple[str, str]:
    """Make a new submission key pair; the old public key stays trusted as
    ``submission.<key id>.pub`` until :func:`forget_key`. (old key id, new key id)."""
    directory = directory or keys_dir()
    old = load_or_make_signer(directory)
    write_private(directory / f"submission.{old.key_id}.pub", public_pem(old.private.public_key()))
    return old.key_id, _write_pair(directory).key_id


def forget_key(kid: str, directory: Path | None = None) -> Path:
    """Stop trusting the retired public key ``kid`` (its file is removed); its path."""
    directory = directory or keys_dir()
    path = directory / f"submission.{kid}.pub"
    if not path.exists():
        retired = sorted(p.name for p in directory.glob("submission.*.pub"))
        raise SubmissionKeyError(
            f"no retired submission key {kid}; retired keys: {', '.join(retired) or 'none'}"
        )
    path.unlink()
    return path


def trusted_keys(directory: Path | None = None) -> list[tuple[str, str, bool]]:
    """The public keys a worker of ``directory`` trusts: (key id, file, whether current)."""
    directory = directory or keys_dir()
    found = []
    for file in sorted(directory.glob(PUBLIC_GLOB)):
        public = serialization.load_pem_public_key(file.read_bytes())
        if isinstance(public, Ed25519PublicKey):
            found.append((key_id(public), file.name, file.name == PUBLIC_FILE))
    return found


__all__ = [
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "SignatureInvalid",
    "Signer",
    "SubmissionKeyError",
    "Verifier",
    "canonical",
    "forget_key",
    "key_id",
    "load_or_make_signer",
    "load_verifier",
    "rotate_signing_key",
    "trusted_keys",
]
