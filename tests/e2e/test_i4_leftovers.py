"""Issue 4 leftovers with real Envoy: a root rotation driven by `meshplane ca rotate-root`
while two STRICT mTLS sidecars serve traffic, with no failed request, ending with every
certificate chaining to the new root; an Envoy bootstrapped with the old root still joins."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from mesh_harness import BIN, ControlPlane, Envoy, Proc, free_port, http_get, wait_for
from test_mtls_traffic import CONFIG, PA, synced, xfcc_app

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

MAX_REQUESTS = 4000  # the load loop's bound
SERVER_ID = "spiffe://cluster.local/ns/demo/sa/server"
CLIENT_ID = "spiffe://cluster.local/ns/demo/sa/client"

Mesh = tuple[ControlPlane, dict[str, Envoy], int, Path]

# One request per upstream connection and no retries: every request is a new mTLS
# handshake whose failure would reach the client (pooled connections and Envoy's default
# retry on connect-failure would hide a broken rotation).
FRESH_CONNECTIONS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: srv, namespace: demo}
spec:
  host: srv.demo.svc.cluster.local
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: srv, namespace: demo}
spec:
  hosts: [srv.demo.svc.cluster.local]
  http: [{route: [{destination: {host: srv.demo.svc.cluster.local}}], retries: {attempts: 0}}]
"""


@pytest.fixture
def strict_mesh(tmp_path: Path, logdir: Path) -> Iterator[Mesh]:
    inbound, outbound = free_port(), free_port()
    config = tmp_path / "config"
    config.mkdir()
    with contextlib.ExitStack() as stack, xfcc_app() as app:
        text = CONFIG.format(inbound=inbound, outbound=outbound, app=app)
        strict = PA.format(mode="STRICT")
        (config / "mesh.yaml").write_text("---\n".join((text, strict, FRESH_CONNECTIONS)))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        proxies: dict[str, Envoy] = {}
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
            proxies[workload] = proxy
        for proxy in proxies.values():
            wait_for(f"{proxy.id_prefix} synced", lambda p=proxy: synced(cp, p))  # type: ignore[misc]
        wait_for("a mesh request", lambda: mesh_get(outbound)[0] == 200)
        yield cp, proxies, outbound, logdir


def mesh_get(outbound: int) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{outbound}/", host="srv.demo.svc.cluster.local")


def active_secrets(proxy: Envoy) -> dict[str, Any]:
    """Envoy's own view of its SDS secrets (admin config_dump), by name."""
    status, body = http_get(
        f"http://127.0.0.1:{proxy.admin_port}/config_dump?resource=dynamic_active_secrets"
    )
    assert status == 200, body
    return {c["name"]: c["secret"] for c in json.loads(body).get("configs", [])}


def pems(data_source: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(base64.b64decode(data_source["inline_bytes"]))


def chains_to(proxy: Envoy, root: x509.Certificate) -> bool:
    """Envoy holds a workload certificate issued by `root` and trusts `root` alone."""
    secrets = active_secrets(proxy)
    if "default" not in secrets or "ROOTCA" not in secrets:
        return False
    leaf = pems(secrets["default"]["tls_certificate"]["certificate_chain"])[0]
    bundle = pems(secrets["ROOTCA"]["validation_context"]["trusted_ca"])
    try:
        leaf.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return bundle == [root]


def handshakes(proxy: Envoy) -> int:
    """TLS handshakes the proxy's listeners completed (the server side of mesh mTLS)."""
    stats = proxy.stats()
    return sum(
        int(v)
        for k, v in stats.items()
        if k.startswith("listener.") and k.endswith(".ssl.handshake")
    )


def rotate_root(cp: ControlPlane) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "meshplane"), "ca", "rotate-root", "--state-dir", str(cp.state_dir)]
    return subprocess.run(
        [*command, "--wait", "60"],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_root_rotation_under_strict_mtls_loses_no_request(strict_mesh: Mesh) -> None:
    cp, proxies, outbound, logdir = strict_mesh
    old_root = x509.load_pem_x509_certificate((cp.state_dir / "root-cert.pem").read_bytes())
    failures: list[tuple[int, str]] = []
    done = threading.Event()
    sent = 0

    def load() -> None:
        nonlocal sent
        while not done.is_set() and sent < MAX_REQUESTS:
            status, body = mesh_get(outbound)
            sent += 1
            if status != 200 or f"URI={CLIENT_ID}" not in body:
                failures.append((status, body[:200]))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        wait_for("requests before the rotation", lambda: sent > 20, timeout=20)
        handshakes_before = handshakes(proxies["srv"])
        done_rotation = rotate_root(cp)
        rotated_at = sent
        wait_for("requests after the rotation", lambda: sent > rotated_at + 20, timeout=20)
    finally:
        done.set()
        worker.join(timeout=10)
    assert done_rotation.returncode == 0, done_rotation.stdout + done_rotation.stderr
    assert failures == [], failures[:5]
    assert handshakes(proxies["srv"]) > handshakes_before + 20  # new handshakes throughout

    new_root = x509.load_pem_x509_certificate((cp.state_dir / "root-cert.pem").read_bytes())
    assert new_root != old_root
    for proxy in proxies.values():
        wait_for(f"{proxy.id_prefix} on the new root", lambda p=proxy: chains_to(p, new_root))  # type: ignore[misc]
        assert not chains_to(proxy, old_root)
    assert "root rotation done" in cp.output()

    # An Envoy restarted from its bootstrap (the old root inline) still verifies the TLS xDS
    # port through the bridge, gets its config and certificate, and serves mesh traffic.
    client = proxies["cli"]
    client.stop()
    boot = logdir / "cli.json"
    again = Proc(
        "cli-restarted",
        [str(BIN / "envoy"), "-c", str(boot), "--use-dynamic-base-id", "-l", "warning"],
        logdir,
    )
    try:
        wait_for("the restarted client synced", lambda: synced(cp, client), timeout=30)
        wait_for("a mesh request after restart", lambda: mesh_get(outbound)[0] == 200)
        assert chains_to(client, new_root)
    finally:
        again.stop()
