"""Outbound listeners of a sidecar with REDIRECT interception (iptables sends every outgoing
connection to 15001).

`virtualOutbound` accepts them and hands each to the listener matching its original
destination: ``0.0.0.0_PORT`` (HTTP, routed by RDS ``PORT``) or ``VIP_PORT`` (TCP to one
service); connections nothing matches take the default chain to PassthroughCluster, or
BlackHoleCluster under REGISTRY_ONLY.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from meshplane.api.meta import Object
from meshplane.api.networking.sidecar import IstioEgressListener
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.model.scope import ProxyView
from meshplane.model.services import Service, ServicePort
from meshplane.translators.hosts import egress_allows
from meshplane.translators.http_routes import RouteContext
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
    VirtualServiceIndex,
    http_services_by_port,
    outbound_policy,
    route_configuration,
)
from meshplane.translators.tcp_routes import (
    TLS_PROTOCOLS,
    ChainSet,
    ChainSpec,
    tcp_route_chains,
    tls_route_chains,
)


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


def service_chain_specs(
    view: ProxyView,
    vs: Object[VirtualServiceSpec] | None,
    service: Service,
    port: ServicePort,
    by_sni: bool,
) -> list[ChainSpec]:
    """The chains of one non-HTTP service port, as Istio builds them: the VirtualService's
    `tls` routes (TLS ports), then its `tcp` routes, then the service's own cluster
    (matched by the service's name as SNI when `by_sni`: TLS services sharing a listener)."""
    ctx = RouteContext(view, port.number)
    specs: list[ChainSpec] = []
    tls = port.protocol.upper() in TLS_PROTOCOLS
    if vs is not None:
        if tls:
            specs.extend(tls_route_chains(vs, ctx))
        specs.extend(tcp_route_chains(vs, ctx))
    cluster = outbound_cluster_name(port.number, service.hostname)
    names = (service.hostname,) if by_sni and tls else ()
    specs.append(ChainSpec((tcp_proxy_filter(cluster, cluster),), server_names=names))
    return specs


def l4_listener(view: ProxyView, name: str, chains: ChainSet, *, bind: bool) -> Listener:
    """A TCP listener over `chains`; SNI chains get the tls_inspector and, unless some chain
    catches everything, a default chain for unknown names (passthrough, or blackhole under
    REGISTRY_ONLY)."""
    ip, _, port = name.rpartition("_")
    result = listener(name, ip, int(port), chains.chains, bind_to_port=bind)
    if chains.uses_sni:
        result.listener_filters.append(tls_inspector())
        if not chains.catches_all:
            registry_only = outbound_policy(view) == "REGISTRY_ONLY"
            cluster = BLACKHOLE_CLUSTER if registry_only else PASSTHROUGH_CLUSTER
            result.default_filter_chain.CopyFrom(filter_chain([tcp_proxy_filter(cluster, cluster)]))
    return result


def outbound_tcp_listeners(
    view: ProxyView,
    taken: set[str],
    services: Sequence[Service] | None = None,
    ports: Callable[[ServicePort], bool] = lambda port: not is_http(port.protocol),
) -> list[Listener]:
    """``VIP_PORT`` per TCP service port and VIP; ``0.0.0.0_PORT`` for services without a
    VIP (TLS ones matched by SNI) or with CIDR addresses (one chain per CIDR). Where two
    services claim the same match, the first by hostname wins; HTTP listeners are never
    shared. VirtualService `tcp`/`tls` routes shape each service's chains. `services`
    (default: the view's) and `ports` narrow what is built (Sidecar egress scoping)."""
    chains: dict[str, ChainSet] = {}
    index = VirtualServiceIndex(view)
    for service in view.services if services is None else services:
        vs = index.lookup(service.hostname)
        for port in sorted(service.ports, key=lambda p: p.number):
            if not ports(port) or not routable(port):
                continue
            for address in service.addresses or (WILDCARD_ADDRESS,):
                ip, cidr = listen_address(address)
                name = listener_name(ip, port.number)
                if name in taken:
                    continue
                by_sni = ip == WILDCARD_ADDRESS and cidr is None
                chain_set = chains.setdefault(name, ChainSet())
                for spec in service_chain_specs(view, vs, service, port, by_sni):
                    chain_set.add(spec, cidr)
    return [l4_listener(view, name, c, bind=False) for name, c in chains.items() if c.chains]


def outbound_listeners_and_routes(
    view: ProxyView, memo: TranslationMemo | None = None
) -> tuple[list[Listener], list[RouteConfiguration]]:
    """virtualOutbound, the per-port outbound listeners and their route configurations.

    A Sidecar whose `egress` entries name a port scopes per port, as Istio does: that
    port's listener imports only the hosts of its entry (its protocol decides HTTP or TCP),
    and the entry without a port (if any) fills in every other port with its own hosts."""
    listeners = [virtual_outbound_listener(view)]
    routes: list[RouteConfiguration] = []
    entries = _egress_entries(view)
    if not any(e.port is not None for e in entries):
        _add_port_listeners(view, view.services, listeners, routes, memo)
        return listeners, routes
    claimed: set[int] = set()
    taken: set[str] = set()
    for entry in entries:
        imported = [s for s in view.services if egress_allows(entry.hosts, s, view.namespace)]
        if entry.port is None:
            rest = frozenset(claimed)
            _add_port_listeners(view, imported, listeners, routes, memo, rest, taken)
            continue
        port = entry.port.number
        if port in claimed:
            continue
        claimed.add(port)
        address = entry.bind or WILDCARD_ADDRESS
        with_port = [s for s in imported if (p := s.port(port)) is not None and routable(p)]
        if is_http(entry.port.protocol):
            name = sidecar_route_name(port, entry.bind or "")
            listeners.append(outbound_http_listener(address, port, name, bind=False))
            taken.add(listener_name(address, port))
            routes.append(route_configuration(name, port, with_port, view, memo))
        else:
            only = partial(_on_port, port)
            made = outbound_tcp_listeners(view, taken, with_port, only)
            taken.update(m.name for m in made)
            listeners.extend(made)
    return listeners, routes


def _on_port(number: int, port: ServicePort) -> bool:
    return port.number == number


def _egress_entries(view: ProxyView) -> list[IstioEgressListener]:
    """The Sidecar's egress entries that shape REDIRECT-mode listeners, entries with a port
    first (they claim it); unix-socket binds have no place here."""
    spec = view.sidecar.spec if view.sidecar else None
    entries = [e for e in (spec.egress if spec else ()) if not (e.bind or "").startswith("unix")]
    return sorted(entries, key=lambda e: e.port is None)


def _add_port_listeners(
    view: ProxyView,
    services: Sequence[Service],
    listeners: list[Listener],
    routes: list[RouteConfiguration],
    memo: TranslationMemo | None,
    claimed: frozenset[int] = frozenset(),
    taken: set[str] | None = None,
) -> None:
    """``0.0.0.0_PORT`` (RDS ``PORT``) per HTTP port of `services` and the TCP listeners,
    leaving out `claimed` ports and `taken` listener names."""
    taken = set() if taken is None else taken
    for port, port_services in http_services_by_port(services).items():
        name = listener_name(WILDCARD_ADDRESS, port)
        if port in claimed or name in taken:
            continue
        route_name = sidecar_route_name(port)
        listeners.append(outbound_http_listener(WILDCARD_ADDRESS, port, route_name, bind=False))
        taken.add(name)
        routes.append(route_configuration(route_name, port, port_services, view, memo))
    listeners.extend(
        outbound_tcp_listeners(
            view,
            taken,
            services,
            lambda p: not is_http(p.protocol) and p.number not in claimed,
        )
    )
