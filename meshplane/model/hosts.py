"""Host names as Istio treats them: short names resolved against a namespace, and wildcards.

Istio resolves a short host ("reviews") in a VirtualService or DestinationRule against the
object's own namespace (`reviews.<ns>.svc.cluster.local`), and matches "*.example.com"
against any name under example.com; "*" matches everything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from meshplane.api.formats import is_ip
from meshplane.api.meta import Object
from meshplane.api.networking.destination_rule import DestinationRuleSpec
from meshplane.api.networking.virtual_service import Destination, HTTPRoute, VirtualServiceSpec


def fqdn(host: str, namespace: str, domain_suffix: str) -> str:
    """Istio's ResolveShortnameToFQDN: names without a dot get `.<ns>.<suffix>`."""
    if not host or "." in host or host.startswith("*") or is_ip(host):
        return host
    return f"{host}.{namespace}.{domain_suffix}"


def host_matches(pattern: str, host: str) -> bool:
    """Whether a (possibly wildcard) pattern covers a concrete or wildcard host."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        return host.endswith(suffix) and len(host) > len(suffix)
    return False


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key: exact names first, then longer wildcard suffixes (more specific)."""
    return (0 if not pattern.startswith("*") else 1, -len(pattern))


def _dest(d: Destination, ns: str, suffix: str) -> Destination:
    host = fqdn(d.host, ns, suffix)
    return d if host == d.host else dataclasses.replace(d, host=host)


def _http(route: HTTPRoute, ns: str, suffix: str) -> HTTPRoute:
    return dataclasses.replace(
        route,
        route=tuple(
            dataclasses.replace(r, destination=_dest(r.destination, ns, suffix))
            for r in route.route
        ),
        mirrors=tuple(
            dataclasses.replace(m, destination=_dest(m.destination, ns, suffix))
            for m in route.mirrors
        ),
    )


def _l4(routes: tuple[Any, ...], ns: str, suffix: str) -> tuple[Any, ...]:
    return tuple(
        dataclasses.replace(
            r,
            route=tuple(
                dataclasses.replace(d, destination=_dest(d.destination, ns, suffix))
                for d in r.route
            ),
        )
        for r in routes
    )


def resolve_virtual_service(
    obj: Object[VirtualServiceSpec], suffix: str
) -> Object[VirtualServiceSpec]:
    """The VirtualService with every host and destination host as an FQDN (Istio does this
    when it builds its push context, so translators compare names directly)."""
    ns, spec = obj.namespace, obj.spec
    resolved = dataclasses.replace(
        spec,
        hosts=tuple(fqdn(h, ns, suffix) for h in spec.hosts),
        http=tuple(_http(r, ns, suffix) for r in spec.http),
        tcp=_l4(spec.tcp, ns, suffix),
        tls=_l4(spec.tls, ns, suffix),
    )
    return dataclasses.replace(obj, spec=resolved)


def resolve_destination_rule(
    obj: Object[DestinationRuleSpec], suffix: str
) -> Object[DestinationRuleSpec]:
    host = fqdn(obj.spec.host, obj.namespace, suffix)
    if host == obj.spec.host:
        return obj
    return dataclasses.replace(obj, spec=dataclasses.replace(obj.spec, host=host))
