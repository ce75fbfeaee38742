"""AuthorizationPolicy by peer identity between real Envoy sidecars over mutual TLS.

Three sidecars (INTERCEPTION_MODE NONE, on loopback), each joined to meshplane's TLS xDS
port with its own token, so SDS gives each its own SPIFFE certificate: the server `srv`
(demo/server) and two callers, `cli` (demo/client, listening on 127.0.0.1) and `intruder`
(other/intruder, listening on 127.0.0.2). Auto mTLS carries the callers' certificates to
the server sidecar, whose HTTP and network RBAC filters match `principals` and
`namespaces` against the peer certificate's URI SAN.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_harness import (
    ControlPlane,
    Envoy,
    client_first_upstream,
    free_port,
    http_get,
    upstream,
    wait_for,
)
from mesh_harness import write_atomically as write

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

HOST = "srv.demo.svc.cluster.local"
CLIENT = "127.0.0.1"  # where `cli` (demo/client) listens
INTRUDER = "127.0.0.2"  # where `intruder` (other/intruder) listens

MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: srv, namespace: demo}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {http_out}, name: http, protocol: HTTP, targetPort: {http_in}}}
  - {{number: {tcp_out}, name: tcp, protocol: TCP, targetPort: {tcp_in}}}
  workloadSelector: {{labels: {{app: srv}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: srv, namespace: demo}}
spec:
  address: 127.0.0.1
  serviceAccount: server
  labels: {{app: srv, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: srv, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: srv}}}}
  ingress:
  - port: {{number: {http_in}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{app}
  - port: {{number: {tcp_in}, name: tcp, protocol: TCP}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{tcp_app}
  egress: [{{hosts: ["~/*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: cli, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: cli}}}}
  egress:
  - port: {{number: {http_out}, name: http, protocol: HTTP}}
    bind: {client}
    hosts: ["demo/*"]
  - port: {{number: {tcp_out}, name: tcp, protocol: TCP}}
    bind: {client}
    hosts: ["demo/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: intruder, namespace: other}}
spec:
  workloadSelector: {{labels: {{app: intruder}}}}
  egress:
  - port: {{number: {http_out}, name: http, protocol: HTTP}}
    bind: {intruder}
    hosts: ["demo/*"]
  - port: {{number: {tcp_out}, name: tcp, protocol: TCP}}
    bind: {intruder}
    hosts: ["demo/*"]
"""

ALLOW_CLIENT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-client, namespace: demo}
spec:
  selector: {matchLabels: {app: srv}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]
"""

DENY_INTRUDER = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-intruder, namespace: demo}
spec:
  selector: {matchLabels: {app: srv}}
  action: DENY
  rules:
  - from: [{source: {principals: ["*/sa/intruder"]}}]
"""

BY_NAMESPACE = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-namespace, namespace: demo}
spec:
  selector: {matchLabels: {app: srv}}
  rules:
  - from: [{source: {namespaces: ["de*"]}}]
    to: [{operation: {paths: ["/mine*"]}}]
  - from: [{source: {notNamespaces: ["demo"]}}]
    to: [{operation: {paths: ["/theirs*"]}}]
  - from: [{source: {namespaces: ["other"]}}]
    to: [{operation: {ports: ["{tcp_in}"]}}]
"""


@dataclass
class Mesh:
    cp: ControlPlane
    config: Path
    http_out: int
    tcp_out: int
    tcp_in: int

    def get(self, caller: str, path: str = "/") -> int:
        return http_get(f"http://{caller}:{self.http_out}{path}", host=HOST, timeout=2.0)[0]

    def tcp(self, caller: str) -> str:
        """Send a line through `caller`'s TCP listener; the reply, or "" when closed."""
        try:
            with socket.create_connection((caller, self.tcp_out), timeout=2) as sock:
                sock.sendall(b"hello\n")
                chunks = []
                while chunk := sock.recv(4096):
                    chunks.append(chunk)
                return b"".join(chunks).decode(errors="replace")
        except OSError:
            return ""

    def policy(self, text: str) -> None:
        write(self.config / "policy.yaml", text)


def synced(cp: ControlPlane, proxy: Envoy) -> bool:
    rows = cp.json("/debug/syncz")
    assert isinstance(rows, list)
    for row in rows:
        if row["proxy"].startswith(proxy.id_prefix):
            types = row["types"]
            acked = all(types[t]["status"] == "SYNCED" for t in ("cds", "lds", "sds"))
            return acked and all(v["status"] in ("SYNCED", "NOT_SENT") for v in types.values())
    return False


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("authz-mtls")
    config, logdir = root / "config", root / "logs"
    config.mkdir()
    logdir.mkdir()
    ports = {"http_in": free_port(), "http_out": free_port()}
    ports |= {"tcp_in": free_port(), "tcp_out": free_port()}
    with contextlib.ExitStack() as stack:
        app = stack.enter_context(upstream("srv"))
        tcp_app = stack.enter_context(client_first_upstream("tcp-srv"))
        text = MESH.format(
            host=HOST, app=app, tcp_app=tcp_app, client=CLIENT, intruder=INTRUDER, **ports
        )
        (config / "mesh.yaml").write_text(text)
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        proxies = []
        for workload, ns, sa in (
            ("srv", "demo", "server"),
            ("cli", "demo", "client"),
            ("intruder", "other", "intruder"),
        ):
            proxy = Envoy(
                cp,
                logdir,
                kind="sidecar",
                workload=workload,
                namespace=ns,
                labels=f"app={workload}",
                service_account=sa,
                tls=True,
                extra=("--interception", "NONE"),
            )
            stack.callback(proxy.stop)
            proxies.append(proxy)
        for proxy in proxies:
            wait_for(f"{proxy.id_prefix} synced", lambda p=proxy: synced(cp, p))  # type: ignore[misc]
        result = Mesh(cp, config, ports["http_out"], ports["tcp_out"], ports["tcp_in"])
        for caller in (CLIENT, INTRUDER):
            wait_for(f"{caller} reaches srv", lambda c=caller: result.get(c) == 200)  # type: ignore[misc]
        assert result.tcp(CLIENT) == "tcp-srv" and result.tcp(INTRUDER) == "tcp-srv"
        assert cp.json("/debug/config_errors") == {"errors": [], "warnings": []}
        yield result
        for proxy in proxies:
            assert proxy.rejected() == 0, proxy.output()


def settles_to(mesh: Mesh, want: dict[tuple[str, str], int | str]) -> None:
    """Wait until every (caller, path) gets the wanted HTTP status, and every (caller,
    "tcp") the wanted TCP reply. Envoy moves to a new policy listener by listener, and
    connections its callers already pooled keep the old chain until drained, so only the
    whole table at once says the new policy is in force."""

    def observed() -> dict[tuple[str, str], int | str]:
        return {
            (caller, what): mesh.tcp(caller) if what == "tcp" else mesh.get(caller, what)
            for caller, what in want
        }

    try:
        wait_for("policy in force", lambda: observed() == want, timeout=20)
    except AssertionError:
        assert observed() == want
        raise


def test_allow_by_principal_admits_only_that_service_account(mesh: Mesh) -> None:
    mesh.policy(ALLOW_CLIENT)
    settles_to(
        mesh,
        {
            (CLIENT, "/any/path"): 200,
            (CLIENT, "tcp"): "tcp-srv",  # network RBAC admits the client's certificate
            (INTRUDER, "/any/path"): 403,
            (INTRUDER, "tcp"): "",  # and closes the intruder's connection
        },
    )


def test_deny_by_principal_pattern(mesh: Mesh) -> None:
    mesh.policy(DENY_INTRUDER)
    settles_to(
        mesh,
        {
            (CLIENT, "/"): 200,
            (CLIENT, "tcp"): "tcp-srv",
            (INTRUDER, "/"): 403,
            (INTRUDER, "tcp"): "",
        },
    )


def test_namespaces_and_not_namespaces_match_the_peer_identity(mesh: Mesh) -> None:
    mesh.policy(BY_NAMESPACE.replace("{tcp_in}", str(mesh.tcp_in)))
    settles_to(
        mesh,
        {
            (CLIENT, "/mine"): 200,  # demo matches "de*"
            (CLIENT, "/theirs"): 403,
            (INTRUDER, "/mine"): 403,
            (INTRUDER, "/theirs"): 200,  # other is not demo
            # TCP: only the port rule for `other` applies (paths make the others HTTP-only).
            (CLIENT, "tcp"): "",
            (INTRUDER, "tcp"): "tcp-srv",
        },
    )
