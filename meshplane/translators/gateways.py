"""Router proxies (ingress and egress gateways): Gateway servers -> listeners and routes.

Servers are grouped by (bind, port). A plain-HTTP server gets a real listener
``0.0.0.0_PORT`` whose HCM reads RDS ``http.PORT``; that route configuration has one virtual
host per host shared by a server and a VirtualService bound to its Gateway (wildcards
intersected as Istio does), with `httpsRedirect` as require_tls ALL.

Other servers share a listener per (bind, port), one filter chain per server (Istio's
shape): HTTPS with SIMPLE/MUTUAL termination matches the server's hosts as SNI, terminates
TLS with the certificate files (or SDS ``kubernetes://NAME``; a server whose Secret is
missing is left out, as Istio does) and routes by RDS ``https.PORT.PORTNAME.GW.NS``;
ISTIO_MUTUAL terminates with the gateway's own mesh certificate (left out on a gateway
without one); PASSTHROUGH matches the `sniHosts` of bound `tls` routes and forwards the
connection as is; AUTO_PASSTHROUGH routes Istio's ``outbound_.PORT_.SUBSET_.HOST`` SNI to
that cluster (auto_passthrough.py); TCP (and TLS terminated on a TLS port) forwards by bound
`tcp` routes. A port whose first server is plain HTTP stays plain HTTP (Istio reports the
others as conflicts).

Servers are grouped, and listeners bind, by the port the proxy really listens on: the
server's port, or the targetPort a Service in front of the gateway maps it to
(`ProxyView.gateway_ports`, Istio's resolvePorts). The plain-HTTP route configuration is
named after that port (``http.TARGET``, as Istio's gatewayRDSRouteName), an HTTPS one after
the server's port; VirtualService `port` matches and virtual host names keep the server's.

The AuthorizationPolicies (and RequestAuthentications) selecting the gateway's labels, or
namespace-wide in its namespace or the root one, apply as on a sidecar's inbound side: HTTP
RBAC (and jwt_authn) in every HCM, network RBAC in front of every TCP/TLS chain. Every HCM
takes the client's address (what `remoteIpBlocks` and access logs see) from its peer, or,
behind the mesh's `gatewayTopology.numTrustedProxies` proxies, from X-Forwarded-For.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from envoy.config.core.v3.base_pb2 import TransportSocket
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import (
    DirectResponseAction,
    Route,
    VirtualHost,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.meta import Object
from meshplane.api.networking.gateway import Server
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.model.gateway_credentials import missing_credential
from meshplane.model.hosts import fqdn
from meshplane.model.scope import ProxyView
from meshplane.translators.auto_passthrough import AUTO_PASSTHROUGH, SNI_DNAT_PREFIX, admits
from meshplane.translators.domains import dedupe_domains
from meshplane.translators.filters.rbac import network_rbac_filters
from meshplane.translators.gateway_tls import (
    PASSTHROUGH,
    downstream_transport_socket,
    https_route_name,
    server_names,
    terminates,
)
from meshplane.translators.hosts import more_specific
from meshplane.translators.http_filters import security_filters
from meshplane.translators.http_routes import (
    RouteContext,
    allow_direct_response_bodies,
    virtual_service_routes,
)
from meshplane.translators.listeners import (
    filter_chain,
    hcm_filter,
    http_connection_manager,
    listener,
    tcp_proxy_filter,
    tls_inspector,
)
from meshplane.translators.names import (
    WILDCARD_ADDRESS,
    gateway_route_name,
    is_http,
    listener_name,
    virtual_host_name,
)
from meshplane.translators.plans import outbound_cluster_plans
from meshplane.translators.tcp_routes import (
    ChainSet,
    ChainSpec,
    tcp_route_chains,
    tls_route_chains,
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


def listen_port(view: ProxyView, server: Server) -> int:
    """Where the server's listener binds: its port, or the targetPort a Service in front of
    the gateway maps that port to."""
    return dict(view.gateway_ports).get(server.port.number, server.port.number)


def http_servers(view: ProxyView) -> dict[int, list[BoundServer]]:
    """Plain-HTTP servers by listen port, ports ascending, in Gateway order within a port."""
    by_port: dict[int, list[BoundServer]] = {}
    for gw in view.gateways:
        for server in gw.spec.servers:
            if plain_http(server):
                bound = BoundServer(f"{gw.namespace}/{gw.name}", gw.namespace, server)
                by_port.setdefault(listen_port(view, server), []).append(bound)
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


def _virtual_hosts(view: ProxyView, servers: list[BoundServer]) -> list[VirtualHost]:
    """Virtual hosts named after the first server's port; each server's routes match its
    own port (the one VirtualServices name, whatever the listener binds)."""
    port = servers[0].server.port.number
    routes_by_host: dict[str, list[Route]] = {}
    redirect: set[str] = set()
    merged: set[tuple[str, str, str]] = set()  # (vs namespace, vs name, host) already added
    for bound in servers:
        ctx = RouteContext(view, bound.server.port.number, bound.gateway)
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
    view: ProxyView, port: int, servers: list[BoundServer], name: str = ""
) -> RouteConfiguration:
    """`name` (default ``http.PORT``, `port` the listen port) with the virtual hosts of
    `servers`."""
    first = servers[0].server.port.number
    hosts = _virtual_hosts(view, servers) or [blackhole_virtual_host(first)]
    config = RouteConfiguration(
        name=name or gateway_route_name(port),
        virtual_hosts=hosts,
        validate_clusters=BoolValue(value=False),
    )
    return allow_direct_response_bodies(config)


def l4_servers(view: ProxyView, taken: set[str]) -> dict[tuple[str, int], list[BoundServer]]:
    """HTTPS, TLS and TCP servers by (bind, listen port), leaving out listeners in `taken`
    (plain HTTP ones)."""
    found: dict[tuple[str, int], list[BoundServer]] = {}
    for gw in view.gateways:
        for server in gw.spec.servers:
            bind = server.bind or WILDCARD_ADDRESS
            port = listen_port(view, server)
            if plain_http(server) or listener_name(bind, port) in taken:
                continue
            bound = BoundServer(f"{gw.namespace}/{gw.name}", gw.namespace, server)
            found.setdefault((bind, port), []).append(bound)
    return dict(sorted(found.items()))


def _bound_virtual_services(
    view: ProxyView, bound: BoundServer
) -> Iterator[tuple[Object[VirtualServiceSpec], list[str]]]:
    """VirtualServices bound to the server's Gateway sharing a host with it, each with the
    server hosts its namespace may use."""
    suffix = view.mesh.dns_domain_suffix
    for vs in view.virtual_services:
        if not _bound_to(vs, bound.gateway):
            continue
        server_hosts = list(_server_hosts(bound, vs.namespace))
        vs_hosts = [fqdn(h, vs.namespace, suffix) for h in vs.spec.hosts]
        if any(more_specific(s, v) for s in server_hosts for v in vs_hosts):
            yield vs, server_hosts


def _narrowed_to(server_hosts: list[str]) -> Callable[[str], str | None]:
    """An SNI host as the server admits it (the narrower of the two), or None."""

    def allowed(sni: str) -> str | None:
        return next((m for h in server_hosts if (m := more_specific(h, sni))), None)

    return allowed


def _l4_specs(
    view: ProxyView, bound: BoundServer, tls: TransportSocket | None = None
) -> Iterator[ChainSpec]:
    """PASSTHROUGH: bound `tls` routes by SNI. Otherwise bound `tcp` routes, behind the
    server's TLS termination (`tls`, matched by its hosts as SNI) when given."""
    ctx = RouteContext(view, bound.server.port.number, bound.gateway)
    passthrough = bound.server.tls is not None and bound.server.tls.mode == PASSTHROUGH
    names = server_names(bound.server) if tls is not None else ()
    rbac = tuple(network_rbac_filters(view, bound.server.port.number))
    for vs, hosts in _bound_virtual_services(view, bound):
        if passthrough:
            for spec in tls_route_chains(vs, ctx, _narrowed_to(hosts)):
                yield dataclasses.replace(spec, filters=(*rbac, *spec.filters))
            continue
        for spec in tcp_route_chains(vs, ctx):
            filters = (*rbac, *spec.filters)
            yield dataclasses.replace(
                spec, filters=filters, server_names=names, transport_socket=tls
            )


def gateway_http_connection_manager(
    view: ProxyView, listener: str, route_name: str
) -> HttpConnectionManager:
    """A gateway HCM: the proxy's security filters, the client address from the peer or,
    behind `numTrustedProxies` proxies, from X-Forwarded-For (Istio's gateway HCM)."""
    return http_connection_manager(
        f"outbound_{listener}",
        "gateway",
        rds_name=route_name,
        security_filters=security_filters(view),
        xff_num_trusted_hops=view.mesh.num_trusted_proxies,
    )


def _auto_passthrough_specs(view: ProxyView, bound: BoundServer) -> list[ChainSpec]:
    """One chain per SNI-DNAT cluster the server admits, matching its name as SNI."""
    rbac = tuple(network_rbac_filters(view, bound.server.port.number))
    return [
        ChainSpec(
            (*rbac, tcp_proxy_filter(plan.name, plan.name)),
            server_names=(plan.name,),
            name=plan.name,
        )
        for plan in outbound_cluster_plans(view)
        if plan.name.startswith(SNI_DNAT_PREFIX)
        and admits(bound.server, bound.namespace, plan.service)
    ]


def _server_specs(
    view: ProxyView, bound: BoundServer, listener: str
) -> tuple[list[ChainSpec], list[RouteConfiguration]]:
    """The chains (and HTTPS route configuration) of one non-HTTP server; nothing for TLS
    it cannot serve (ISTIO_MUTUAL without workload certificates, a `credentialName` whose
    Secret does not exist: Envoy would wait for its SDS secret and keep the whole port
    warming)."""
    server, tls = bound.server, bound.server.tls
    if server.port.protocol not in ("HTTPS", "TLS"):
        return list(_l4_specs(view, bound)), []
    if tls is None:
        return [], []
    if tls.mode == PASSTHROUGH:
        return list(_l4_specs(view, bound)), []
    if tls.mode == AUTO_PASSTHROUGH:
        return _auto_passthrough_specs(view, bound), []
    if not terminates(tls, view.workload_certs) or missing_credential(tls, view.credential_names):
        return [], []
    if server.port.protocol == "TLS":
        return list(_l4_specs(view, bound, downstream_transport_socket(tls, http=False))), []
    port = server.port.number
    route_name = https_route_name(port, server.port.name, bound.gateway)
    hcm = gateway_http_connection_manager(view, listener, route_name)
    spec = ChainSpec(
        (hcm_filter(hcm),),
        server_names=server_names(server),
        transport_socket=downstream_transport_socket(tls, http=True),
        name=route_name,
    )
    return [spec], [gateway_route_configuration(view, port, [bound], route_name)]


def l4_gateway_listener(
    view: ProxyView, bind: str, port: int, servers: list[BoundServer]
) -> tuple[Listener | None, list[RouteConfiguration]]:
    """One listener for the HTTPS/TLS/TCP servers on (bind, port); None without chains."""
    name = listener_name(bind, port)
    chains = ChainSet()
    routes: list[RouteConfiguration] = []
    for bound in servers:
        specs, server_routes = _server_specs(view, bound, name)
        if [chains.add(spec) for spec in specs].count(True):
            routes.extend(server_routes)
    if not chains.chains:
        return None, []
    result = listener(name, bind, port, chains.chains)
    if chains.uses_sni:
        result.listener_filters.append(tls_inspector())
    return result, routes


def gateway_listeners_and_routes(
    view: ProxyView,
) -> tuple[list[Listener], list[RouteConfiguration]]:
    """One listener per (bind, port) of plain-HTTP servers and one ``http.PORT`` each port,
    then the listeners (and ``https.*`` route configurations) of the other servers."""
    listeners: dict[str, Listener] = {}
    routes = []
    for port, servers in http_servers(view).items():
        route_name = gateway_route_name(port)
        for bound in servers:
            bind = bound.server.bind or WILDCARD_ADDRESS
            name = listener_name(bind, port)
            if name not in listeners:
                hcm = gateway_http_connection_manager(view, name, route_name)
                chain = filter_chain([hcm_filter(hcm)])
                listeners[name] = listener(name, bind, port, [chain])
        routes.append(gateway_route_configuration(view, port, servers))
    for (bind, port), servers in l4_servers(view, set(listeners)).items():
        l4, l4_routes = l4_gateway_listener(view, bind, port, servers)
        if l4 is not None:
            listeners[l4.name] = l4
            routes.extend(l4_routes)
    return list(listeners.values()), routes
