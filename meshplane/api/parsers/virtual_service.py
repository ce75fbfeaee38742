"""VirtualService: hosts, gateway binding, and the http/tcp/tls route lists."""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.virtual_service import (
    L4MatchAttributes,
    RouteDestination,
    TCPRoute,
    TLSRoute,
    VirtualServiceSpec,
)
from meshplane.api.parsers.common import destination, export_to, hosts
from meshplane.api.parsers.http_route import check_weights, http_route

_L4_MATCH_KEYS = ("destinationSubnets", "port", "sourceLabels", "gateways", "sourceNamespace")


def gateway_ref_problem(ref: str) -> str:
    """ "mesh", "name" (the VirtualService's namespace) or "namespace/name"."""
    if ref == "mesh":
        return ""
    ns, _, name = ref.rpartition("/")
    if ns and formats.dns1123_label_problem(ns):
        return f"gateway {ref!r}: namespace {ns!r} is not a valid namespace name"
    if formats.dns1123_subdomain_problem(name):
        return f"gateway {ref!r}: {name!r} is not a valid Gateway name"
    return ""


def virtual_service(f: Fields) -> VirtualServiceSpec:
    f.keys(("hosts", "gateways", "http", "tcp", "tls", "exportTo"))
    gateways = f.str_list("gateways", check=gateway_ref_problem)
    spec = VirtualServiceSpec(
        hosts=hosts(f, required=False, allow_ip=True),
        gateways=gateways,
        http=f.each("http", http_route),
        tcp=f.each("tcp", _tcp_route),
        tls=f.each("tls", _tls_route),
        export_to=export_to(f),
    )
    if not any(f.has(k) for k in ("http", "tcp", "tls")):
        f.problems.error(f.path, "one of http, tcp or tls is required")
    if not spec.hosts:
        # A VirtualService without hosts is a delegate (Istio 1.6+): only roots delegate.
        for i, http in enumerate(spec.http):
            if http.delegate is not None:
                f.problems.error(
                    f.at(f"http[{i}].delegate"),
                    "only a VirtualService with hosts can delegate (this one has none)",
                )
    bound_to_mesh = not gateways or "mesh" in gateways
    if bound_to_mesh and "*" in spec.hosts:
        f.error("hosts", "the wildcard host '*' is not allowed for routes bound to the mesh")
    return spec


def _l4_match(f: Fields, *, tls: bool) -> L4MatchAttributes:
    f.keys((*_L4_MATCH_KEYS, "sniHosts") if tls else _L4_MATCH_KEYS)
    return L4MatchAttributes(
        destination_subnets=f.str_list("destinationSubnets", check=formats.cidr_problem),
        port=f.port("port"),
        source_labels=f.str_map("sourceLabels", labels=True) or {},
        gateways=f.str_list("gateways", check=gateway_ref_problem),
        source_namespace=f.text("sourceNamespace"),
        sni_hosts=hosts(f, "sniHosts", required=True) if tls else (),
    )


def _route_destinations(f: Fields) -> tuple[RouteDestination, ...]:
    out: list[RouteDestination] = []
    for sub in f.objs("route", required=True):
        sub.keys(("destination", "weight"))
        dest = sub.read("destination", destination)
        if not sub.has("destination"):
            sub.error("destination", "required field is missing")
        weight = sub.integer("weight", lo=0, hi=100)
        if dest is not None:
            out.append(RouteDestination(dest, weight))
    check_weights(f, len(out), [d.weight for d in out])
    return tuple(out)


def _tcp_route(f: Fields) -> TCPRoute:
    f.keys(("match", "route"))
    matches = tuple(_l4_match(m, tls=False) for m in f.objs("match"))
    return TCPRoute(match=matches, route=_route_destinations(f))


def _tls_route(f: Fields) -> TLSRoute:
    f.keys(("match", "route"))
    matches = tuple(_l4_match(m, tls=True) for m in f.objs("match", required=True))
    return TLSRoute(match=matches, route=_route_destinations(f))
