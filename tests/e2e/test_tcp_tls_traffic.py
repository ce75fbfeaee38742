"""VirtualService `tcp` and `tls` routes and TLS origination through a real Envoy sidecar
without traffic capture (INTERCEPTION_MODE NONE): its listeners bind 127.0.0.1 ports as
the Sidecar resource's egress entries say, and every upstream is a local process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_harness import (
    ControlPlane,
    NoneModeSidecar,
    free_port,
    http_get,
    tcp_read,
    tcp_upstream,
    tls_read,
    tls_upstream,
    wait_for,
    write_test_pki,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: [echo.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {main}, name: tcp-main, protocol: TCP}}
  - {{number: {alt}, name: tcp-alt, protocol: TCP}}
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp-main: {v1}, tcp-alt: {v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tcp-main: {v2}, tcp-alt: {v2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: demo}}
spec:
  host: echo.internal
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: [echo.internal]
  tcp:
  - match: [{{port: {alt}}}]
    route: [{{destination: {{host: echo.internal, subset: v2, port: {{number: {alt}}}}}}}]
  - route:
    - {{destination: {{host: echo.internal, subset: v1, port: {{number: {main}}}}}, weight: 80}}
    - {{destination: {{host: echo.internal, subset: v2, port: {{number: {main}}}}}, weight: 20}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-a, namespace: demo}}
spec:
  hosts: [a.tls.test]
  resolution: STATIC
  ports: [{{number: {tls}, name: tls, protocol: TLS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {tls_a}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-b, namespace: demo}}
spec:
  hosts: [b.tls.test]
  resolution: STATIC
  ports: [{{number: {tls}, name: tls, protocol: TLS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {tls_b}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: alias, namespace: demo}}
spec:
  hosts: [b.tls.test]
  tls:
  - match: [{{sniHosts: [alias.tls.test], port: {tls}}}]
    route: [{{destination: {{host: b.tls.test}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: demo}}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {http}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ext}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ext, namespace: demo}}
spec:
  host: ext.example.com
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: "{ca}", subjectAltNames: [ext.example.com]}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: demo}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
  egress:
  - port: {{number: {main}, name: tcp-main, protocol: TCP}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: [./echo.internal]
  - port: {{number: {alt}, name: tcp-alt, protocol: TCP}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: [./echo.internal]
  - port: {{number: {tls}, name: tls, protocol: TLS}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["./*.tls.test"]
  - port: {{number: {http}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: [./ext.example.com]
"""


@dataclass
class Mesh:
    ports: dict[str, int]
    ca: Path
    ext_snis: list[str]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("tcp-tls")
    config, logdir = root / "config", root / "logs"
    config.mkdir()
    logdir.mkdir()
    pki = write_test_pki(root, ["a.tls.test", "b.tls.test", "alias.tls.test", "ext.example.com"])
    listen = {n: free_port() for n in ("main", "alt", "tls", "http")}
    with ExitStack() as stack:
        v1 = stack.enter_context(tcp_upstream("v1"))
        v2 = stack.enter_context(tcp_upstream("v2"))
        tls_a, _ = stack.enter_context(tls_upstream("a", pki, http=False))
        tls_b, _ = stack.enter_context(tls_upstream("b", pki, http=False))
        ext, ext_snis = stack.enter_context(tls_upstream("ext", pki, http=True))
        text = CONFIG.format(
            v1=v1, v2=v2, tls_a=tls_a, tls_b=tls_b, ext=ext, ca=pki["ca"], **listen
        )
        (config / "mesh.yaml").write_text(text)
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = NoneModeSidecar(
            cp, logdir, workload="client", namespace="demo", labels="app=client"
        )
        stack.callback(envoy.stop)
        wait_for("the sidecar to be SYNCED", lambda: envoy.synced(cp))
        yield Mesh(listen, pki["ca"], ext_snis)
        assert envoy.rejected() == 0, envoy.output()


def test_tcp_route_weighted_split(mesh: Mesh) -> None:
    port = mesh.ports["main"]
    wait_for("TCP through the sidecar", lambda: tcp_read(port) in ("v1", "v2"))
    seen = Counter(tcp_read(port) for _ in range(300))
    assert set(seen) <= {"v1", "v2"}, seen
    assert 180 <= seen["v1"] <= 285, seen  # 80/20 configured: 60-95 % accepted
    assert seen["v2"] > 0, seen


def test_tcp_route_by_port(mesh: Mesh) -> None:
    port = mesh.ports["alt"]
    wait_for("TCP on the second port", lambda: tcp_read(port) == "v2")
    assert {tcp_read(port) for _ in range(20)} == {"v2"}


def test_tls_routes_by_sni(mesh: Mesh) -> None:
    port, ca = mesh.ports["tls"], mesh.ca
    wait_for("TLS by SNI", lambda: tls_read(port, "a.tls.test", ca, http=False) == "a")
    for _ in range(5):
        assert tls_read(port, "a.tls.test", ca, http=False) == "a"
        assert tls_read(port, "b.tls.test", ca, http=False) == "b"
        # The `tls` route: SNI alias.tls.test goes to b.tls.test's upstream.
        assert tls_read(port, "alias.tls.test", ca, http=False) == "b"
    # REGISTRY_ONLY: a name no service or route declares is not passed through.
    assert tls_read(port, "unknown.test", ca, http=False).startswith("error")


def test_tls_origination_from_plain_http(mesh: Mesh) -> None:
    url = f"http://127.0.0.1:{mesh.ports['http']}/"
    wait_for("origination", lambda: http_get(url, host="ext.example.com") == (200, "ext"))
    assert mesh.ext_snis and set(mesh.ext_snis) == {"ext.example.com"}
