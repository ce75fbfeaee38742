"""VirtualService `tcp` and `tls` routes -> filter chains running a tcp_proxy.

Sidecars (outbound TCP/TLS listeners) and gateways (TCP and TLS PASSTHROUGH servers) route
connections the same way, so both build their chains here: a `tls` route becomes a chain
matching its `sniHosts` (Envoy's `server_names`, read by the tls_inspector), a `tcp` route a
chain matching its `destinationSubnets` (or everything), each forwarding to one cluster or
to `weighted_clusters`. `ChainSet` keeps the first chain for every match, because Envoy
rejects a listener whose chains share one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from envoy.config.core.v3.address_pb2 import CidrRange
from envoy.config.core.v3.base_pb2 import TransportSocket
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2 import TcpProxy

from meshplane.api.meta import Object
from meshplane.api.networking.virtual_service import (
    L4MatchAttributes,
    RouteDestination,
    VirtualServiceSpec,
)
from meshplane.model.scope import label_key
from meshplane.translators.http_routes import RouteContext, destination_cluster
from meshplane.translators.listeners import TCP_PROXY_FILTER, tcp_proxy_filter
from meshplane.translators.protos import any_of, u32
from meshplane.translators.telemetry import stdout_access_log

# Protocols whose connections carry a TLS ClientHello (SNI) the proxy can route by.
TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})


@dataclass(frozen=True)
class ChainSpec:
    """A filter chain before de-duplication: its filters and what it matches (no names and
    no ranges: everything)."""

    filters: tuple[Filter, ...]
    server_names: tuple[str, ...] = ()
    prefix_ranges: tuple[str, ...] = ()
    transport_socket: TransportSocket | None = None
    name: str = ""


def _gateway_ref(ref: str, vs_namespace: str) -> str:
    return ref if ref == "mesh" or "/" in ref else f"{vs_namespace}/{ref}"


def l4_match_applies(m: L4MatchAttributes, ctx: RouteContext, vs_namespace: str) -> bool:
    """Port, gateways, sourceNamespace and sourceLabels as Istio applies them (in the
    control plane: the view lists the `sourceLabels` selectors the proxy's labels match)."""
    if m.port is not None and m.port != ctx.port:
        return False
    if m.gateways:
        wanted = ctx.gateway or "mesh"
        if wanted not in {_gateway_ref(g, vs_namespace) for g in m.gateways}:
            return False
    if m.source_namespace is not None and m.source_namespace != ctx.view.namespace:
        return False
    return not m.source_labels or label_key(m.source_labels) in ctx.view.source_labels


def tcp_proxy(
    destinations: Sequence[RouteDestination], vs_namespace: str, ctx: RouteContext
) -> Filter | None:
    """A tcp_proxy to one cluster or to weighted clusters (zero weights dropped, as Istio
    does); None when every weight is zero."""
    kept = [d for d in destinations if d.weight is None or d.weight > 0]
    if not kept:
        return None
    clusters = [destination_cluster(d.destination, vs_namespace, ctx) for d in kept]
    if len(kept) == 1:
        return tcp_proxy_filter(clusters[0], clusters[0])
    proxy = TcpProxy(
        stat_prefix=clusters[0],
        weighted_clusters=TcpProxy.WeightedCluster(
            clusters=[
                TcpProxy.WeightedCluster.ClusterWeight(name=name, weight=d.weight or 0)
                for name, d in zip(clusters, kept, strict=True)
            ]
        ),
        access_log=[stdout_access_log(False)],
    )
    return Filter(name=TCP_PROXY_FILTER, typed_config=any_of(proxy))


def tcp_route_chains(vs: Object[VirtualServiceSpec], ctx: RouteContext) -> Iterator[ChainSpec]:
    """One chain per applicable `tcp` route match, in order; a route without matches (or
    whose applicable match has no subnets) catches everything after it."""
    for route in vs.spec.tcp:
        matches = [m for m in route.match if l4_match_applies(m, ctx, vs.namespace)]
        if route.match and not matches:
            continue
        proxy = tcp_proxy(route.route, vs.namespace, ctx)
        if proxy is None:
            continue
        for m in matches or [L4MatchAttributes()]:
            yield ChainSpec((proxy,), prefix_ranges=m.destination_subnets)


def tls_route_chains(
    vs: Object[VirtualServiceSpec],
    ctx: RouteContext,
    allowed: Callable[[str], str | None] = lambda host: host,
) -> Iterator[ChainSpec]:
    """One chain per applicable `tls` route match, matching its sniHosts. `allowed` maps an
    SNI host to the name to match (a gateway narrows it to its server's hosts) or None."""
    for route in vs.spec.tls:
        proxy = tcp_proxy(route.route, vs.namespace, ctx)
        if proxy is None:
            continue
        for m in route.match:
            if not l4_match_applies(m, ctx, vs.namespace):
                continue
            names = tuple(n for h in m.sni_hosts if (n := allowed(h)) is not None)
            if names:
                yield ChainSpec((proxy,), server_names=names, prefix_ranges=m.destination_subnets)


def _cidr(prefix: str) -> CidrRange:
    address, _, length = prefix.partition("/")
    if not length:
        length = "128" if ":" in address else "32"
    return CidrRange(address_prefix=address, prefix_len=u32(int(length)))


class ChainSet:
    """A listener's filter chains, each (destination range, server name) claimed by the
    first chain that matches it; later chains keep only their unclaimed names."""

    def __init__(self) -> None:
        self.chains: list[FilterChain] = []
        self.claimed: set[tuple[str | None, str | None]] = set()

    def add(self, spec: ChainSpec, default_prefix: str | None = None) -> bool:
        """Add `spec` (its ranges default to `default_prefix`); False if nothing was left."""
        prefixes: Sequence[str | None] = spec.prefix_ranges or (default_prefix,)
        names: Sequence[str | None] = spec.server_names or (None,)
        kept = [
            n for n in dict.fromkeys(names) if all((p, n) not in self.claimed for p in prefixes)
        ]
        if not kept:
            return False
        self.claimed.update((p, n) for p in prefixes for n in kept)
        chain = FilterChain(name=spec.name, filters=list(spec.filters))
        # Touching filter_chain_match would set it (an empty match), so only when needed.
        if names := [n for n in kept if n is not None]:
            chain.filter_chain_match.server_names.extend(names)
        if ranges := [_cidr(p) for p in prefixes if p]:
            chain.filter_chain_match.prefix_ranges.extend(ranges)
        if spec.transport_socket is not None:
            chain.transport_socket.CopyFrom(spec.transport_socket)
        self.chains.append(chain)
        return True

    @property
    def uses_sni(self) -> bool:
        return any(n is not None for _, n in self.claimed)

    @property
    def catches_all(self) -> bool:
        return (None, None) in self.claimed
