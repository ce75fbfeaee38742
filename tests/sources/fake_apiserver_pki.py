"""Throwaway certificates for the fake API server: a CA, a server certificate valid for
127.0.0.1 and localhost (as kube-apiserver's is for its address), and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_pki(directory: Path) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate:
    ca.crt, server.crt/.key, client.crt/.key in `directory`."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(cn: str, key: Any, issuer: tuple[x509.Name, Any] | None, sans: list[Any]) -> Any:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer_name, signer = issuer or (subject, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def write(stem: str, crt: Any, key: Any) -> None:
        (directory / f"{stem}.crt").write_bytes(crt.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("fake kubernetes CA", ca_key, None, [])
    write("ca", ca, ca_key)
    server_sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    for stem, sans in (("server", server_sans), ("client", [])):
        key = ec.generate_private_key(ec.SECP256R1())
        write(stem, cert(stem, key, (ca.subject, ca_key), sans), key)
    return directory
