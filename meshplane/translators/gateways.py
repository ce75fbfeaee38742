"""Router proxies (ingress and egress gateways): Gateway servers -> listeners and routes.

Servers are grouped by (bind, port). A plain-HTTP server gets a real listener
``0.0.0.0_PORT`` whose HCM reads RDS ``http.PORT``; that route configuration has one virtual
host per host shared by a server and a VirtualService bound to its Gateway (wildcards
intersected as Istio does), with `httpsRedirect` as require_tls ALL.

HTTPS/TLS servers (termination, passthrough) and TCP servers need SNI filter chains, SDS
credentials and TCP routes; they come with the next issue and are skipped here rather than
emitted as listeners without their TLS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import (
    DirectResponseAction,
    Route,
    VirtualHost,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.meta import Object
from meshplane.api.networking.gateway import GatewaySpec, Server
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.model.hosts import fqdn
from meshplane.model.scope import ProxyView
from meshplane.translators.domains import dedupe_domains
from meshplane.translators.hosts import more_specific
from meshplane.translators.http_routes import RouteContext, virtual_service_routes
from meshplane.translators.listeners import (
    filter_chain,
    hcm_filter,
    http_connection_manager,
    listener,
)
from meshplane.translators.names import (
    WILDCARD_ADDRESS,
    gateway_route_name,
    is_http,
    listener_name,
    virtual_host_name,
)


@dataclass(frozen=True)
class BoundServer:
    """A Gateway server with the Gateway's ``ns/name`` (what VirtualServices refer to)."""

    gateway: str
    namespace: str
    server: Server


def plain_http(server: Server) -> bool:
    """HTTP, HTTP2 and GRPC servers: no TLS termination (a `tls` block with httpsRedirect
    is still plain HTTP on this port)."""
    return is_http(server.port.protocol)


def http_servers(gateways: tuple[Object[GatewaySpec], ...]) -> dict[int, list[BoundServer]]:
    """Plain-HTTP servers by port, ports ascending, in Gateway order within a port."""
    by_port: dict[int, list[BoundServer]] = {}
    for gw in gateways:
        for server in gw.spec.servers:
            if plain_http(server):
                bound = BoundServer(f"{gw.namespace}/{gw.name}", gw.namespace, server)
                by_port.setdefault(server.port.number, []).append(bound)
    return dict(sorted(by_port.items()))


def _bound_to(vs: Object[VirtualServiceSpec], gateway: str) -> bool:
    refs = {g if "/" in g else f"{vs.namespace}/{g}" for g in vs.spec.gateways}
    return gateway in refs


def _server_hosts(bound: BoundServer, vs_namespace: str) -> Iterator[str]:
    """The server's hosts this VirtualService's namespace may bind (``ns/host`` form)."""
    for entry in bound.server.hosts:
        ns, _, host = entry.rpartition("/")
        if ns in ("", "*") or (ns == "." and vs_namespace == bound.namespace) or ns == vs_namespace:
            yield host


def gateway_domains(host: str) -> list[str]:
    """``host`` and ``host:*`` (any port, as clients add it), or ``*`` alone."""
    return ["*"] if host == "*" else [host, f"{host}:*"]


def _virtual_hosts(view: ProxyView, port: int, servers: list[BoundServer]) -> list[VirtualHost]:
    routes_by_host: dict[str, list[Route]] = {}
    redirect: set[str] = set()
    merged: set[tuple[str, str, str]] = set()  # (vs namespace, vs name, host) already added
    for bound in servers:
        ctx = RouteContext(view, port, bound.gateway)
        for vs in view.virtual_services:
            if not _bound_to(vs, bound.gateway):
                continue
            suffix = view.mesh.dns_domain_suffix
            vs_hosts = [fqdn(h, vs.namespace, suffix) for h in vs.spec.hosts]
            for server_host in _server_hosts(bound, vs.namespace):
                for vs_host in vs_hosts:
                    host = more_specific(server_host, vs_host)
                    if host is None or (vs.namespace, vs.name, host) in merged:
                        continue
                    merged.add((vs.namespace, vs.name, host))
                    routes_by_host.setdefault(host, []).extend(virtual_service_routes(vs, ctx))
                    if bound.server.tls is not None and bound.server.tls.https_redirect:
                        redirect.add(host)
    hosts = sorted(routes_by_host)
    result = []
    for host, domains in zip(hosts, dedupe_domains(gateway_domains(h) for h in hosts), strict=True):
        if not domains or not routes_by_host[host]:
            continue
        vhost = VirtualHost(name=virtual_host_name(host, port), domains=domains)
        vhost.routes.extend(routes_by_host[host])
        if host in redirect:
            vhost.require_tls = VirtualHost.ALL
        result.append(vhost)
    return result


def blackhole_virtual_host(port: int) -> VirtualHost:
    """What a gateway port with no bound VirtualService answers: 404 (Istio's shape)."""
    route = Route(name="default", direct_response=DirectResponseAction(status=404))
    route.match.prefix = "/"
    return VirtualHost(name=f"blackhole:{port}", domains=["*"], routes=[route])


def gateway_route_configuration(
    view: ProxyView, port: int, servers: list[BoundServer]
) -> RouteConfiguration:
    hosts = _virtual_hosts(view, port, servers) or [blackhole_virtual_host(port)]
    return RouteConfiguration(
        name=gateway_route_name(port), virtual_hosts=hosts, validate_clusters=BoolValue(value=False)
    )


def gateway_listeners_and_routes(
    view: ProxyView,
) -> tuple[list[Listener], list[RouteConfiguration]]:
    """One listener per (bind, port) of plain-HTTP servers and one ``http.PORT`` each port."""
    listeners: dict[str, Listener] = {}
    routes = []
    for port, servers in http_servers(view.gateways).items():
        route_name = gateway_route_name(port)
        for bound in servers:
            bind = bound.server.bind or WILDCARD_ADDRESS
            name = listener_name(bind, port)
            if name not in listeners:
                hcm = http_connection_manager(f"outbound_{name}", "gateway", rds_name=route_name)
                chain = filter_chain([hcm_filter(hcm)])
                listeners[name] = listener(name, bind, port, [chain])
        routes.append(gateway_route_configuration(view, port, servers))
    return list(listeners.values()), routes
