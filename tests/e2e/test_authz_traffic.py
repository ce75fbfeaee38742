"""AuthorizationPolicy and RequestAuthentication through a real Envoy sidecar without
traffic capture (INTERCEPTION_MODE NONE): its Sidecar `ingress` entries bind 127.0.0.1
ports in front of local upstreams, and requests from the test (source 127.0.0.1) meet the
jwt_authn and RBAC filters meshplane puts in those inbound listeners. Then the same policies
on an ingress gateway (a router proxy). Rules on peer identities (`principals`,
`namespaces`) need mTLS between sidecars: test_authz_mtls_traffic.py."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from mesh_harness import (
    ControlPlane,
    Envoy,
    NoneModeSidecar,
    client_first_upstream,
    free_port,
    upstream,
    wait_for,
    write_atomically,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

ISSUER = "https://issuer.test"

SIDECAR = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - port: {{number: {http}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{app}
  - port: {{number: {tcp}, protocol: TCP, name: tcp-a}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{tcp_app}
  - port: {{number: {tcp2}, protocol: TCP, name: tcp-b}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{tcp_app}
  egress:
  - hosts: ["./*"]
"""

POLICIES = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  jwtRules:
  - issuer: "{issuer}"
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  rules:
  - to: [{{operation: {{paths: ["/public*", "/admin*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["{issuer}/*"]}}}}]
    to: [{{operation: {{paths: ["/secure*"]}}}}]
  - from: [{{source: {{ipBlocks: ["127.0.0.1/32"]}}}}]
    to: [{{operation: {{paths: ["/local*"]}}}}]
  - from: [{{source: {{ipBlocks: ["10.0.0.0/8"]}}}}]
    to: [{{operation: {{paths: ["/ten*"]}}}}]
  - from: [{{source: {{namespaces: ["default"]}}}}]
    to: [{{operation: {{paths: ["/ns*"]}}}}]
  - from: [{{source: {{ipBlocks: ["127.0.0.1"]}}}}]
    to: [{{operation: {{ports: ["{tcp}", "{tcp2}"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny, namespace: default}}
spec:
  action: DENY
  rules:
  # On TCP chains the HTTP-only `paths` is ignored (a wider deny): the port keeps this
  # rule off the TCP ports.
  - to: [{{operation: {{ports: ["{http}"], paths: ["/admin*"]}}}}]
  - from: [{{source: {{ipBlocks: ["127.0.0.0/8"]}}}}]
    to: [{{operation: {{ports: ["{tcp2}"]}}}}]
"""

ALLOW_NOTHING = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    kid: str

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "kid": self.kid,
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        return json.dumps({"keys": [jwk]})

    def token(self, sub: str, issuer: str = ISSUER) -> str:
        """An ES256 JWT for `sub`, valid for an hour."""
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": issuer, "sub": sub, "exp": int(time.time()) + 3600}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def get(
    port: int, path: str, token: str | None = None, headers: dict[str, str] | None = None
) -> int:
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def tcp_exchange(port: int) -> str:
    """Send a line to 127.0.0.1:`port` and read the reply; "" when refused or closed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"hello\n")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Mesh:
    cp: ControlPlane
    config: Path
    http: int
    tcp: int
    tcp2: int
    signer: Signer


@pytest.fixture
def mesh(tmp_path: Path, logdir: Path) -> Iterator[Mesh]:
    signer = Signer(ec.generate_private_key(ec.SECP256R1()), "k1")
    config = tmp_path / "config"
    config.mkdir()
    with ExitStack() as stack:
        app = stack.enter_context(upstream("web"))
        tcp_app = stack.enter_context(client_first_upstream("tcp-web"))
        ports = {"http": free_port(), "tcp": free_port(), "tcp2": free_port()}
        (config / "sidecar.yaml").write_text(SIDECAR.format(app=app, tcp_app=tcp_app, **ports))
        policies = POLICIES.format(issuer=ISSUER, jwks=signer.jwks(), **ports)
        (config / "policies.yaml").write_text(policies)
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = NoneModeSidecar(cp, logdir, workload="web", namespace="default", labels="app=web")
        stack.callback(envoy.stop)
        wait_for("ingress listener serving", lambda: get(ports["http"], "/public") == 200)
        assert cp.json("/debug/config_errors") == {"errors": [], "warnings": []}
        yield Mesh(cp, config, signer=signer, **ports)
        assert envoy.rejected() == 0, envoy.output()


def test_deny_wins_over_allow_and_unlisted_paths_are_refused(mesh: Mesh) -> None:
    assert get(mesh.http, "/public/page") == 200
    assert get(mesh.http, "/admin/users") == 403  # allowed, but the DENY runs first
    assert get(mesh.http, "/elsewhere") == 403  # no ALLOW rule matches


def test_jwt_required_by_request_principals(mesh: Mesh) -> None:
    forger = Signer(ec.generate_private_key(ec.SECP256R1()), "k1")
    assert get(mesh.http, "/secure") == 403  # no token: passes jwt_authn, RBAC refuses
    assert get(mesh.http, "/secure", forger.token("alice")) == 401  # bad signature
    assert get(mesh.http, "/secure", mesh.signer.token("alice")) == 200
    # A valid token from an issuer the principal pattern does not name.
    other = mesh.signer.token("alice", issuer="https://other.test")
    assert get(mesh.http, "/secure", other) == 401  # no provider for that issuer
    # A path open to all still rejects an invalid token (Istio: invalid is never ignored).
    assert get(mesh.http, "/public", forger.token("alice")) == 401


def test_source_ip_and_namespace_rules(mesh: Mesh) -> None:
    assert get(mesh.http, "/local") == 200  # 127.0.0.1 is in 127.0.0.1/32
    assert get(mesh.http, "/ten") == 403  # not in 10.0.0.0/8
    assert get(mesh.http, "/ns") == 403  # plaintext: no peer principal, so no namespace


def test_tcp_rbac_by_source_ip_and_port(mesh: Mesh) -> None:
    assert tcp_exchange(mesh.tcp) == "tcp-web"  # ALLOW by ipBlocks and port
    assert tcp_exchange(mesh.tcp2) == ""  # the DENY on that port wins


def test_allow_without_rules_denies_everything(mesh: Mesh) -> None:
    write_atomically(mesh.config / "policies.yaml", ALLOW_NOTHING)
    wait_for("allow-nothing in force", lambda: get(mesh.http, "/public") == 403)
    assert get(mesh.http, "/") == 403
    assert tcp_exchange(mesh.tcp) == ""


GATEWAY = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec:
  ports: [{{name: http, port: 8000}}]
  selector: {{app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {app}}}
  labels: {{app: web}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
"""

GATEWAY_POLICIES = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
  # The gateway's remote address is its peer's: an X-Forwarded-For it was sent is not
  # trusted (no trusted proxies in front of it).
  - from: [{source: {remoteIpBlocks: ["10.0.0.0/8"]}}]
  - from: [{source: {remoteIpBlocks: ["127.0.0.1"]}}]
    to: [{operation: {paths: ["/from-local*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-gateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: demo-wide, namespace: demo}
spec:
  action: DENY
  rules: [{}]
"""


def test_policies_selecting_an_ingress_gateway(tmp_path: Path, logdir: Path) -> None:
    """DENY by path and by remote address at the gateway; policies for other labels or in
    another namespace leave it alone."""
    config = tmp_path / "config"
    config.mkdir()
    gw = free_port()
    with ExitStack() as stack:
        app = stack.enter_context(upstream("web"))
        (config / "mesh.yaml").write_text(GATEWAY.format(app=app, gw=gw))
        (config / "policies.yaml").write_text(GATEWAY_POLICIES)
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = Envoy(
            cp,
            logdir,
            kind="router",
            workload="ingress",
            namespace="istio-system",
            labels="istio=ingressgateway",
        )
        stack.callback(envoy.stop)
        wait_for("gateway serving", lambda: get(gw, "/page") == 200)
        assert cp.json("/debug/config_errors") == {"errors": [], "warnings": []}
        assert get(gw, "/admin/users") == 403
        assert get(gw, "/from-local/x") == 403
        spoofed = {"X-Forwarded-For": "10.1.2.3"}
        assert get(gw, "/page", headers=spoofed) == 200
        # Without the policies, the same requests pass.
        (config / "policies.yaml").unlink()
        wait_for("policies removed", lambda: get(gw, "/admin/users") == 200)
        assert get(gw, "/from-local/x") == 200
        assert envoy.rejected() == 0, envoy.output()
