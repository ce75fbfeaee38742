"""The CA's signing material under `--state-dir`: loaded if there, created on first start.

File names are Istio's plug-in CA ones, so a user who brings a CA (a root, or an
intermediate under their own root) drops the same four files Istio would take:
`ca-cert.pem` (the signing certificate), `ca-key.pem` (its key), `cert-chain.pem` (the
signing certificate up to the root) and `root-cert.pem` (the trust bundle: one or more
roots). Without them meshplane makes a self-signed root (ECDSA P-256 by default, 10 years)
and writes all four with mode 0600; later starts reuse them, so proxies keep trusting it.
After a root rotation a fifth file, `root-bridge.pem`, holds the current root cross-signed
by the earlier ones (ca/next_root.py), so proxies bootstrapped with an earlier root still
verify the TLS xDS port.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from meshplane.ca.keys import (
    PrivateKey,
    generate_key,
    load_key,
    private_pem,
    signature_hash,
    write_private,
)

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CA_KEY_USAGE",
    "CERT_CHAIN",
    "ROOT_BRIDGE",
    "ROOT_CERT",
    "ROOT_LIFETIME",
    "BadCaFiles",
    "CertificateAuthority",
    "certs_pem",
    "load_or_create",
    "self_signed_root",
]

log = logging.getLogger("meshplane.ca")

ROOT_CERT = "root-cert.pem"
CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
CERT_CHAIN = "cert-chain.pem"
ROOT_BRIDGE = "root-bridge.pem"
FILES = (ROOT_CERT, CA_CERT, CA_KEY, CERT_CHAIN)
ROOT_LIFETIME = datetime.timedelta(days=3650)
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate clock skew between machines
# What a CA certificate may do (RFC 5280 4.2.1.3): sign certificates and CRLs.
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class BadCaFiles(ValueError):
    """The state dir holds CA files that cannot be used together."""


@dataclass(frozen=True)
class CertificateAuthority:
    """What signs workload certificates, and what proxies must trust."""

    key: PrivateKey
    cert: x509.Certificate
    """The signing certificate (the root itself, or an intermediate)."""
    chain: tuple[x509.Certificate, ...]
    """`cert-chain.pem`: the signing certificate up to the root."""
    roots: tuple[x509.Certificate, ...]
    """`root-cert.pem`: every root a proxy should trust (two while a root rotates)."""
    bridge: tuple[x509.Certificate, ...] = ()
    """`root-bridge.pem`: the root cross-signed by earlier roots (empty until a rotation).
    Only the TLS xDS port sends it, for proxies whose bootstrap trusts an earlier root."""

    @property
    def root_pem(self) -> bytes:
        """The trust bundle (`ROOTCA`), PEM."""
        return certs_pem(self.roots)

    @property
    def issuing_chain(self) -> tuple[x509.Certificate, ...]:
        """Certificates a workload sends after its own: the chain without the trusted roots
        (a peer has those already)."""
        roots = set(self.roots)
        return tuple(c for c in self.chain if c not in roots)

    def trusting(self, extra: Sequence[x509.Certificate]) -> CertificateAuthority:
        """The same signer with `extra` roots added to the trust bundle (root rotation)."""
        roots = self.roots + tuple(r for r in extra if r not in self.roots)
        return dataclasses.replace(self, roots=roots)

    def save(self, state_dir: Path) -> None:
        """Write the four plug-in CA files (mode 0600)."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(state_dir / CA_KEY, private_pem(self.key))
        write_private(state_dir / CA_CERT, certs_pem([self.cert]))
        write_private(state_dir / CERT_CHAIN, certs_pem(self.chain))
        write_private(state_dir / ROOT_CERT, self.root_pem)
        bridge = state_dir / ROOT_BRIDGE
        if self.bridge:
            write_private(bridge, certs_pem(self.bridge))
        else:
            bridge.unlink(missing_ok=True)


def certs_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM of `certs`, in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def self_signed_root(
    trust_domain: str,
    key_type: str = "ecdsa",
    *,
    lifetime: datetime.timedelta = ROOT_LIFETIME,
    now: datetime.datetime | None = None,
    common_name: str = "meshplane root CA",
) -> CertificateAuthority:
    """A new self-signed root, named like Istio's (O = the trust domain)."""
    key = generate_key(key_type)
    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, signature_hash(key))
    )
    return CertificateAuthority(key, cert, (cert,), (cert,))


def load_or_create(
    state_dir: str | Path, trust_domain: str, key_type: str = "ecdsa"
) -> CertificateAuthority:
    """The CA in `state_dir`, or a new self-signed one written there if it has none."""
    directory = Path(state_dir)
    present = [name for name in FILES if (directory / name).exists()]
    if not present:
        ca = self_signed_root(trust_domain, key_type)
        ca.save(directory)
        log.info("created a self-signed root CA in %s", directory)
        return ca
    return load(directory)


def load(directory: Path) -> CertificateAuthority:
    """Read the plug-in CA files as they are (cert-chain.pem may be absent for a root)."""
    for name in (CA_CERT, CA_KEY, ROOT_CERT):
        if not (directory / name).exists():
            raise BadCaFiles(f"{directory / name} is missing: give all of {', '.join(FILES)}")
    key_path = directory / CA_KEY
    if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others: it should be mode 0600", key_path)
    key = load_key(key_path)
    cert = _one_cert(directory / CA_CERT)
    roots = tuple(x509.load_pem_x509_certificates((directory / ROOT_CERT).read_bytes()))
    chain_path = directory / CERT_CHAIN
    chain = (
        tuple(x509.load_pem_x509_certificates(chain_path.read_bytes()))
        if chain_path.exists()
        else (cert,)
    )
    if cert.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise BadCaFiles(f"{key_path} is not the key of {directory / CA_CERT}")
    if chain[0] != cert:
        raise BadCaFiles(f"{chain_path} must start with the certificate of {CA_CERT}")
    return CertificateAuthority(key, cert, chain, roots, _load_bridge(directory / ROOT_BRIDGE))


def _load_bridge(path: Path) -> tuple[x509.Certificate, ...]:
    """The cross-signed roots still valid (an expired one helps no proxy)."""
    if not path.exists():
        return ()
    now = datetime.datetime.now(datetime.UTC)
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    return tuple(c for c in certs if c.not_valid_after_utc > now)


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _one_cert(path: Path) -> x509.Certificate:
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    if len(certs) != 1:
        raise BadCaFiles(f"{path}: want exactly one certificate, found {len(certs)}")
    return certs[0]
