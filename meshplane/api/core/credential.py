"""TlsCredential: a Kubernetes Secret read as a TLS credential (Istio's `credentialName`).

The certificate subject, serial and expiry are public and may be shown (`/debug/configz`,
logs); the PEM itself, above all the private key, sits in `PemMaterial`, whose `repr` and
`str` print nothing but "[redacted]", so a spec that reaches a log line, a dump or an
error message leaks nothing. Only the TLS xDS port reads `PemMaterial` (to build SDS
secrets for the proxies allowed to hold them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

REDACTED = "[redacted]"


class PemMaterial:
    """Certificate chain, private key and CA bundle as PEM bytes (any may be empty)."""

    __slots__ = ("ca_pem", "cert_pem", "key_pem")

    def __init__(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.ca_pem = ca_pem

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PemMaterial):
            return NotImplemented
        return (self.cert_pem, self.key_pem, self.ca_pem) == (
            other.cert_pem,
            other.key_pem,
            other.ca_pem,
        )

    def __hash__(self) -> int:
        return hash((self.cert_pem, self.key_pem, self.ca_pem))


@dataclass(frozen=True)
class TlsCredential:
    """What a Secret offers: a certificate with its key (`has_certificate`), a CA bundle
    (`has_ca`), or both. `subject`, `serial` and `not_after` describe the certificate."""

    type: str
    has_certificate: bool
    has_ca: bool
    subject: str = ""
    serial: str = ""
    not_after: str = ""
    material: PemMaterial = field(default_factory=lambda: PemMaterial(b"", b"", b""), repr=False)
