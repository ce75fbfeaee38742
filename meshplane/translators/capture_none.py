"""Sidecars without traffic capture (INTERCEPTION_MODE NONE, Istio's VM mode): listeners
bind real addresses as the Sidecar resource says, and there is no virtualOutbound or
virtualInbound since iptables redirects nothing.

- each `egress` entry with a port: a listener on ``bind:port`` (bind defaults to
  127.0.0.1) routing to the hosts that entry imports: HTTP through RDS ``BIND:PORT``
  (Istio's name for bind-specific listeners), anything else through a TCP proxy;
- an `egress` entry without a port (or no Sidecar at all, which imports ``*/*``): one such
  listener per port of the services it imports, as Istio does for captureMode NONE;
- each `ingress` entry: a listener on ``bind:port`` (bind defaults to 0.0.0.0) forwarding to
  ``inbound|PORT||``, a STATIC cluster to the entry's `defaultEndpoint`.
Unix domain socket binds are not supported yet and are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_components_pb2 import Endpoint as EnvoyEndpoint
from envoy.config.endpoint.v3.endpoint_components_pb2 import LbEndpoint, LocalityLbEndpoints
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from meshplane.api.networking.sidecar import IstioEgressListener, IstioIngressListener
from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import ProxyView
from meshplane.model.services import Service
from meshplane.translators.hosts import egress_allows
from meshplane.translators.inbound import inbound_filter_chain
from meshplane.translators.listeners import listener
from meshplane.translators.mtls import add_tls_inspector, inbound_mtls_chains
from meshplane.translators.names import (
    WILDCARD_ADDRESS,
    inbound_cluster_name,
    is_http,
    listener_name,
    sidecar_route_name,
)
from meshplane.translators.outbound import (
    l4_listener,
    outbound_http_listener,
    service_chain_specs,
)
from meshplane.translators.plans import routable
from meshplane.translators.protos import duration, endpoint_address
from meshplane.translators.routes import VirtualServiceIndex, route_configuration
from meshplane.translators.tcp_routes import ChainSet

DEFAULT_EGRESS_BIND = "127.0.0.1"
IMPORT_ALL = IstioEgressListener(hosts=("*/*",))


@dataclass
class NoneModeParts:
    listeners: list[Listener] = field(default_factory=list)
    routes: list[RouteConfiguration] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


def _port_services(services: Sequence[Service], port: int) -> list[Service]:
    return [s for s in services if (p := s.port(port)) is not None and routable(p)]


def _add_egress_port(
    parts: NoneModeParts, view: ProxyView, bind: str, port: int, http: bool, imported: list[Service]
) -> None:
    name = listener_name(bind, port)
    services = _port_services(imported, port)
    if name in parts.names or not services:
        return
    parts.names.add(name)
    if http:
        route_name = sidecar_route_name(port, bind)
        parts.listeners.append(outbound_http_listener(bind, port, route_name, bind=True))
        parts.routes.append(route_configuration(route_name, port, services, view))
    else:
        # TLS services share the port by SNI; plain TCP ones: the first by hostname wins.
        chains = ChainSet()
        index = VirtualServiceIndex(view)
        for service in services:
            service_port = service.port(port)
            assert service_port is not None  # _port_services keeps services with the port
            vs = index.lookup(service.hostname)
            for spec in service_chain_specs(view, vs, service, service_port, by_sni=True):
                chains.add(spec)
        parts.listeners.append(l4_listener(view, name, chains, bind=True))


def _add_egress(parts: NoneModeParts, view: ProxyView, entry: IstioEgressListener) -> None:
    bind = entry.bind or DEFAULT_EGRESS_BIND
    if bind.startswith("unix://"):
        return
    imported = [s for s in view.services if egress_allows(entry.hosts, s, view.namespace)]
    if entry.port is not None:
        http = is_http(entry.port.protocol)
        _add_egress_port(parts, view, bind, entry.port.number, http, imported)
        return
    ports = sorted({p.number for s in imported for p in s.ports})
    for port in ports:
        http = any(is_http(p.protocol) for s in imported if (p := s.port(port)) is not None)
        _add_egress_port(parts, view, bind, port, http, imported)


def static_cluster(name: str, target: str, mesh: MeshConfig) -> Cluster:
    """A STATIC cluster with one endpoint (``IP:PORT`` or ``unix:///path``)."""
    endpoint = LbEndpoint(endpoint=EnvoyEndpoint(address=endpoint_address(target)))
    return Cluster(
        name=name,
        type=Cluster.STATIC,
        connect_timeout=duration(mesh.connect_timeout),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name, endpoints=[LocalityLbEndpoints(lb_endpoints=[endpoint])]
        ),
    )


def _add_ingress(parts: NoneModeParts, view: ProxyView, entry: IstioIngressListener) -> None:
    bind = entry.bind or WILDCARD_ADDRESS
    port = entry.port.number
    name = listener_name(bind, port)
    if name in parts.names:
        return
    parts.names.add(name)
    build = partial(inbound_filter_chain, port, entry.port.protocol, match_port=False, view=view)
    chains = inbound_mtls_chains(view, port, entry.port.protocol, build)
    ingress = listener(name, bind, port, chains, direction="inbound")
    add_tls_inspector(ingress)
    parts.listeners.append(ingress)
    target = entry.default_endpoint or f"127.0.0.1:{port}"
    parts.clusters.append(static_cluster(inbound_cluster_name(port), target, view.mesh))


def none_mode_parts(view: ProxyView) -> NoneModeParts:
    """Listeners, route configurations and inbound clusters for a NONE-mode sidecar."""
    parts = NoneModeParts()
    spec = view.sidecar.spec if view.sidecar else None
    for ingress in spec.ingress if spec else ():
        _add_ingress(parts, view, ingress)
    egress = spec.egress if spec and spec.egress else (IMPORT_ALL,)
    # Entries with a port claim their listener before catch-all entries fill in the rest.
    for entry in sorted(egress, key=lambda e: e.port is None):
        _add_egress(parts, view, entry)
    return parts
