"""Istio's protocol selection for Kubernetes service ports: appProtocol, else the port name.

Istio reads `appProtocol` first, then a port name of the form `<protocol>[-<suffix>]`
(case-insensitive). Istio would sniff unnamed ports; meshplane treats them as TCP, which is
always correct on the wire if less featureful. Protocols are upper case throughout the model.
"""

from __future__ import annotations

_BY_NAME = {
    "http": "HTTP",
    "http2": "HTTP2",
    "grpc": "GRPC",
    "grpc-web": "GRPC-WEB",
    "https": "HTTPS",
    "tcp": "TCP",
    "tls": "TLS",
    "mongo": "MONGO",
    "redis": "REDIS",
    "mysql": "MYSQL",
    "udp": "UDP",
}
# appProtocol values Kubernetes itself defines.
_K8S_APP_PROTOCOLS = {
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "HTTPS",
}


def port_protocol(name: str, app_protocol: str | None = None, transport: str = "TCP") -> str:
    """The Istio protocol of a Kubernetes service port."""
    if transport.upper() == "UDP":
        return "UDP"
    if app_protocol:
        found = _K8S_APP_PROTOCOLS.get(app_protocol.lower()) or _BY_NAME.get(app_protocol.lower())
        if found:
            return found
    lowered = name.lower()
    if lowered == "grpc-web" or lowered.startswith("grpc-web-"):
        return "GRPC-WEB"
    prefix = lowered.split("-", 1)[0]
    return _BY_NAME.get(prefix, "TCP")


def normalize(protocol: str) -> str:
    """Istio protocol names as given in Istio resources ("Mongo", "http") -> upper case."""
    return protocol.upper()
