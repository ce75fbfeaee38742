"""Issue 3's remaining gateway modes through a real Envoy gateway: ISTIO_MUTUAL (the gateway
terminates with its own mesh certificate and admits only clients holding a certificate from
the mesh CA) and AUTO_PASSTHROUGH (Istio's SNI ``outbound_.PORT_.SUBSET_.HOST`` picks the
service and subset, the client's TLS goes through to the upstream untouched); TLS
origination without caCertificates verified against the system trust bundle."""

from __future__ import annotations

import base64
import datetime
import http.client
import socket
import ssl
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
    tls_upstream,
    upstream,
    wait_for,
    write_test_pki,
)

from meshplane.ca import root
from meshplane.ca.issuer import issue
from meshplane.ca.spiffe import SpiffeId

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

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
metadata: {{name: shop, namespace: demo}}
spec:
  hosts: [shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{tls: {shop_v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tls: {shop_v2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop, namespace: demo}}
spec:
  host: shop.internal
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: demo}}
spec:
  hosts: [verify.test, skip.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{https: {ext}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: verify, namespace: demo}}
spec:
  host: verify.test
  trafficPolicy: {{tls: {{mode: SIMPLE}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: skip, namespace: demo}}
spec:
  host: skip.test
  trafficPolicy: {{tls: {{mode: SIMPLE, insecureSkipVerify: true}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: partner, namespace: demo}}
spec:
  hosts: [partner.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  endpoints: [{{address: 127.0.0.1, ports: {{https: {ext}}}}}]
---
# Its Secret does not exist: the cluster must not stay warming forever.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: partner, namespace: demo}}
spec:
  host: partner.test
  trafficPolicy: {{tls: {{mode: MUTUAL, credentialName: partner-client}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ext, namespace: demo}}
spec:
  hosts: [verify.test, skip.test, partner.test]
  gateways: [gw]
  http:
  - match: [{{authority: {{exact: verify.test}}}}]
    route: [{{destination: {{host: verify.test, port: {{number: 443}}}}}}]
  - match: [{{authority: {{exact: partner.test}}}}]
    route: [{{destination: {{host: partner.test, port: {{number: 443}}}}}}]
  - route: [{{destination: {{host: skip.test, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {istio_mutual}, name: https-mesh, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: ["*"]
    tls: {{mode: ISTIO_MUTUAL}}
  - port: {{number: {auto}, name: tls-auto, protocol: TLS}}
    bind: 127.0.0.1
    hosts: ["*.internal"]
    tls: {{mode: AUTO_PASSTHROUGH}}
  - port: {{number: {egress}, name: http-egress, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [verify.test, skip.test, partner.test]
  - port: {{number: {apps}, name: http-apps, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [apps.test]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: apps, namespace: demo}}
spec:
  hosts: [apps.test]
  gateways: [gw]
  http:
  - match: [{{uri: {{exact: /bytes}}}}]
    directResponse: {{status: 200, body: {{bytes: "{body}"}}}}
  - match: [{{uri: {{exact: /same-port}}}}]
    redirect: {{uri: /moved, derivePort: FROM_REQUEST_PORT}}
  - match: [{{uri: {{exact: /default-port}}}}]
    redirect:
      {{uri: /moved, scheme: https, authority: apps.test, derivePort: FROM_PROTOCOL_DEFAULT}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [web.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: web.internal, port: {{number: 8000}}}}
"""


@dataclass
class Mesh:
    ports: dict[str, int]
    pki: dict[str, Path]
    shop_snis: tuple[list[str], list[str]]  # recorded by shop-v1, shop-v2 as they serve
    cp: ControlPlane
    client_cert: tuple[Path, Path]
    gateway: Envoy


def _client_certificate(cp: ControlPlane, directory: Path) -> tuple[Path, Path]:
    """A workload certificate for demo/client from the control plane's own CA."""
    made = issue(
        root.load(cp.state_dir),
        SpiffeId("cluster.local", "demo", "client"),
        datetime.timedelta(hours=1),
    )
    directory.mkdir()
    cert, key = directory / "chain.pem", directory / "key.pem"
    cert.write_bytes(made.chain_pem)
    key.write_bytes(made.key_pem)
    return cert, key


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    base = tmp_path_factory.mktemp("i3-leftovers")
    config, logdir = base / "config", base / "logs"
    config.mkdir()
    logdir.mkdir()
    pki = write_test_pki(base, ["shop.internal"])
    ports = {n: free_port() for n in ("istio_mutual", "auto", "egress", "apps")}
    with ExitStack() as stack:
        web = stack.enter_context(upstream("web"))
        shop_v1, snis_v1 = stack.enter_context(tls_upstream("shop-v1", pki, http=False))
        shop_v2, snis_v2 = stack.enter_context(tls_upstream("shop-v2", pki, http=False))
        ext, _ = stack.enter_context(tls_upstream("ext", pki, http=True))
        body = base64.b64encode(BYTES_BODY).decode()
        text = CONFIG.format(web=web, shop_v1=shop_v1, shop_v2=shop_v2, ext=ext, body=body, **ports)
        (config / "mesh.yaml").write_text(text)
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        gateway = Envoy(
            cp,
            logdir,
            kind="router",
            workload="ingress",
            namespace="demo",
            labels="istio=ingressgateway",
            service_account="ingress",
            tls=True,
        )
        stack.callback(gateway.stop)
        wait_for("the gateway to be SYNCED", lambda: gateway.synced(cp))
        client = _client_certificate(cp, base / "mesh-client")
        yield Mesh(ports, pki, (snis_v1, snis_v2), cp, client, gateway)
        assert gateway.rejected() == 0, gateway.output()


def _tls_exchange(
    port: int, sni: str, ca: Path, request: bytes, cert: tuple[Path, Path] | None = None
) -> str:
    """TLS to 127.0.0.1:`port` with `sni`, the peer checked against `ca` by chain only (mesh
    certificates carry a SPIFFE URI, no DNS name); sends `request`, returns what comes
    back or "error: ..."."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            if request:
                tls.sendall(request)
            chunks = []
            while chunk := tls.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except (OSError, ssl.SSLError) as exc:
        return f"error: {exc}"


BYTES_BODY = b"\x00\x01raw\xff"
GET = b"GET / HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n"


def test_istio_mutual_admits_a_mesh_client_and_refuses_others(mesh: Mesh) -> None:
    port, ca = mesh.ports["istio_mutual"], mesh.cp.state_dir / "root-cert.pem"

    def with_cert() -> str:
        return _tls_exchange(port, "web.example.com", ca, GET, mesh.client_cert)

    wait_for("mesh client through ISTIO_MUTUAL", lambda: with_cert().startswith("HTTP/1.1 200"))
    assert with_cert().endswith("\r\n\r\nweb")
    # No client certificate: the handshake (or the first read, with TLS 1.3) fails.
    refused = _tls_exchange(port, "web.example.com", ca, GET)
    assert not refused.startswith("HTTP/1.1"), refused
    # A certificate from another CA is refused too.
    other = (mesh.pki["client"], mesh.pki["client-key"])
    refused = _tls_exchange(port, "web.example.com", ca, GET, other)
    assert not refused.startswith("HTTP/1.1"), refused


def test_auto_passthrough_routes_istio_sni_to_the_named_subset(mesh: Mesh) -> None:
    port, ca = mesh.ports["auto"], mesh.pki["ca"]

    def read(sni: str) -> str:
        return _tls_exchange(port, sni, ca, b"")

    v1, v2 = "outbound_.443_.v1_.shop.internal", "outbound_.443_.v2_.shop.internal"
    wait_for("AUTO_PASSTHROUGH to v1", lambda: read(v1) == "shop-v1")
    for _ in range(5):
        assert read(v1) == "shop-v1"
        assert read(v2) == "shop-v2"
    # The service's own cluster name reaches both subsets.
    seen = {read("outbound_.443_._.shop.internal") for _ in range(20)}
    assert seen <= {"shop-v1", "shop-v2"} and seen, seen
    # The upstreams terminated the client's TLS themselves, SNI as the client sent it.
    assert v1 in mesh.shop_snis[0] and v2 in mesh.shop_snis[1], mesh.shop_snis
    # An SNI that names no cluster matches no filter chain: the connection is refused.
    assert read("outbound_.443_.v3_.shop.internal").startswith("error"), "v3 routed"


@pytest.mark.skipif(
    not Path("/etc/ssl/certs/ca-certificates.crt").is_file(), reason="no system trust bundle"
)
def test_origination_without_ca_verifies_against_the_system_bundle(mesh: Mesh) -> None:
    """The upstream's certificate comes from the test's own CA, which the system bundle
    does not trust: verified origination fails, insecureSkipVerify gets through."""
    url = f"http://127.0.0.1:{mesh.ports['egress']}/"
    wait_for("skip-verify origination", lambda: http_get(url, host="skip.test") == (200, "ext"))
    status, _ = http_get(url, host="verify.test")
    assert status == 503, status


def test_missing_client_credential_does_not_keep_the_cluster_warming(mesh: Mesh) -> None:
    """As in Istio: Envoy waits its initial-fetch timeout (15 s) for the Secret, then the
    cluster is active without it and refuses with 503; nothing else waited on it."""

    def warming() -> int:
        return int(mesh.gateway.stats().get("cluster_manager.warming_clusters", "-1"))

    wait_for("no cluster warming", lambda: warming() == 0, timeout=45)
    url = f"http://127.0.0.1:{mesh.ports['egress']}/"
    assert http_get(url, host="skip.test") == (200, "ext")
    status, _ = http_get(url, host="partner.test")
    assert status == 503, status


def _fetch(port: int, path: str) -> tuple[int, str, bytes]:
    """(status, Location, body) of GET `path` with Host apps.test; (0, "", b"") if down."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers={"Host": "apps.test"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("location") or "", resp.read()
    except OSError:
        return 0, "", b""
    finally:
        conn.close()


def test_direct_response_bytes_and_derived_redirect_ports(mesh: Mesh) -> None:
    port = mesh.ports["apps"]
    wait_for("the apps server", lambda: _fetch(port, "/bytes")[0] == 200)
    assert _fetch(port, "/bytes") == (200, "", BYTES_BODY)
    assert _fetch(port, "/same-port")[:2] == (301, f"http://apps.test:{port}/moved")
    assert _fetch(port, "/default-port")[:2] == (301, "https://apps.test/moved")
