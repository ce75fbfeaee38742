"""Sidecar listeners (REDIRECT and captureMode NONE) and gateway listeners."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2 import TcpProxy

from meshplane.api.networking.sidecar import (
    IstioEgressListener,
    IstioIngressListener,
    SidecarPort,
    SidecarSpec,
)
from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import InboundPort
from meshplane.translators import translate
from tests.fixtures import builders as b
from tests.fixtures.consistency import consistency_problems


def _hcm(listener: Listener, chain: int = 0) -> HttpConnectionManager:
    hcm = HttpConnectionManager()
    assert listener.filter_chains[chain].filters[0].typed_config.Unpack(hcm)
    return hcm


def _tcp_cluster(chain_filter_any: object) -> str:
    proxy = TcpProxy()
    assert chain_filter_any.Unpack(proxy)  # type: ignore[attr-defined]
    return proxy.cluster


@pytest.mark.parametrize(
    ("policy", "catch_all"),
    [("ALLOW_ANY", "PassthroughCluster"), ("REGISTRY_ONLY", "BlackHoleCluster")],
)
def test_virtual_outbound(policy: str, catch_all: str) -> None:
    res = translate(
        b.view(services=[b.service("reviews")], mesh=MeshConfig(outbound_traffic_policy=policy))
    )
    outbound = res.listeners["virtualOutbound"]
    assert outbound.address.socket_address.port_value == 15001
    assert outbound.use_original_dst.value
    assert _tcp_cluster(outbound.default_filter_chain.filters[0].typed_config) == catch_all
    catch_all_host = res.routes["9080"].virtual_hosts[-1]
    assert catch_all_host.name == ("allow_any" if policy == "ALLOW_ANY" else "block_all")


def test_outbound_http_and_tcp_listeners() -> None:
    services = [
        b.service("reviews"),
        b.service("mysql", ports=[("tcp", 3306, "TCP")], addresses=("10.96.0.20",)),
        b.service("redis", ports=[("tcp", 6379, "TCP")], addresses=()),
    ]
    res = translate(b.view(services=services))
    http = res.listeners["0.0.0.0_9080"]
    assert http.bind_to_port.value is False and http.HasField("bind_to_port")
    assert _hcm(http).rds.route_config_name == "9080"
    mysql = res.listeners["10.96.0.20_3306"]
    assert _tcp_cluster(mysql.filter_chains[0].filters[0].typed_config) == (
        f"outbound|3306||{b.fqdn('mysql')}"
    )
    assert "0.0.0.0_6379" in res.listeners
    assert consistency_problems(res) == []


def test_virtual_inbound_chains_per_port() -> None:
    inbound = [InboundPort(9080, "HTTP", 9080), InboundPort(5432, "TCP", 5432)]
    res = translate(b.view(services=[b.service("reviews")], inbound=inbound))
    listener = res.listeners["virtualInbound"]
    assert listener.address.socket_address.port_value == 15006
    ports = [c.filter_chain_match.destination_port.value for c in listener.filter_chains]
    assert ports == [15006, 5432, 9080]
    route = _hcm(listener, 2).route_config.virtual_hosts[0].routes[0]
    assert route.route.cluster == "inbound|9080||"
    assert res.clusters["inbound|9080||"].upstream_bind_config.source_address.address == "127.0.0.6"
    assert "InboundPassthroughCluster" in res.clusters


def test_capture_none_listeners_from_sidecar() -> None:
    spec = SidecarSpec(
        ingress=(
            IstioIngressListener(
                port=SidecarPort(9080, "HTTP", "http"), default_endpoint="127.0.0.1:19080"
            ),
        ),
        egress=(
            IstioEgressListener(hosts=("./*",), port=SidecarPort(9080, "HTTP", "http")),
            IstioEgressListener(hosts=("*/*",), bind="127.0.0.2"),
        ),
    )
    services = [b.service("reviews"), b.service("db", ports=[("tcp", 5432, "TCP")])]
    view = b.view(services=services, sidecar=b.sidecar(spec), interception_mode="NONE")
    res = translate(view)
    assert sorted(res.listeners) == [
        "0.0.0.0_9080",
        "127.0.0.1_9080",
        "127.0.0.2_5432",
        "127.0.0.2_9080",
    ]
    assert "virtualOutbound" not in res.listeners
    egress = res.listeners["127.0.0.1_9080"]
    assert not egress.HasField("bind_to_port")  # binds: a real listener
    assert _hcm(egress).rds.route_config_name == "127.0.0.1:9080"
    ingress_cluster = res.clusters["inbound|9080||"]
    address = ingress_cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "127.0.0.1",
        19080,
    )
    assert consistency_problems(res) == []


def test_router_gets_gateway_listeners_only() -> None:
    gw = b.gateway([(8080, "HTTP", ["*"]), (8443, "HTTPS", ["*"])])
    vs = b.virtual_service(["*"], [b.weighted_route("reviews", {"": 100})], gateways=["gw"])
    view = b.view(
        services=[b.service("reviews")], gateways=[gw], virtual_services=[vs], proxy_type="router"
    )
    res = translate(view)
    assert list(res.listeners) == ["0.0.0.0_8080"]  # HTTPS waits for the TLS issue
    hcm = _hcm(res.listeners["0.0.0.0_8080"])
    assert hcm.rds.route_config_name == "http.8080"
    assert hcm.use_remote_address.value
    assert list(res.routes) == ["http.8080"]
    assert consistency_problems(res) == []
