"""Gateway `tls.mode: AUTO_PASSTHROUGH`: route by the client's SNI to the cluster it names,
with the TLS passed through untouched (Istio's SNI-DNAT, used by east-west gateways).

A mesh client talking mTLS to a service behind the gateway sends Istio's SNI
``outbound_.PORT_.SUBSET_.HOST``; no VirtualService is involved. As Istio does for a
gateway in sni-dnat mode, the gateway gets one extra cluster per admitted service port and
subset, named by that SNI, with the service's endpoints and load balancing but no TLS of its
own (the client's TLS goes through as bytes), and the server's listener one filter chain per
such cluster matching its name as SNI and forwarding with tcp_proxy. A server admits the
services whose host matches one of its `hosts` (``ns/host`` limits the namespace).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshplane.api.meta import Object
from meshplane.api.networking.gateway import GatewaySpec, Server
from meshplane.model.hosts import host_matches
from meshplane.model.services import Service

AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
# What Istio's SNI-DNAT names start with (BuildDNSSrvSubsetKey's "outbound_").
SNI_DNAT_PREFIX = "outbound_."


def is_auto_passthrough(server: Server) -> bool:
    """An HTTPS or TLS server in AUTO_PASSTHROUGH mode (on a plain-HTTP port the mode means
    nothing: that server is plain HTTP)."""
    return (
        server.tls is not None
        and server.tls.mode == AUTO_PASSTHROUGH
        and server.port.protocol in ("HTTPS", "TLS")
    )


def admits(server: Server, gateway_namespace: str, service: Service) -> bool:
    """True when one of the server's ``[ns/]host`` entries matches the service."""
    for entry in server.hosts:
        ns, _, host = entry.rpartition("/")
        if ns == ".":
            ns = gateway_namespace
        if ns not in ("", "*", service.namespace):
            continue
        if host_matches(host, service.hostname):
            return True
    return False


def auto_passthrough_servers(
    gateways: Iterable[Object[GatewaySpec]],
) -> list[tuple[str, Server]]:
    """(gateway namespace, server) of every AUTO_PASSTHROUGH server, in Gateway order."""
    return [
        (gw.namespace, server)
        for gw in gateways
        for server in gw.spec.servers
        if is_auto_passthrough(server)
    ]


def admitted_anywhere(servers: list[tuple[str, Server]], service: Service) -> bool:
    return any(admits(server, ns, service) for ns, server in servers)
