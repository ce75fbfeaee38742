"""Real Envoy accepts what the translators build for hand-made views covering every feature
(the golden cases do the same for views built from YAML)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meshplane.api.networking.destination_rule import (
    ClientTLS,
    ConnectionPool,
    ConsistentHash,
    HttpCookie,
    HttpSettings,
    LoadBalancer,
    OutlierDetection,
    PortTrafficPolicy,
    TcpKeepalive,
    TcpSettings,
    TrafficPolicy,
)
from meshplane.api.networking.sidecar import (
    IstioEgressListener,
    IstioIngressListener,
    SidecarPort,
    SidecarSpec,
)
from meshplane.api.networking.virtual_service import (
    Destination,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    StringMatch,
)
from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import InboundPort, ProxyView
from meshplane.translators import translate
from tests.fixtures import builders as b
from tests.golden.envoy_validate import validate
from tests.golden.harness import REPO_ROOT, canonical_json

pytestmark = pytest.mark.envoy

ENVOY = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
CERTS = "tests/fixtures/certs"
REVIEWS = b.fqdn("reviews")


def _services() -> list:  # type: ignore[type-arg]
    return [
        b.service("reviews", ports=[("http", 9080, "HTTP"), ("grpc", 7070, "GRPC")]),
        b.service("db", ports=[("tcp", 5432, "TCP")], addresses=("10.96.0.40",)),
        b.service("static", hostname="static.example.com", addresses=("240.0.0.1",)),
        b.service("dns", hostname="dns.example.com", resolution="DNS", addresses=()),
        b.service("rr", hostname="rr.example.com", resolution="DNS_ROUND_ROBIN", addresses=()),
        b.service(
            "none",
            hostname="*.wild.com",
            resolution="NONE",
            addresses=(),
            ports=[("https", 443, "TLS")],
        ),
    ]


def _rules() -> list:  # type: ignore[type-arg]
    pool = ConnectionPool(
        tcp=TcpSettings(
            max_connections=100,
            connect_timeout=1.0,
            tcp_keepalive=TcpKeepalive(probes=3, time=60, interval=10),
            max_connection_duration=600,
        ),
        http=HttpSettings(
            http1_max_pending_requests=10,
            http2_max_requests=100,
            max_requests_per_connection=5,
            max_retries=3,
            idle_timeout=60,
            h2_upgrade_policy="UPGRADE",
            max_concurrent_streams=50,
        ),
    )
    outlier = OutlierDetection(
        consecutive_errors=5,
        consecutive_5xx_errors=3,
        interval=10,
        base_ejection_time=30,
        max_ejection_percent=50,
        split_external_local_origin_errors=True,
        consecutive_local_origin_failures=2,
        min_health_percent=20,
    )
    cookie = LoadBalancer(consistent_hash=ConsistentHash(http_cookie=HttpCookie("s", "/", 60)))
    reviews = TrafficPolicy(
        load_balancer=LoadBalancer(consistent_hash=ConsistentHash(use_source_ip=True)),
        connection_pool=pool,
        outlier_detection=outlier,
        port_level_settings=(
            PortTrafficPolicy(
                port=7070,
                load_balancer=LoadBalancer(
                    consistent_hash=ConsistentHash(http_header_name="x-id", maglev=True)
                ),
            ),
        ),
    )
    mutual = ClientTLS(
        "MUTUAL",
        client_certificate=f"{CERTS}/cert-chain.pem",
        private_key=f"{CERTS}/key.pem",
        ca_certificates=f"{CERTS}/root-cert.pem",
        subject_alt_names=("dns.example.com",),
    )
    return [
        b.destination_rule(
            REVIEWS,
            {"v1": {"version": "v1"}, "v2": {"version": "v2"}},
            reviews,
            {"v2": TrafficPolicy(load_balancer=cookie)},
        ),
        b.destination_rule("dns.example.com", policy=TrafficPolicy(tls=mutual)),
        b.destination_rule(
            "rr.example.com",
            policy=TrafficPolicy(
                tls=ClientTLS("SIMPLE", ca_certificates=f"{CERTS}/root-cert.pem", sni="rr")
            ),
        ),
        b.destination_rule(
            "static.example.com",
            policy=TrafficPolicy(load_balancer=LoadBalancer(simple="PASSTHROUGH")),
        ),
    ]


def _virtual_services() -> list:  # type: ignore[type-arg]
    http = (
        HTTPRoute(
            name="m",
            match=(
                HTTPMatchRequest(
                    uri=StringMatch(prefix="/api"),
                    ignore_uri_case=True,
                    method=StringMatch(exact="GET"),
                    headers={"x-a": StringMatch(), "x-b": StringMatch(regex="b.*")},
                    without_headers={"x-c": StringMatch(prefix="c")},
                    query_params={"q": StringMatch(exact="1")},
                ),
            ),
            route=(
                HTTPRouteDestination(Destination("reviews", "v1"), 30),
                HTTPRouteDestination(Destination("reviews", "v2"), 70),
            ),
            timeout=2,
            retries=HTTPRetry(attempts=1, per_try_timeout=0.5, retry_on="5xx,429"),
        ),
        HTTPRoute(
            match=(HTTPMatchRequest(uri=StringMatch(exact="/old")),),
            redirect=HTTPRedirect(uri="/new", redirect_code=302),
        ),
        HTTPRoute(
            route=(HTTPRouteDestination(Destination("reviews", None, 9080)),),
            retries=HTTPRetry(attempts=0),
        ),
    )
    return [b.virtual_service(["reviews"], http, gateways=["mesh", "gw"])]


def _sidecar(policy: str) -> ProxyView:
    endpoints = [
        b.endpoint(_services()[0], "10.1.0.1", labels={"version": "v1"}, locality="r/z/s"),
        b.endpoint(_services()[3], "a.dns.example.com", 80, weight=3),
        b.endpoint(_services()[3], "b.dns.example.com", 80),
    ]
    return b.view(
        _services(),
        endpoints,
        _rules(),
        _virtual_services(),
        inbound=[
            InboundPort(9080, "HTTP", 9080),
            InboundPort(7070, "GRPC", 7070),
            InboundPort(5432, "TCP", 5432),
        ],
        mesh=MeshConfig(outbound_traffic_policy=policy),
    )


def _none_mode() -> ProxyView:
    spec = SidecarSpec(
        ingress=(
            IstioIngressListener(
                SidecarPort(9080, "HTTP", "http"), default_endpoint="127.0.0.1:19080"
            ),
            IstioIngressListener(
                SidecarPort(5432, "TCP", "tcp"),
                bind="127.0.0.3",
                default_endpoint="unix:///tmp/db.sock",
            ),
        ),
        egress=(
            IstioEgressListener(
                ("./reviews.default.svc.cluster.local",), SidecarPort(9080, "HTTP", "http")
            ),
            IstioEgressListener(("*/*",)),
        ),
    )
    return b.view(
        _services(),
        (),
        _rules(),
        _virtual_services(),
        sidecar=b.sidecar(spec),
        interception_mode="NONE",
    )


def _router() -> ProxyView:
    gw = b.gateway([(8080, "HTTP", ["*"]), (8081, "HTTP2", ["shop.example.com"])])
    shop = b.virtual_service(
        ["shop.example.com", "*"],
        [b.weighted_route("reviews", {"v1": 100})],
        gateways=["gw"],
        name="shop",
    )
    return b.view(
        _services(), (), _rules(), [*_virtual_services(), shop], gateways=[gw], proxy_type="router"
    )


VIEWS: dict[str, Callable[[], ProxyView]] = {
    "sidecar-allow-any": lambda: _sidecar("ALLOW_ANY"),
    "sidecar-registry-only": lambda: _sidecar("REGISTRY_ONLY"),
    "capture-none": _none_mode,
    "router": _router,
}


@pytest.mark.skipif(ENVOY is None, reason="envoy binary not found")
@pytest.mark.parametrize("name", list(VIEWS))
def test_envoy_accepts_translation(name: str, tmp_path: Path) -> None:
    path = tmp_path / name / "proxy.json"
    path.parent.mkdir()
    path.write_text(canonical_json(translate(VIEWS[name]())))
    node = "sidecar~10.0.0.1~test.default~default.svc.cluster.local"
    assert validate(str(ENVOY), path, node, tmp_path, REPO_ROOT) is None
