"""Inbound side of a sidecar with REDIRECT interception: `virtualInbound` on 15006 and the
``inbound|PORT||`` clusters.

Inbound clusters are ORIGINAL_DST bound to 127.0.0.6, as Istio does since 1.10: the
connection goes to the address the client dialled (the pod IP), so apps that listen only on
the pod IP (not 127.0.0.1) still receive it, and the 127.0.0.6 source lets iptables tell the
proxy's own connections from captured ones. (A STATIC 127.0.0.1:PORT cluster would silently
break apps bound to the pod IP.)

virtualInbound uses the original_dst *listener filter* rather than `use_original_dst`:
handing connections off by original destination would send inbound traffic for port 9080 to
the outbound ``0.0.0.0_9080`` listener. Its filter chains match the destination port instead.
"""

from __future__ import annotations

from functools import partial

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_components_pb2 import FilterChain, ListenerFilter
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route, RouteAction, VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.listener.original_dst.v3.original_dst_pb2 import OriginalDst
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import InboundPort, ProxyView
from meshplane.translators import cluster_policy
from meshplane.translators.clusters import (
    inbound_passthrough_cluster,
    original_dst_cluster,
)
from meshplane.translators.filters.rbac import network_rbac_filters
from meshplane.translators.http_filters import security_filters
from meshplane.translators.listeners import (
    filter_chain,
    hcm_filter,
    http_connection_manager,
    listener,
    tcp_proxy_filter,
)
from meshplane.translators.mtls import (
    add_tls_inspector,
    effective_mode,
    inbound_mtls_chains,
    mtls_chain,
)
from meshplane.translators.names import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_BIND,
    INBOUND_PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND,
    VIRTUAL_INBOUND_PORT,
    WILDCARD_ADDRESS,
    inbound_cluster_name,
    is_http,
    listener_name,
)
from meshplane.translators.protos import any_of, duration

PASSTHROUGH_CHAIN = "PassthroughFilterChain"


def inbound_route_configuration(port: int) -> RouteConfiguration:
    """Inline routes of an inbound HTTP port: everything to ``inbound|PORT||``, no retries
    (the caller's sidecar already retries)."""
    cluster = inbound_cluster_name(port)
    route = Route(name="default", route=RouteAction(cluster=cluster, timeout=duration(0)))
    route.match.prefix = "/"
    host = VirtualHost(name=f"inbound|http|{port}", domains=["*"], routes=[route])
    return RouteConfiguration(
        name=cluster, virtual_hosts=[host], validate_clusters=BoolValue(value=False)
    )


def inbound_filter_chain(
    port: int, protocol: str, match_port: bool = True, *, view: ProxyView | None = None
) -> FilterChain:
    """HTTP: an HCM with inline routes; anything else: a TCP proxy; to ``inbound|PORT||``.
    With `view`, its RequestAuthentication and AuthorizationPolicy filters go in front."""
    name = listener_name(WILDCARD_ADDRESS, port)
    cluster = inbound_cluster_name(port)
    if is_http(protocol):
        hcm = http_connection_manager(
            f"inbound_{name}",
            "inbound",
            route_config=inbound_route_configuration(port),
            security_filters=security_filters(view) if view else (),
        )
        network_filters = [hcm_filter(hcm)]
    else:
        rbac = network_rbac_filters(view, port) if view else []
        network_filters = [*rbac, tcp_proxy_filter(cluster, cluster)]
    destination_port = port if match_port else None
    return filter_chain(network_filters, name=name, destination_port=destination_port)


def unique_inbound_ports(view: ProxyView) -> list[InboundPort]:
    """One entry per workload port (several services may select the same one)."""
    ports: dict[int, InboundPort] = {}
    for inbound in view.inbound:
        ports.setdefault(inbound.port, inbound)
    return [ports[p] for p in sorted(ports)]


def virtual_inbound_listener(view: ProxyView) -> Listener:
    chains = [
        filter_chain(
            [tcp_proxy_filter(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
            name="virtualInbound-blackhole",
            destination_port=VIRTUAL_INBOUND_PORT,
        )
    ]
    for p in unique_inbound_ports(view):
        build = partial(inbound_filter_chain, p.port, p.protocol, view=view)
        chains += inbound_mtls_chains(view, p.port, p.protocol, build)
    result = listener(
        VIRTUAL_INBOUND, WILDCARD_ADDRESS, VIRTUAL_INBOUND_PORT, chains, direction="inbound"
    )
    result.listener_filters.append(
        ListenerFilter(
            name="envoy.filters.listener.original_dst", typed_config=any_of(OriginalDst())
        )
    )
    passthrough, plaintext = passthrough_chains(view)
    result.filter_chains.extend(passthrough)
    if plaintext is not None:
        result.default_filter_chain.CopyFrom(plaintext)
    add_tls_inspector(result)
    return result


def _passthrough_chain(view: ProxyView, port: int | None = None) -> FilterChain:
    rbac = network_rbac_filters(view, port or 0)
    tcp = tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER)
    name = PASSTHROUGH_CHAIN if port is None else f"{PASSTHROUGH_CHAIN}_{port}"
    return filter_chain([*rbac, tcp], name=name, destination_port=port)


def passthrough_chains(view: ProxyView) -> tuple[list[FilterChain], FilterChain | None]:
    """Ports no service declares still reach the app, as in Istio, in the workload's mTLS
    mode and under its AuthorizationPolicies: STRICT takes only Istio mTLS (no plaintext
    default chain), PERMISSIVE adds an mTLS chain next to the plaintext default one (which
    also passes the app's own TLS through), DISABLE is the plaintext default alone. A
    portLevelMtls port that no service declares gets chains of its own, in its mode.
    Returns (port-less and per-port chains, the default chain or None)."""
    declared = {p.port for p in view.inbound}
    chains: list[FilterChain] = []
    for port, _ in view.inbound_mtls.ports:
        if port not in declared:
            build = partial(_passthrough_chain, view, port)
            chains += inbound_mtls_chains(view, port, "TCP", build)
    mode = effective_mode(view, None)
    if mode == "DISABLE":
        return chains, _passthrough_chain(view)
    suffix = "-mtls" if mode == "PERMISSIVE" else ""
    chains.append(mtls_chain(_passthrough_chain(view), "TCP", suffix))
    return chains, _passthrough_chain(view) if mode == "PERMISSIVE" else None


def inbound_cluster(port: InboundPort, mesh: MeshConfig) -> Cluster:
    cluster = original_dst_cluster(inbound_cluster_name(port.port), mesh, INBOUND_PASSTHROUGH_BIND)
    http = cluster_policy.http_protocol_options(port.protocol, None)
    if http is not None:
        cluster.typed_extension_protocol_options[cluster_policy.HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(
            any_of(http)
        )
    return cluster


def inbound_clusters(view: ProxyView) -> list[Cluster]:
    """``inbound|PORT||`` per workload port, plus InboundPassthroughCluster."""
    clusters = [inbound_cluster(p, view.mesh) for p in unique_inbound_ports(view)]
    return [*clusters, inbound_passthrough_cluster(view.mesh)]
