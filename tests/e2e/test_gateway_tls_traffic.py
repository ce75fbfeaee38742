"""Gateway TLS through a real Envoy gateway: HTTPS termination (SIMPLE, MUTUAL), SNI
passthrough to two TLS upstreams, httpsRedirect, and TLS origination to an external host
registered by a ServiceEntry. Every certificate comes from a CA made by the test."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_harness import (
    ControlPlane,
    Envoy,
    free_port,
    http_get,
    tls_read,
    tls_upstream,
    upstream,
    wait_for,
    write_test_pki,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

NAMES = ["secure.test", "mtls.test", "a.shop.test", "b.shop.test", "ext.example.com"]

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [web.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {web}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop-a, namespace: demo}}
spec:
  hosts: [a.internal]
  resolution: STATIC
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {shop_a}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop-b, namespace: demo}}
spec:
  hosts: [b.internal]
  resolution: STATIC
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {shop_b}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: demo}}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{https: {ext}}}}}]
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
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {simple}, name: https-simple, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [secure.test]
    tls: {{mode: SIMPLE, serverCertificate: "{cert}", privateKey: "{key}"}}
  - port: {{number: {mutual}, name: https-mutual, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [mtls.test]
    tls:
      mode: MUTUAL
      serverCertificate: "{cert}"
      privateKey: "{key}"
      caCertificates: "{ca}"
  - port: {{number: {passthrough}, name: tls-shop, protocol: TLS}}
    bind: 127.0.0.1
    hosts: ["*.shop.test"]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: {redirect}, name: http-redirect, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [secure.test]
    tls: {{httpsRedirect: true}}
  - port: {{number: {egress}, name: http-egress, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [ext.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [secure.test, mtls.test]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: web.internal, port: {{number: 8000}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: demo}}
spec:
  hosts: ["*.shop.test"]
  gateways: [gw]
  tls:
  - match: [{{sniHosts: [a.shop.test]}}]
    route: [{{destination: {{host: a.internal}}}}]
  - match: [{{sniHosts: [b.shop.test]}}]
    route: [{{destination: {{host: b.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ext, namespace: demo}}
spec:
  hosts: [ext.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: ext.example.com, port: {{number: 443}}}}
"""


@dataclass
class Mesh:
    ports: dict[str, int]
    pki: dict[str, Path]
    ext_snis: list[str]
    envoy: Envoy
    cp: ControlPlane


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("gateway-tls")
    config, logdir = root / "config", root / "logs"
    config.mkdir()
    logdir.mkdir()
    pki = write_test_pki(root, NAMES)
    gw_ports = {n: free_port() for n in ("simple", "mutual", "passthrough", "redirect", "egress")}
    with ExitStack() as stack:
        web = stack.enter_context(upstream("web"))
        shop_a, _ = stack.enter_context(tls_upstream("shop-a", pki, http=False))
        shop_b, _ = stack.enter_context(tls_upstream("shop-b", pki, http=False))
        ext, ext_snis = stack.enter_context(tls_upstream("ext", pki, http=True))
        (config / "mesh.yaml").write_text(
            CONFIG.format(
                web=web,
                shop_a=shop_a,
                shop_b=shop_b,
                ext=ext,
                ca=pki["ca"],
                cert=pki["server"],
                key=pki["server-key"],
                **gw_ports,
            )
        )
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = Envoy(
            cp,
            logdir,
            kind="router",
            workload="ingress",
            namespace="demo",
            labels="istio=ingressgateway",
        )
        stack.callback(envoy.stop)
        wait_for("the gateway to be SYNCED", lambda: envoy.synced(cp))
        yield Mesh(gw_ports, pki, ext_snis, envoy, cp)
        assert envoy.rejected() == 0, envoy.output()


def _body(response: str) -> str:
    return response.partition("\r\n\r\n")[2]


def test_https_simple_terminates_with_the_servers_certificate(mesh: Mesh) -> None:
    port = mesh.ports["simple"]

    def answer() -> str:
        return tls_read(port, "secure.test", mesh.pki["ca"], http=True)

    wait_for("HTTPS through the gateway", lambda: answer().startswith("HTTP/1.1 200"))
    assert _body(answer()) == "web"
    # A name the server does not list matches no filter chain: the handshake fails.
    assert tls_read(port, "other.test", mesh.pki["ca"], http=True).startswith("error")


def test_https_mutual_needs_a_client_certificate(mesh: Mesh) -> None:
    port, ca = mesh.ports["mutual"], mesh.pki["ca"]
    client = (mesh.pki["client"], mesh.pki["client-key"])

    def with_cert() -> str:
        return tls_read(port, "mtls.test", ca, http=True, client_cert=client)

    wait_for("mutual TLS through the gateway", lambda: with_cert().startswith("HTTP/1.1 200"))
    assert _body(with_cert()) == "web"
    refused = tls_read(port, "mtls.test", ca, http=True)
    assert not refused.startswith("HTTP/1.1 200"), refused


def test_passthrough_routes_by_sni_to_two_tls_upstreams(mesh: Mesh) -> None:
    port, ca = mesh.ports["passthrough"], mesh.pki["ca"]
    wait_for(
        "passthrough to shop-a",
        lambda: tls_read(port, "a.shop.test", ca, http=False) == "shop-a",
    )
    # The upstreams' own certificate reaches the client: the gateway did not terminate.
    for _ in range(5):
        assert tls_read(port, "a.shop.test", ca, http=False) == "shop-a"
        assert tls_read(port, "b.shop.test", ca, http=False) == "shop-b"


def test_https_redirect_answers_301(mesh: Mesh) -> None:
    port = mesh.ports["redirect"]

    def status() -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/page", headers={"Host": "secure.test"})
            resp = conn.getresponse()
            return resp.status, resp.getheader("location") or ""
        except OSError:
            return 0, ""
        finally:
            conn.close()

    wait_for("the redirect", lambda: status()[0] == 301)
    assert status() == (301, "https://secure.test/page")


def test_tls_origination_to_a_service_entry_host(mesh: Mesh) -> None:
    url = f"http://127.0.0.1:{mesh.ports['egress']}/"
    wait_for("origination", lambda: http_get(url, host="ext.example.com") == (200, "ext"))
    # The external server saw TLS with the ServiceEntry host as SNI.
    assert mesh.ext_snis and set(mesh.ext_snis) == {"ext.example.com"}
