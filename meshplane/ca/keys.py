"""Private keys the CA makes and stores: ECDSA P-256 by default, RSA 2048 on request.

Shared by the root, the workload issuer and the token signer so the key types and the
0600 file writes are decided in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "KEY_TYPES",
    "PrivateKey",
    "generate_key",
    "load_key",
    "private_pem",
    "signature_hash",
    "write_private",
]

KEY_TYPES = ("ecdsa", "rsa")
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_RSA_BITS = 2048  # Istio's default for workload and self-signed root keys


def generate_key(key_type: str = "ecdsa") -> PrivateKey:
    """A fresh key: `ecdsa` (P-256) or `rsa` (2048 bits)."""
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    raise ValueError(f"key type {key_type!r}: want one of {KEY_TYPES}")


def private_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (Envoy and Istio's plug-in CA read it this way)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(path: Path) -> PrivateKey:
    """Read a PEM private key that the CA can sign with (ECDSA or RSA)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: want an ECDSA or RSA private key")
    return key


def signature_hash(key: PrivateKey) -> hashes.SHA256:
    """The digest to sign with; SHA-256 for both key types, as Istio does."""
    del key
    return hashes.SHA256()


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the first byte, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover tmp file with a wider mode is narrowed too
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
