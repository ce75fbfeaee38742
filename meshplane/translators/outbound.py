"""Outbound listeners of a sidecar with REDIRECT interception (iptables sends every outgoing
connection to 15001).

`virtualOutbound` accepts them and hands each to the listener matching its original
destination: ``0.0.0.0_PORT`` (HTTP, routed by RDS ``PORT``) or ``VIP_PORT`` (TCP to one
service); connections nothing matches take the default chain to PassthroughCluster, or
BlackHoleCluster under REGISTRY_ONLY.
"""

from __future__ import annotations

from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from meshplane.model.scope import ProxyView
from meshplane.translators.listeners import (
    filter_chain,
    hcm_filter,
    http_connection_manager,
    listener,
    tcp_proxy_filter,
    tls_inspector,
)
from meshplane.translators.memo import TranslationMemo
from meshplane.translators.names import (
    BLACKHOLE_CLUSTER,
    PASSTHROUGH_CLUSTER,
    VIRTUAL_OUTBOUND,
    VIRTUAL_OUTBOUND_PORT,
    WILDCARD_ADDRESS,
    is_http,
    listener_name,
    outbound_cluster_name,
    sidecar_route_name,
)
from meshplane.translators.plans import routable
from meshplane.translators.routes import (
    http_services_by_port,
    outbound_policy,
    route_configuration,
)

# A filter chain's match: (destination CIDR, SNI); (None, None) matches anything.
_ChainKey = tuple[str | None, str | None]
TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})


def virtual_outbound_listener(view: ProxyView) -> Listener:
    """0.0.0.0:15001 with original-destination handoff and Istio's two fixed chains."""
    registry_only = outbound_policy(view) == "REGISTRY_ONLY"
    catch_all = BLACKHOLE_CLUSTER if registry_only else PASSTHROUGH_CLUSTER
    # Connections addressed to 15001 itself would loop through the proxy forever.
    blackhole = filter_chain(
        [tcp_proxy_filter(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
        name="virtualOutbound-blackhole",
        destination_port=VIRTUAL_OUTBOUND_PORT,
    )
    result = listener(VIRTUAL_OUTBOUND, WILDCARD_ADDRESS, VIRTUAL_OUTBOUND_PORT, [blackhole])
    result.use_original_dst.value = True
    result.default_filter_chain.CopyFrom(
        filter_chain([tcp_proxy_filter(catch_all, catch_all)], name="virtualOutbound-catchall-tcp")
    )
    return result


def outbound_http_listener(address: str, port: int, route_name: str, bind: bool) -> Listener:
    """An HTTP listener whose routes come over RDS as `route_name`."""
    name = listener_name(address, port)
    hcm = http_connection_manager(f"outbound_{name}", "outbound", rds_name=route_name)
    return listener(name, address, port, [filter_chain([hcm_filter(hcm)])], bind_to_port=bind)


def outbound_tcp_listener(address: str, port: int, cluster: str, bind: bool) -> Listener:
    name = listener_name(address, port)
    chain = filter_chain([tcp_proxy_filter(cluster, cluster)])
    return listener(name, address, port, [chain], bind_to_port=bind)


def listen_address(address: str) -> tuple[str, str | None]:
    """Where a TCP service address is matched: an IP (or /32, /128) gets its own listener;
    a wider CIDR is a destination-prefix match on the wildcard listener, as in Istio."""
    ip, _, length = address.partition("/")
    if not length or int(length) == (128 if ":" in ip else 32):
        return ip, None
    return WILDCARD_ADDRESS, address


def _sni(protocol: str, ip: str, cidr: str | None, hostname: str) -> str | None:
    """TLS services sharing the wildcard listener are told apart by SNI (Istio's shape)."""
    tls = protocol.upper() in TLS_PROTOCOLS
    return hostname if tls and ip == WILDCARD_ADDRESS and cidr is None else None


def _tcp_listener(view: ProxyView, name: str, chains: dict[_ChainKey, FilterChain]) -> Listener:
    ip, _, port = name.rpartition("_")
    result = listener(name, ip, int(port), list(chains.values()), bind_to_port=False)
    if any(sni for _, sni in chains):
        result.listener_filters.append(tls_inspector())
        if (None, None) not in chains:
            # TLS to a host nothing declares: passthrough, or blackhole under REGISTRY_ONLY.
            registry_only = outbound_policy(view) == "REGISTRY_ONLY"
            cluster = BLACKHOLE_CLUSTER if registry_only else PASSTHROUGH_CLUSTER
            result.default_filter_chain.CopyFrom(filter_chain([tcp_proxy_filter(cluster, cluster)]))
    return result


def outbound_tcp_listeners(view: ProxyView, taken: set[str]) -> list[Listener]:
    """``VIP_PORT`` per TCP service port and VIP; ``0.0.0.0_PORT`` for services without a
    VIP (TLS ones matched by SNI) or with CIDR addresses (one chain per CIDR). Where two
    services claim the same listener and match, the first by hostname wins; HTTP listeners
    are never shared."""
    chains: dict[str, dict[_ChainKey, FilterChain]] = {}
    for service in view.services:
        for port in sorted(service.ports, key=lambda p: p.number):
            if is_http(port.protocol) or not routable(port):
                continue
            cluster = outbound_cluster_name(port.number, service.hostname)
            for address in service.addresses or (WILDCARD_ADDRESS,):
                ip, cidr = listen_address(address)
                name = listener_name(ip, port.number)
                sni = _sni(port.protocol, ip, cidr, service.hostname)
                by_match = chains.setdefault(name, {})
                if name in taken or (cidr, sni) in by_match:
                    continue
                tcp = tcp_proxy_filter(cluster, cluster)
                by_match[(cidr, sni)] = filter_chain([tcp], prefix_range=cidr, server_name=sni)
    return [_tcp_listener(view, name, by_match) for name, by_match in chains.items() if by_match]


def outbound_listeners_and_routes(
    view: ProxyView, memo: TranslationMemo | None = None
) -> tuple[list[Listener], list[RouteConfiguration]]:
    """virtualOutbound, the per-port outbound listeners and their route configurations."""
    listeners = [virtual_outbound_listener(view)]
    routes = []
    taken: set[str] = set()
    for port, services in http_services_by_port(view.services).items():
        name = sidecar_route_name(port)
        listeners.append(outbound_http_listener(WILDCARD_ADDRESS, port, name, bind=False))
        taken.add(listener_name(WILDCARD_ADDRESS, port))
        routes.append(route_configuration(name, port, services, view, memo))
    listeners.extend(outbound_tcp_listeners(view, taken))
    return listeners, routes
