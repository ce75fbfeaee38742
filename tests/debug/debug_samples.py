"""A small mesh as the debug API sees it: two connected proxies, their sent xDS
resources, sync rows, a registry and some accepted/rejected config.

Used by tests/debug and (loaded by path) tests/cli, so the CLI tables are checked
against the same data the debug API serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from google.protobuf import any_pb2, struct_pb2
from prometheus_client import CollectorRegistry, Counter

from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object, ObjectMeta
from meshplane.api.networking.destination_rule import DestinationRuleSpec, Subset
from meshplane.debug import DebugSources
from meshplane.model.mesh import MeshModel
from meshplane.model.services import Endpoint, Service, ServicePort
from meshplane.sources.events import Origin
from meshplane.xds import type_urls

PRODUCTPAGE = "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local"
GATEWAY = "router~10.0.0.9~ingressgateway.istio-system~istio-system.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
PRIVATE_KEY = b"-----BEGIN PRIVATE KEY-----\nTOPSECRET\n-----END PRIVATE KEY-----\n"


def packed(message: Any) -> Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def istio_config(path: str) -> base_pb2.Metadata:
    """Istio's `istio.config` metadata naming the config object a resource came from."""
    md = base_pb2.Metadata()
    md.filter_metadata["istio"].CopyFrom(struct_pb2.Struct(fields={"config": _str(path)}))
    return md


def _str(value: str) -> Any:
    return struct_pb2.Value(string_value=value)


def eds_cluster(name: str, dr: str | None = None) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    cluster.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    if dr:
        cluster.metadata.CopyFrom(
            istio_config(f"/apis/networking.istio.io/v1/namespaces/default/destination-rule/{dr}")
        )
    return cluster


def clusters() -> list[cluster_pb2.Cluster]:
    inbound = cluster_pb2.Cluster(name="inbound|9080||", type=cluster_pb2.Cluster.ORIGINAL_DST)
    blackhole = cluster_pb2.Cluster(name="BlackHoleCluster", type=cluster_pb2.Cluster.STATIC)
    passthrough = cluster_pb2.Cluster(
        name="PassthroughCluster", type=cluster_pb2.Cluster.ORIGINAL_DST
    )
    return [
        eds_cluster(f"outbound|9080||{REVIEWS}", dr="reviews"),
        eds_cluster(f"outbound|9080|v1|{REVIEWS}", dr="reviews"),
        inbound,
        blackhole,
        passthrough,
    ]


def _lb_endpoint(ip: str, port: int, health: int) -> endpoint_components_pb2.LbEndpoint:
    ep = endpoint_components_pb2.LbEndpoint(health_status=health)
    ep.endpoint.address.socket_address.address = ip
    ep.endpoint.address.socket_address.port_value = port
    return ep


def load_assignment() -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=f"outbound|9080||{REVIEWS}")
    cla.endpoints.add().lb_endpoints.extend(
        [
            _lb_endpoint("10.0.1.1", 9080, health_check_pb2.HEALTHY),
            _lb_endpoint("10.0.1.2", 9080, health_check_pb2.UNHEALTHY),
        ]
    )
    return cla


def _address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )


def http_listener() -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="outbound_0.0.0.0_9080")
    hcm.rds.route_config_name = "9080"
    hcm.rds.config_source.ads.SetInParent()
    hcm.rds.config_source.resource_api_version = config_source_pb2.V3
    hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    chain = listener_components_pb2.FilterChain()
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(hcm)
    return listener_pb2.Listener(
        name="0.0.0.0_9080", address=_address("0.0.0.0", 9080), filter_chains=[chain]
    )


def virtual_outbound() -> listener_pb2.Listener:
    listener = listener_pb2.Listener(name="virtualOutbound", address=_address("0.0.0.0", 15001))
    listener.use_original_dst.value = True
    return listener


def route_config() -> route_pb2.RouteConfiguration:
    route = route_components_pb2.Route(name="default")
    route.match.prefix = "/"
    route.route.cluster = f"outbound|9080|v1|{REVIEWS}"
    route.metadata.CopyFrom(
        istio_config("/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews")
    )
    vhost = route_components_pb2.VirtualHost(
        name=f"{REVIEWS}:9080", domains=[REVIEWS, "reviews", "reviews.default"], routes=[route]
    )
    return route_pb2.RouteConfiguration(name="9080", virtual_hosts=[vhost])


def secrets() -> list[secret_pb2.Secret]:
    cert = common_pb2.TlsCertificate()
    cert.certificate_chain.inline_bytes = b"-----BEGIN CERTIFICATE-----\nCHAIN\n"
    cert.private_key.inline_bytes = PRIVATE_KEY
    default = secret_pb2.Secret(name="default", tls_certificate=cert)
    root = secret_pb2.Secret(name="ROOTCA")
    root.validation_context.trusted_ca.inline_bytes = b"-----BEGIN CERTIFICATE-----\nROOT\n"
    return [default, root]


@dataclass(frozen=True)
class Sent:
    """Shaped like meshplane.xds.snapshot.CachedResource, as far as the debug API reads."""

    version: str
    message: Any


@dataclass(frozen=True)
class Node:
    id: str


@dataclass
class FakeConnection:
    id: str
    node: Node
    held: dict[str, Mapping[str, Sent]] = field(default_factory=dict)


def productpage_connection() -> FakeConnection:
    resources: dict[str, list[Any]] = {
        type_urls.CLUSTER: clusters(),
        type_urls.ENDPOINT: [load_assignment()],
        type_urls.LISTENER: [http_listener(), virtual_outbound()],
        type_urls.ROUTE: [route_config()],
        type_urls.SECRET: secrets(),
    }
    held: dict[str, Mapping[str, Sent]] = {
        url: {
            getattr(m, "name", "") or m.cluster_name: Sent(f"r-{i}", packed(m))
            for i, m in enumerate(items)
        }
        for url, items in resources.items()
    }
    return FakeConnection(f"{PRODUCTPAGE}-1", Node(PRODUCTPAGE), held)


@dataclass(frozen=True)
class Progress:
    sent_version: str


def _type_row(status: str, version: str = "v1", error: str | None = None) -> dict[str, Any]:
    sent = "" if status == "NOT_SENT" else version
    acked = version if status == "SYNCED" else ("" if status == "NOT_SENT" else "v0")
    return {"sent": sent, "acked": acked, "nonce": "7", "status": status, "error": error}


class FakeSyncStatus:
    def progress(self, conn_id: str, type_url: str) -> Progress | None:
        if conn_id != f"{PRODUCTPAGE}-1" or type_url == type_urls.SECRET:
            return None
        return Progress(f"v-{type_urls.short_name(type_url)}")

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "proxy": PRODUCTPAGE,
                "name": "productpage-v1.default",
                "types": {
                    "cds": _type_row("SYNCED"),
                    "eds": _type_row("SYNCED"),
                    "lds": _type_row("SYNCED"),
                    "rds": _type_row("STALE"),
                    "sds": _type_row("NOT_SENT"),
                },
            },
            {
                "proxy": GATEWAY,
                "name": "ingressgateway.istio-system",
                "types": {
                    "cds": _type_row("ERROR", error="unknown lb policy"),
                    "eds": _type_row("SYNCED"),
                    "lds": _type_row("SYNCED"),
                    "rds": _type_row("SYNCED"),
                    "sds": _type_row("SYNCED"),
                },
            },
        ]


def _origin(line: int) -> Origin:
    return Origin(path="config/reviews.yaml", line=line)


class FakeStore:
    def objects(self) -> Iterable[Object[Any]]:
        spec = DestinationRuleSpec(
            host="reviews", subsets=(Subset(name="v1", labels={"version": "v1"}),)
        )
        meta = ObjectMeta(name="reviews", namespace="default")
        yield Object("DestinationRule", "networking.istio.io/v1", meta, spec, _origin(1), "abc")

    def errors(self) -> Iterable[ValidationError]:
        yield ValidationError(
            _origin(12),
            "VirtualService",
            "default",
            "ratings",
            "spec.http[0].route[0].weight",
            "weight must be between 0 and 100",
        )

    def warnings(self) -> Iterable[ValidationError]:
        yield ValidationError(
            _origin(1),
            "DestinationRule",
            "default",
            "reviews",
            "spec.subsets[1]",
            "subset v9 selects no endpoints",
            severity="warning",
        )

    def mesh(self) -> MeshModel:
        svc = Service(
            hostname=REVIEWS,
            namespace="default",
            name="reviews",
            ports=(ServicePort("http", 9080, "HTTP"),),
            addresses=("10.96.0.7",),
        )
        eps = (
            Endpoint(REVIEWS, 9080, "10.0.1.2", 9080, labels={"version": "v2"}),
            Endpoint(REVIEWS, 9080, "10.0.1.1", 9080, labels={"version": "v1"}),
        )
        return MeshModel(version=3, services={REVIEWS: svc}, endpoints={REVIEWS: eps})


def sample_sources(ready: list[bool] | None = None) -> DebugSources:
    """DebugSources over the sample data; `ready[0]` toggles /ready."""
    flag = ready if ready is not None else [True]
    registry = CollectorRegistry()
    pushes = Counter("pilot_xds_pushes", "pushes", ["type"], registry=registry)
    pushes.labels(type="cds").inc(3)
    conn = productpage_connection()
    return DebugSources(
        ready=lambda: flag[0],
        registry=registry,
        sync_status=FakeSyncStatus(),
        connections=lambda: [conn],
        store=FakeStore(),
    )
