"""Clusters and ClusterLoadAssignments from hand-built views."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import UpstreamTlsContext
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions

from meshplane.api.networking.destination_rule import (
    ClientTLS,
    ConnectionPool,
    ConsistentHash,
    HttpSettings,
    LoadBalancer,
    OutlierDetection,
    PortTrafficPolicy,
    TcpSettings,
    TrafficPolicy,
)
from meshplane.model.mesh import MeshConfig
from meshplane.translators import translate
from meshplane.translators.cluster_policy import HTTP_PROTOCOL_OPTIONS_KEY
from meshplane.translators.endpoints import cluster_load_assignments
from tests.fixtures import builders as b

REVIEWS = b.fqdn("reviews")


def _clusters(**kwargs: object) -> dict[str, Cluster]:
    return dict(translate(b.view(**kwargs)).clusters)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("resolution", "discovery"),
    [
        ("STATIC", Cluster.EDS),
        ("DNS", Cluster.STRICT_DNS),
        ("DNS_ROUND_ROBIN", Cluster.LOGICAL_DNS),
        ("NONE", Cluster.ORIGINAL_DST),
    ],
)
def test_discovery_type_follows_resolution(resolution: str, discovery: int) -> None:
    svc = b.service("ext", hostname="api.example.com", resolution=resolution, addresses=())
    cluster = _clusters(services=[svc])["outbound|9080||api.example.com"]
    assert cluster.type == discovery
    if discovery == Cluster.EDS:
        assert cluster.eds_cluster_config.eds_config.HasField("ads")
        assert cluster.eds_cluster_config.service_name == cluster.name
    if discovery == Cluster.ORIGINAL_DST:
        assert cluster.lb_policy == Cluster.CLUSTER_PROVIDED
    if discovery in (Cluster.STRICT_DNS, Cluster.LOGICAL_DNS):
        # No endpoints declared: the host itself is resolved.
        lb = cluster.load_assignment.endpoints[0].lb_endpoints[0]
        assert lb.endpoint.address.socket_address.address == "api.example.com"


def test_fixed_clusters_and_connect_timeout_from_mesh() -> None:
    clusters = _clusters(services=[b.service("reviews")], mesh=MeshConfig(connect_timeout=2.5))
    assert clusters["BlackHoleCluster"].type == Cluster.STATIC
    assert not clusters["BlackHoleCluster"].HasField("load_assignment")
    assert clusters["PassthroughCluster"].type == Cluster.ORIGINAL_DST
    assert clusters["PassthroughCluster"].lb_policy == Cluster.CLUSTER_PROVIDED
    assert clusters[f"outbound|9080||{REVIEWS}"].connect_timeout.ToMilliseconds() == 2500
    assert clusters[f"outbound|9080||{REVIEWS}"].lb_policy == Cluster.LEAST_REQUEST


def test_subset_clusters_and_subset_policy_overrides_top_level() -> None:
    rule = b.destination_rule(
        REVIEWS,
        {"v1": {"version": "v1"}, "v2": {"version": "v2"}},
        policy=TrafficPolicy(load_balancer=LoadBalancer(simple="RANDOM")),
        subset_policies={"v2": TrafficPolicy(load_balancer=LoadBalancer(simple="ROUND_ROBIN"))},
    )
    clusters = _clusters(services=[b.service("reviews")], destination_rules=[rule])
    assert clusters[f"outbound|9080||{REVIEWS}"].lb_policy == Cluster.RANDOM
    assert clusters[f"outbound|9080|v1|{REVIEWS}"].lb_policy == Cluster.RANDOM
    assert clusters[f"outbound|9080|v2|{REVIEWS}"].lb_policy == Cluster.ROUND_ROBIN


def test_port_level_settings_replace_whole_policy() -> None:
    svc = b.service("reviews", ports=[("http", 9080, "HTTP"), ("http-admin", 9090, "HTTP")])
    policy = TrafficPolicy(
        load_balancer=LoadBalancer(simple="RANDOM"),
        outlier_detection=OutlierDetection(consecutive_5xx_errors=3),
        port_level_settings=(
            PortTrafficPolicy(port=9090, load_balancer=LoadBalancer(simple="ROUND_ROBIN")),
        ),
    )
    clusters = _clusters(
        services=[svc], destination_rules=[b.destination_rule(REVIEWS, policy=policy)]
    )
    main, admin = clusters[f"outbound|9080||{REVIEWS}"], clusters[f"outbound|9090||{REVIEWS}"]
    assert (main.lb_policy, admin.lb_policy) == (Cluster.RANDOM, Cluster.ROUND_ROBIN)
    assert main.HasField("outlier_detection") and not admin.HasField("outlier_detection")


def test_consistent_hash_ring() -> None:
    lb = LoadBalancer(
        consistent_hash=ConsistentHash(http_header_name="x-user", minimum_ring_size=64)
    )
    rule = b.destination_rule(REVIEWS, policy=TrafficPolicy(load_balancer=lb))
    cluster = _clusters(services=[b.service("reviews")], destination_rules=[rule])[
        f"outbound|9080||{REVIEWS}"
    ]
    assert cluster.lb_policy == Cluster.RING_HASH
    assert cluster.ring_hash_lb_config.minimum_ring_size.value == 64


def test_connection_pool_and_outlier_detection() -> None:
    pool = ConnectionPool(
        tcp=TcpSettings(max_connections=10, connect_timeout=0.5),
        http=HttpSettings(http1_max_pending_requests=5, max_retries=1, idle_timeout=30.0),
    )
    outlier = OutlierDetection(consecutive_5xx_errors=7, interval=5.0, base_ejection_time=30.0)
    rule = b.destination_rule(
        REVIEWS, policy=TrafficPolicy(connection_pool=pool, outlier_detection=outlier)
    )
    cluster = _clusters(services=[b.service("reviews")], destination_rules=[rule])[
        f"outbound|9080||{REVIEWS}"
    ]
    limits = cluster.circuit_breakers.thresholds[0]
    assert (limits.max_connections.value, limits.max_pending_requests.value) == (10, 5)
    assert (limits.max_retries.value, limits.max_requests.value) == (1, 4294967295)
    assert cluster.connect_timeout.ToMilliseconds() == 500
    assert cluster.outlier_detection.consecutive_5xx.value == 7
    assert cluster.outlier_detection.enforcing_consecutive_5xx.value == 100
    assert cluster.outlier_detection.interval.seconds == 5
    assert cluster.common_lb_config.healthy_panic_threshold.value == 0
    options = HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].Unpack(options)
    assert options.common_http_protocol_options.idle_timeout.seconds == 30
    assert options.explicit_http_config.HasField("http_protocol_options")


def test_grpc_ports_get_http2_upstream() -> None:
    svc = b.service("grpc", ports=[("grpc", 7070, "GRPC")])
    cluster = _clusters(services=[svc])[f"outbound|7070||{b.fqdn('grpc')}"]
    options = HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


@pytest.mark.parametrize(
    ("tls", "expect_socket", "expect_client_cert"),
    [
        (ClientTLS(mode="DISABLE"), False, False),
        (ClientTLS(mode="SIMPLE", ca_certificates="/certs/ca.pem"), True, False),
        (
            ClientTLS(
                "MUTUAL", client_certificate="/c.pem", private_key="/k.pem", ca_certificates="/ca"
            ),
            True,
            True,
        ),
        # ISTIO_MUTUAL (SDS certificates) is covered by tests/translators/test_mtls.py.
    ],
)
def test_upstream_tls(tls: ClientTLS, expect_socket: bool, expect_client_cert: bool) -> None:
    svc = b.service("ext", hostname="api.example.com", resolution="DNS", addresses=())
    rule = b.destination_rule("api.example.com", policy=TrafficPolicy(tls=tls))
    cluster = _clusters(services=[svc], destination_rules=[rule])["outbound|9080||api.example.com"]
    assert cluster.HasField("transport_socket") == expect_socket
    if expect_socket:
        context = UpstreamTlsContext()
        assert cluster.transport_socket.typed_config.Unpack(context)
        assert context.sni == "api.example.com"
        assert bool(context.common_tls_context.tls_certificates) == expect_client_cert
        assert context.common_tls_context.validation_context.trusted_ca.filename


def test_endpoints_by_subset_locality_and_health() -> None:
    svc = b.service("reviews")
    endpoints = [
        b.endpoint(svc, "10.0.0.2", 9081, labels={"version": "v1"}, locality="eu/a"),
        b.endpoint(svc, "10.0.0.1", 9081, labels={"version": "v1"}, locality="eu/b"),
        b.endpoint(svc, "10.0.0.3", 9081, labels={"version": "v2"}, locality="eu/a"),
        b.endpoint(svc, "10.0.0.4", 9081, labels={"version": "v1"}, healthy=False),
    ]
    rule = b.destination_rule(REVIEWS, {"v1": {"version": "v1"}})
    cla = cluster_load_assignments(
        b.view(services=[svc], endpoints=endpoints, destination_rules=[rule])
    )
    subset = cla[f"outbound|9080|v1|{REVIEWS}"]
    zones = [(g.locality.region, g.locality.zone) for g in subset.endpoints]
    assert zones == [("eu", "a"), ("eu", "b")]
    addresses = [
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for g in subset.endpoints
        for lb in g.lb_endpoints
    ]
    assert addresses == [("10.0.0.2", 9081), ("10.0.0.1", 9081)]
    assert sum(len(g.lb_endpoints) for g in cla[f"outbound|9080||{REVIEWS}"].endpoints) == 3


def test_only_eds_clusters_get_load_assignments() -> None:
    services = [
        b.service("reviews"),
        b.service("dns", hostname="dns.example.com", resolution="DNS", addresses=()),
        b.service("none", hostname="none.example.com", resolution="NONE", addresses=()),
    ]
    assert list(cluster_load_assignments(b.view(services=services))) == [
        f"outbound|9080||{REVIEWS}"
    ]
