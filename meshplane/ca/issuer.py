"""Workload certificates: a fresh key and a certificate whose only name is a SPIFFE URI.

There is no node agent here to make a key and a CSR, so the CA makes both, and the key
travels to the proxy over SDS on the authenticated TLS port only. Certificates look like
Istio's: empty subject, one critical URI SAN, server and client auth, 24 h by default,
never outliving the certificate that signs them. The TLS xDS port's own certificate comes
from here too (DNS and IP SANs instead of a SPIFFE ID).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplane.ca.keys import generate_key, private_pem, signature_hash
from meshplane.ca.root import CertificateAuthority, certs_pem
from meshplane.ca.spiffe import SpiffeId

__all__ = ["DEFAULT_TTL", "WorkloadCert", "issue", "issue_server"]

DEFAULT_TTL = datetime.timedelta(hours=24)
_BACKDATE = datetime.timedelta(minutes=1)
"""Tolerate clock skew between peers; at most a tenth of the TTL, so that a short-lived
certificate's half life (when it is renewed) is still in the future when it is issued."""


@dataclass(frozen=True)
class WorkloadCert:
    """A certificate chain (leaf first) and its private key, both PEM."""

    chain_pem: bytes
    key_pem: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int

    def __repr__(self) -> str:
        # Never the key: a WorkloadCert may end up in a log line or a traceback.
        return f"WorkloadCert(serial={self.serial:x}, not_after={self.not_after.isoformat()})"

    @property
    def lifetime(self) -> datetime.timedelta:
        return self.not_after - self.not_before


def issue(
    ca: CertificateAuthority,
    spiffe_id: SpiffeId,
    ttl: datetime.timedelta = DEFAULT_TTL,
    key_type: str = "ecdsa",
    *,
    now: datetime.datetime | None = None,
) -> WorkloadCert:
    """A new key and a certificate for `spiffe_id` valid for `ttl` (URI SAN only)."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id.uri)])
    # Istio: an empty subject makes the SAN the certificate's only name, so it is critical.
    return _issue(ca, x509.Name([]), san, True, ttl, key_type, now)


def issue_server(
    ca: CertificateAuthority,
    names: Sequence[str],
    ttl: datetime.timedelta,
    key_type: str = "ecdsa",
    *,
    now: datetime.datetime | None = None,
) -> WorkloadCert:
    """A serving certificate for the TLS xDS port: each of `names` as an IP or DNS SAN; the
    chain ends with the CA's bridge (root-bridge.pem) when it has one."""
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]) if names else None
    made = _issue(
        ca,
        subject or x509.Name([]),
        x509.SubjectAlternativeName(entries),
        False,
        ttl,
        key_type,
        now,
    )
    if not ca.bridge:
        return made
    # After a root rotation: proxies bootstrapped with an earlier root still verify the
    # port through the current root cross-signed by theirs.
    return dataclasses.replace(made, chain_pem=made.chain_pem + certs_pem(ca.bridge))


def _issue(
    ca: CertificateAuthority,
    subject: x509.Name,
    san: x509.SubjectAlternativeName,
    san_critical: bool,
    ttl: datetime.timedelta,
    key_type: str,
    now: datetime.datetime | None,
) -> WorkloadCert:
    if ttl <= datetime.timedelta(0):
        raise ValueError(f"certificate TTL must be positive, not {ttl}")
    key = generate_key(key_type)
    backdate = min(_BACKDATE, ttl / 10)
    start = (now or datetime.datetime.now(datetime.UTC)) - backdate
    end = min(start + backdate + ttl, ca.cert.not_valid_after_utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(san, critical=san_critical)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_type == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.key, signature_hash(ca.key))
    )
    return WorkloadCert(
        chain_pem=certs_pem((cert, *ca.issuing_chain)),
        key_pem=private_pem(key),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
    )
