"""Istio's names for Envoy resources, kept in one place so every builder agrees on them.

Operators read these names in `istioctl proxy-config`, Envoy stats and dashboards; using
Istio's spelling means what they know carries over (reference/istio.md, section 7).
"""

from __future__ import annotations

BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"

VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
VIRTUAL_OUTBOUND_PORT = 15001
VIRTUAL_INBOUND_PORT = 15006

WILDCARD_ADDRESS = "0.0.0.0"
# Istio binds the upstream side of inbound passthrough to this address so that iptables
# rules can tell the proxy's own connections to the app from captured traffic.
INBOUND_PASSTHROUGH_BIND = "127.0.0.6"

# Protocols (Istio's names) whose traffic goes through an HTTP connection manager.
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
# Protocols whose upstream connections must speak HTTP/2.
HTTP2_PROTOCOLS = frozenset({"HTTP2", "GRPC", "GRPC-WEB"})


def is_http(protocol: str) -> bool:
    """True when Istio would route this port's traffic at L7."""
    return protocol.upper() in HTTP_PROTOCOLS


def is_http2(protocol: str) -> bool:
    """True when the upstream connection must use HTTP/2."""
    return protocol.upper() in HTTP2_PROTOCOLS


def outbound_cluster_name(port: int, hostname: str, subset: str = "") -> str:
    """``outbound|PORT|SUBSET|FQDN``."""
    return f"outbound|{port}|{subset}|{hostname}"


def inbound_cluster_name(port: int) -> str:
    """``inbound|PORT||`` (PORT is the workload's port)."""
    return f"inbound|{port}||"


def listener_name(address: str, port: int) -> str:
    """``ADDRESS_PORT``, e.g. ``0.0.0.0_9080`` or ``10.96.0.12_3306``."""
    return f"{address}_{port}"


def sidecar_route_name(port: int, bind: str = "") -> str:
    """RDS name of a sidecar's outbound HTTP port: ``PORT``, or ``BIND:PORT`` for listeners
    bound to a specific address (Istio's naming for Sidecar egress listeners with `bind`)."""
    if bind and bind != WILDCARD_ADDRESS:
        return f"{bind}:{port}"
    return str(port)


def gateway_route_name(port: int) -> str:
    """RDS name of a gateway's plain-HTTP port: ``http.PORT``."""
    return f"http.{port}"


def virtual_host_name(hostname: str, port: int) -> str:
    """``HOST:PORT``."""
    return f"{hostname}:{port}"


def config_path(namespace: str, kind: str, name: str) -> str:
    """Istio's reference to a config object, e.g.
    ``/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews``."""
    return f"/apis/networking.istio.io/v1/namespaces/{namespace}/{kind}/{name}"
