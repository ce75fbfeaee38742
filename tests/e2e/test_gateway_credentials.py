"""Gateway `credentialName` through a real Envoy gateway on the TLS xDS port.

The gateway terminates HTTPS with the certificate of a Secret YAML file (served as SDS
``kubernetes://NAME`` to the router of the Secret's namespace). Replacing the file with a
new certificate changes what new handshakes see while the listener stays as it is (an SDS
update, no listener drain). A second server on the same port names a Secret that does not
exist yet: it is left out rather than keeping the whole port warming, and comes up when
its Secret file appears. Every certificate comes from a CA made by the test.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mesh_harness import BIN, ControlPlane, Envoy, free_port, upstream, wait_for, write_atomically

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

NAMESPACE = "edge"

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: edge}}
spec:
  hosts: [web.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {web}}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: edge}}
spec:
  selector: {{app: gw}}
  servers:
  - port: {{number: {port}, name: https-secure, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [secure.test]
    tls: {{mode: SIMPLE, credentialName: secure-cred}}
  - port: {{number: {port}, name: https-late, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [late.test]
    tls: {{mode: SIMPLE, credentialName: late-cred}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: edge}}
spec:
  hosts: [secure.test, late.test]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: web.internal, port: {{number: 8000}}}}
"""


class CertAuthority:
    """A throwaway CA issuing server certificates (each with a fresh serial)."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "credential test CA")])
        self.cert = self._builder(self.name, self.key.public_key(), ca=True).sign(
            self.key, hashes.SHA256()
        )
        self.pem_path = directory / "ca.pem"
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(
        self, subject: x509.Name, public: ec.EllipticCurvePublicKey, *, ca: bool
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )

    def secret(self, name: str, host: str) -> tuple[str, int]:
        """A kubernetes.io/tls Secret YAML in the gateway's namespace with a new certificate
        for `host`, and that certificate's serial."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        cert = (
            self._builder(subject, key.public_key(), ca=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        lines = [
            "apiVersion: v1",
            "kind: Secret",
            f"metadata: {{name: {name}, namespace: {NAMESPACE}}}",
            "type: kubernetes.io/tls",
            "stringData:",
            "  tls.crt: |",
            *(f"    {line}" for line in cert_pem.splitlines()),
            "  tls.key: |",
            *(f"    {line}" for line in key_pem.splitlines()),
        ]
        return "\n".join(lines) + "\n", cert.serial_number


@dataclass
class Handshake:
    serial: int | None  # the serial of the certificate the gateway presented
    response: str  # what it answered to a GET, or "error: ..."


def https_get(port: int, sni: str, ca: Path) -> Handshake:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            serial = x509.load_der_x509_certificate(der).serial_number if der else None
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := tls.recv(4096):
                chunks.append(chunk)
            return Handshake(serial, b"".join(chunks).decode(errors="replace"))
    except (OSError, ssl.SSLError) as exc:
        return Handshake(None, f"error: {exc}")


def served(port: int, sni: str, ca: Path, serial: int) -> bool:
    got = https_get(port, sni, ca)
    return got.serial == serial and got.response.startswith("HTTP/1.1 200")


@dataclass
class Gateway:
    port: int
    config: Path
    ca: CertAuthority
    envoy: Envoy
    cp: ControlPlane

    def stat(self, name: str) -> int:
        return int(self.envoy.stats().get(name, "-1"))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    config, logdir = tmp_path / "config", tmp_path / "logs"
    config.mkdir()
    logdir.mkdir()
    ca, port = CertAuthority(tmp_path), free_port()
    with ExitStack() as stack:
        web = stack.enter_context(upstream("web"))
        (config / "mesh.yaml").write_text(CONFIG.format(web=web, port=port))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = Envoy(
            cp,
            logdir,
            kind="router",
            workload="gw",
            namespace=NAMESPACE,
            labels="app=gw",
            service_account="gw",
            tls=True,
        )
        stack.callback(envoy.stop)
        yield Gateway(port, config, ca, envoy, cp)
        assert envoy.rejected() == 0, envoy.output()
        assert envoy.p.poll() is None, envoy.output()


def test_secret_rotation_and_missing_secret(gateway: Gateway) -> None:
    gw, ca = gateway, gateway.ca.pem_path
    secret_file = gw.config / "secure-cred.yaml"
    text, first = gw.ca.secret("secure-cred", "secure.test")
    write_atomically(secret_file, text)

    # The server with a Secret is served although its neighbour's Secret is missing.
    wait_for(
        "HTTPS with the Secret's certificate", lambda: served(gw.port, "secure.test", ca, first)
    )
    assert https_get(gw.port, "secure.test", ca).response.endswith("web")
    assert https_get(gw.port, "late.test", ca).serial is None
    assert gw.stat("listener_manager.total_listeners_warming") == 0
    analyzed = subprocess.run(
        [str(BIN / "meshplane"), "analyze", str(gw.config)], capture_output=True, text=True
    )
    assert "no Secret late-cred" in analyzed.stdout + analyzed.stderr
    modified = gw.stat("listener_manager.listener_modified")
    assert modified >= 0

    # A new certificate in the same file: new handshakes see it, the listener is untouched.
    text, second = gw.ca.secret("secure-cred", "secure.test")
    write_atomically(secret_file, text)
    wait_for("the rotated certificate", lambda: served(gw.port, "secure.test", ca, second))
    assert gw.stat("listener_manager.listener_modified") == modified
    assert gw.stat("listener_manager.total_listeners_draining") == 0

    # The missing Secret appears: its server comes up, the other keeps its certificate.
    text, late = gw.ca.secret("late-cred", "late.test")
    write_atomically(gw.config / "late-cred.yaml", text)
    wait_for("the late server", lambda: served(gw.port, "late.test", ca, late))
    assert served(gw.port, "secure.test", ca, second)
    assert gw.stat("listener_manager.total_listeners_warming") == 0
