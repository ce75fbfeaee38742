"""Sidecar route configurations (RDS): one per outbound HTTP port, named ``PORT`` (or
``BIND:PORT`` for Sidecar egress listeners bound to an address).

Each holds one virtual host ``HOST:PORT`` per service with that port, routing by the
service's VirtualService if one is bound to the mesh, else straight to its default cluster,
plus Istio's catch-all (`allow_any` to PassthroughCluster, or `block_all` answering 502 when
the outbound traffic policy is REGISTRY_ONLY).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.route.v3.route_components_pb2 import (
    DirectResponseAction,
    Route,
    RouteAction,
    VirtualHost,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.meta import Object
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.model.hosts import fqdn, host_matches
from meshplane.model.scope import ProxyView
from meshplane.model.services import Service
from meshplane.translators.domains import dedupe_domains, service_domains
from meshplane.translators.http_routes import (
    RouteContext,
    allow_direct_response_bodies,
    default_route,
    route_inputs,
    virtual_service_routes,
)
from meshplane.translators.memo import TranslationMemo
from meshplane.translators.names import (
    PASSTHROUGH_CLUSTER,
    is_http,
    outbound_cluster_name,
    virtual_host_name,
)
from meshplane.translators.protos import duration


def proxy_domain(view: ProxyView) -> str:
    """The DNS domain of the proxy's namespace (``default.svc.cluster.local``)."""
    return f"{view.namespace}.{view.mesh.dns_domain_suffix}"


def outbound_policy(view: ProxyView) -> str:
    """ALLOW_ANY or REGISTRY_ONLY: the Sidecar's own setting wins over the mesh's."""
    sidecar = view.sidecar.spec.outbound_traffic_policy if view.sidecar else None
    return (sidecar or view.mesh.outbound_traffic_policy).upper()


class VirtualServiceIndex:
    """The view's VirtualServices by FQDN host: exact hosts, then wildcards in view order.

    Built once per route configuration: looking each service up by scanning every
    VirtualService made a 1000-service route configuration cost a million host comparisons.
    """

    def __init__(self, view: ProxyView) -> None:
        suffix = view.mesh.dns_domain_suffix
        self.exact: dict[str, Object[VirtualServiceSpec]] = {}
        self.wildcards: list[tuple[str, Object[VirtualServiceSpec]]] = []
        for vs in view.virtual_services:
            for host in vs.spec.hosts:
                name = fqdn(host, vs.namespace, suffix)
                if name.startswith("*"):
                    self.wildcards.append((name, vs))
                else:
                    self.exact.setdefault(name, vs)

    def lookup(self, hostname: str) -> Object[VirtualServiceSpec] | None:
        """An exact host match first, then the first VirtualService with a matching wildcard."""
        found = self.exact.get(hostname)
        if found is not None:
            return found
        return next((vs for h, vs in self.wildcards if host_matches(h, hostname)), None)


def mesh_virtual_service(view: ProxyView, hostname: str) -> Object[VirtualServiceSpec] | None:
    """The VirtualService that routes `hostname` for this sidecar: an exact host match
    first, then the first wildcard match (the view orders VirtualServices oldest first)."""
    return VirtualServiceIndex(view).lookup(hostname)


def service_routes(
    service: Service,
    port: int,
    view: ProxyView,
    vs: Object[VirtualServiceSpec] | None = None,
    ctx: RouteContext | None = None,
) -> list[Route]:
    """The VirtualService's routes for this port, else the default route. A VirtualService
    with no route for this port falls back to the default (rather than a 404 host).
    `vs` is the VirtualService bound to the service (looked up when not given)."""
    if vs is None and ctx is None:
        vs = mesh_virtual_service(view, service.hostname)
    if vs is not None:
        routes = virtual_service_routes(vs, ctx or RouteContext(view, port))
        if routes:
            return routes
    return [default_route(outbound_cluster_name(port, service.hostname))]


def catch_all_virtual_host(view: ProxyView) -> VirtualHost:
    """`allow_any` (to PassthroughCluster) or, for REGISTRY_ONLY, `block_all` (502)."""
    route = Route()
    route.match.prefix = "/"
    if outbound_policy(view) == "REGISTRY_ONLY":
        route.name = "block_all"
        route.direct_response.CopyFrom(DirectResponseAction(status=502))
        return VirtualHost(name="block_all", domains=["*"], routes=[route])
    route.name = "allow_any"
    route.route.CopyFrom(RouteAction(cluster=PASSTHROUGH_CLUSTER, timeout=duration(0)))
    return VirtualHost(name="allow_any", domains=["*"], routes=[route])


def _virtual_host(
    service: Service,
    domains: list[str],
    vs: Object[VirtualServiceSpec] | None,
    ctx: RouteContext,
    memo: TranslationMemo | None,
) -> VirtualHost:
    def build() -> VirtualHost:
        return VirtualHost(
            name=virtual_host_name(service.hostname, ctx.port),
            domains=domains,
            routes=service_routes(service, ctx.port, ctx.view, vs, ctx),
        )

    if memo is None:
        return build()
    # Everything build() reads: the host's name, its domains, and what its routes depend on.
    key = (domains, route_inputs(vs, ctx)) if vs is not None else (domains,)
    return memo.get(("vhost", ctx.view.namespace, ctx.port, service.hostname), key, build)


def route_configuration(
    name: str,
    port: int,
    services: Sequence[Service],
    view: ProxyView,
    memo: TranslationMemo | None = None,
) -> RouteConfiguration:
    """Route configuration `name` for outbound HTTP `port` over `services` (sorted).
    With a `memo`, virtual hosts whose inputs did not change are reused as built."""
    ordered = sorted(services, key=lambda s: s.hostname)
    domains = dedupe_domains(service_domains(s, port, proxy_domain(view)) for s in ordered)
    index = VirtualServiceIndex(view)
    ctx = RouteContext(view, port, services_by_host={s.hostname: s for s in view.services})
    hosts = [
        _virtual_host(s, d, index.lookup(s.hostname), ctx, memo)
        for s, d in zip(ordered, domains, strict=True)
        if d
    ]
    hosts.append(catch_all_virtual_host(view))
    # Routes may name clusters that do not exist (a subset no DestinationRule defines);
    # Envoy answers 503 for those instead of rejecting the whole configuration.
    return allow_direct_response_bodies(
        RouteConfiguration(name=name, virtual_hosts=hosts, validate_clusters=BoolValue(value=False))
    )


def http_services_by_port(services: Sequence[Service]) -> dict[int, list[Service]]:
    """Outbound HTTP ports and the services that have them, ports ascending."""
    by_port: dict[int, list[Service]] = {}
    for service in services:
        for port in service.ports:
            if is_http(port.protocol):
                by_port.setdefault(port.number, []).append(service)
    return dict(sorted(by_port.items()))
