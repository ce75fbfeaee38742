"""Mutual TLS between two real Envoy sidecars (INTERCEPTION_MODE NONE, on loopback), each
connected to meshplane's TLS xDS port with its own join token, so SDS gives each its own
SPIFFE certificate: auto mTLS on the client, PeerAuthentication on the server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mesh_harness import ControlPlane, Envoy, free_port, http_get, wait_for, write_atomically

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

CLIENT_ID = "spiffe://cluster.local/ns/demo/sa/client"

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: srv, namespace: demo}}
spec:
  hosts: [srv.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {outbound}, name: http, protocol: HTTP, targetPort: {inbound}}}]
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
  - port: {{number: {inbound}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{app}
  egress: [{{hosts: ["~/*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: cli, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: cli}}}}
  egress:
  - port: {{number: {outbound}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: ["./*"]
"""

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: demo}}
spec:
  mtls: {{mode: {mode}}}
"""


@contextlib.contextmanager
def xfcc_app() -> Iterator[int]:
    """An HTTP app answering with the X-Forwarded-Client-Cert header it received."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (self.headers.get("x-forwarded-client-cert") or "-").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def synced(cp: ControlPlane, proxy: Envoy) -> bool:
    """Listeners, clusters and its secrets acknowledged; nothing STALE or NACKed (a sidecar
    with inline inbound routes and no EDS cluster is never sent RDS or EDS)."""
    rows = cp.json("/debug/syncz")
    assert isinstance(rows, list)
    for row in rows:
        if row["proxy"].startswith(proxy.id_prefix):
            types = row["types"]
            acked = all(types[t]["status"] == "SYNCED" for t in ("cds", "lds", "sds"))
            return acked and all(v["status"] in ("SYNCED", "NOT_SENT") for v in types.values())
    return False


def plaintext_get(port: int) -> int:
    """Status of a plaintext request straight to the server sidecar; 0 if refused/reset."""
    status, _ = http_get(f"http://127.0.0.1:{port}/", timeout=1.0)
    return status


@pytest.fixture
def mesh(tmp_path: Path, logdir: Path) -> Iterator[tuple[ControlPlane, int, int, Path]]:
    inbound, outbound = free_port(), free_port()
    config = tmp_path / "config"
    config.mkdir()
    with contextlib.ExitStack() as stack, xfcc_app() as app:
        text = CONFIG.format(inbound=inbound, outbound=outbound, app=app)
        (config / "mesh.yaml").write_text(text)
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        wait_for("control plane ready", lambda: cp.get("/ready")[0] == 200)
        proxies = []
        for workload, sa, labels in (("srv", "server", "app=srv"), ("cli", "client", "app=cli")):
            proxy = Envoy(
                cp,
                logdir,
                kind="sidecar",
                workload=workload,
                namespace="demo",
                labels=labels,
                service_account=sa,
                tls=True,
                extra=("--interception", "NONE"),
            )
            stack.callback(proxy.stop)
            proxies.append(proxy)
        for proxy in proxies:
            wait_for(f"{proxy.id_prefix} synced", lambda p=proxy: synced(cp, p))  # type: ignore[misc]
        yield cp, inbound, outbound, config


def mesh_get(outbound: int) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{outbound}/", host="srv.demo.svc.cluster.local")


def test_permissive_serves_both_and_app_sees_client_identity(
    mesh: tuple[ControlPlane, int, int, Path],
) -> None:
    _, inbound, outbound, _ = mesh
    wait_for("mesh request", lambda: mesh_get(outbound)[0] == 200)
    status, xfcc = mesh_get(outbound)
    assert status == 200 and f"URI={CLIENT_ID}" in xfcc, xfcc
    assert plaintext_get(inbound) == 200
    status, body = http_get(f"http://127.0.0.1:{inbound}/", timeout=1.0)
    assert body == "-"  # plaintext: no client identity to forward


def test_switch_to_strict_refuses_plaintext_and_loses_no_mesh_request(
    mesh: tuple[ControlPlane, int, int, Path],
) -> None:
    _, inbound, outbound, config = mesh
    wait_for("mesh request", lambda: mesh_get(outbound)[0] == 200)
    failures: list[tuple[int, str]] = []
    done = threading.Event()
    sent = 0

    def load() -> None:
        nonlocal sent
        while not done.is_set() and sent < 5000:  # bounded
            status, body = mesh_get(outbound)
            sent += 1
            if status != 200:
                failures.append((status, body))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        write_atomically(config / "pa.yaml", PA.format(mode="STRICT"))
        wait_for("plaintext refused", lambda: plaintext_get(inbound) == 0, timeout=20)
        wait_for("requests after the switch", lambda: sent > 50, timeout=20)
    finally:
        done.set()
        worker.join(timeout=10)
    assert failures == []
    status, xfcc = mesh_get(outbound)
    assert status == 200 and f"URI={CLIENT_ID}" in xfcc
    with socket.create_connection(("127.0.0.1", inbound), timeout=2) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert conn.recv(100) == b""  # closed: no filter chain for plaintext
