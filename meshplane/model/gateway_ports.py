"""Which port a gateway proxy really listens on for a Gateway server port.

Istio (since 1.6; pilot's `resolvePorts`, istio/istio#32919) treats a Gateway server port
that is a port of a Service in front of the gateway as that Service port: the listener binds
the Service's targetPort, which is where the Service sends the traffic. That is how a
Gateway on port 80 works for a gateway pod that cannot bind 80 (Service 80 -> 8080). With
label-selected Gateways the mapping is a best guess: the first of the gateway's service
targets whose Service port is the server port wins (Istio keeps that choice for backwards
compatibility; istio/istio#46904 was not merged), and a Service labelled
``experimental.istio.io/disable-gateway-port-translation`` is skipped. A port no Service
declares binds as written.

The gateway's service targets are found as Istio's Kubernetes registry finds a proxy's:
first the registry's endpoints that are this workload (its Pod or WorkloadEntry: address
among the proxy's IPs, same namespace, named as the proxy's workload or pod), whose port is
the resolved targetPort (named ports and WorkloadEntry port maps included); without any,
the Kubernetes Services of the proxy's namespace whose selector matches its labels (Istio's
fallback from proxy metadata), with their numeric targetPorts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshplane.model.mesh import MeshModel
from meshplane.model.proxy import Proxy
from meshplane.model.services import Endpoint, Service
from meshplane.model.workloads import selects

__all__ = ["DISABLE_TRANSLATION_LABEL", "GatewayPorts", "gateway_ports"]

DISABLE_TRANSLATION_LABEL = "experimental.istio.io/disable-gateway-port-translation"

# (server port, listen port) pairs for the ports that differ, sorted.
GatewayPorts = tuple[tuple[int, int], ...]


def gateway_ports(
    proxy: Proxy, mesh: MeshModel, endpoints_at: Mapping[str, Iterable[Endpoint]]
) -> GatewayPorts:
    """The ports of `proxy` (a router) that bind elsewhere than the Gateway server says.

    `endpoints_at` maps an address to the registry's endpoints there."""
    services = mesh.services
    targets = _own_endpoint_targets(proxy, services, endpoints_at) or _selecting_service_targets(
        proxy, services
    )
    chosen: dict[int, int] = {}
    for service_port, target_port in targets:
        chosen.setdefault(service_port, target_port)
    return tuple(sorted((s, t) for s, t in chosen.items() if s != t))


def _translatable(svc: Service | None) -> bool:
    return svc is not None and DISABLE_TRANSLATION_LABEL not in svc.labels


def _own_endpoint_targets(
    proxy: Proxy,
    services: Mapping[str, Service],
    endpoints_at: Mapping[str, Iterable[Endpoint]],
) -> list[tuple[int, int]]:
    """(service port, target port) of the endpoints that are this proxy's workload, by
    Service hostname then port. On one machine every workload may share 127.0.0.1, so the
    address alone does not say whose endpoint it is: the workload name must match too."""
    own = {
        (ep.hostname, ep.service_port, ep.port)
        for ip in dict.fromkeys(proxy.instance_ips or (proxy.ip,))
        for ep in endpoints_at.get(ip, ())
        if ep.namespace == proxy.namespace
        and ep.workload in (proxy.workload_name, proxy.name)
        and _translatable(services.get(ep.hostname))
    }
    return [(service_port, port) for _, service_port, port in sorted(own)]


def _selecting_service_targets(
    proxy: Proxy, services: Mapping[str, Service]
) -> list[tuple[int, int]]:
    """(service port, numeric target port) of the Kubernetes Services in the proxy's
    namespace that select its labels, by hostname (the model's order). A named targetPort
    cannot be resolved without the pod, so it does not translate (Istio: port 0, skipped)."""
    if not proxy.labels:
        return []
    found: list[tuple[int, int]] = []
    for svc in services.values():
        if (
            svc.source != "kubernetes"
            or svc.namespace != proxy.namespace
            or not svc.selector
            or not _translatable(svc)
            or not selects(dict(svc.selector), proxy.labels)
        ):
            continue
        found.extend((p.number, p.target_port) for p in svc.ports if p.target_port)
    return found
