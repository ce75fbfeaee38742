"""Kubernetes Secret -> TlsCredential: the certificates `credentialName` refers to.

Istio reads two layouts: `kubernetes.io/tls` (`tls.crt`, `tls.key`, optional `ca.crt`)
and its generic one (`cert`, `key`, `cacert`), either in `data` (base64) or `stringData`
(which wins, as the API server merges it). A Secret with a CA alone serves as the
``NAME-cacert`` half of a MUTUAL credential. Secrets without any of these keys (tokens,
registry credentials) are accepted and hold nothing for the mesh.

Validation names fields, never values: the PEM must parse and the key must match the
certificate. No message, log line or repr here ever carries key material.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshplane.api.core.credential import PemMaterial, TlsCredential
from meshplane.api.fields import Fields
from meshplane.api.meta import ObjectMeta

# (certificate, key, CA) key names, in Istio's order of preference.
_LAYOUTS = (("cert", "key", "cacert"), ("tls.crt", "tls.key", "ca.crt"))
_CA_KEYS = ("cacert", "ca.crt")


def secret(root: Fields, meta: ObjectMeta) -> TlsCredential:
    """Parse a core/v1 Secret as a TLS credential (empty when it holds none)."""
    root.keys(("apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"))
    kind = root.text("type") or "Opaque"
    values, from_plain = _decoded(root)
    cert_key, key_key = next(
        ((c, k) for c, k, _ in _LAYOUTS if c in values or k in values), ("", "")
    )
    ca_key = next((k for k in _CA_KEYS if k in values), "")
    if not cert_key and not ca_key:
        return TlsCredential(type=kind, has_certificate=False, has_ca=False)
    cert_pem, key_pem = values.get(cert_key, b""), values.get(key_key, b"")
    ca_pem = values.get(ca_key, b"")
    where = {
        k: root.at(f"{'stringData' if k in from_plain else 'data'}.{k}")
        for k in (cert_key, key_key, ca_key)
        if k
    }
    found = _check_certificate(root, cert_pem, key_pem, where, cert_key, key_key)
    if ca_pem and not _certificates(ca_pem):
        root.problems.error(where[ca_key], "is not a PEM certificate bundle")
    subject, serial, not_after = found if found else ("", "", "")
    return TlsCredential(
        type=kind,
        has_certificate=found is not None,
        has_ca=bool(ca_pem),
        subject=subject,
        serial=serial,
        not_after=not_after,
        material=PemMaterial(cert_pem if found else b"", key_pem if found else b"", ca_pem),
    )


def _decoded(root: Fields) -> tuple[dict[str, bytes], set[str]]:
    """`data` (base64) overlaid by `stringData`, and the keys that came from `stringData`;
    bad entries are reported and dropped."""
    values: dict[str, bytes] = {}
    data = root.obj("data")
    if data is not None:
        for key, raw in data.data.items():
            if not isinstance(raw, str):
                data.error(str(key), "must be a base64 string")
                continue
            try:
                values[str(key)] = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                data.error(str(key), "is not valid base64")
    plain = root.obj("stringData")
    from_plain: set[str] = set()
    if plain is not None:
        for key, raw in plain.data.items():
            if not isinstance(raw, str):
                plain.error(str(key), "must be a string")
                continue
            values[str(key)] = raw.encode()
            from_plain.add(str(key))
    return values, from_plain


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def _check_certificate(
    root: Fields,
    cert_pem: bytes,
    key_pem: bytes,
    where: dict[str, str],
    cert_key: str,
    key_key: str,
) -> tuple[str, str, str] | None:
    """(subject, serial, not_after) of a valid certificate + matching key, else None."""
    if not cert_key:
        return None
    if not cert_pem or not key_pem:
        missing = key_key if cert_pem else cert_key
        root.problems.error(root.at(f"data.{missing}"), "required with the certificate/key pair")
        return None
    chain = _certificates(cert_pem)
    if not chain:
        root.problems.error(where[cert_key], "is not a PEM certificate")
        return None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        root.problems.error(where[key_key], "is not an unencrypted PEM private key")
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if key.public_key().public_bytes(pem, spki) != chain[0].public_key().public_bytes(pem, spki):
        root.problems.error(where[key_key], "does not match the certificate's public key")
        return None
    leaf = chain[0]
    return (
        leaf.subject.rfc4514_string(),
        format(leaf.serial_number, "x"),
        (leaf.not_valid_after_utc.isoformat()),
    )
