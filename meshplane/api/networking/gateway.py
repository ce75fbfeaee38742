"""Gateway: the ports, hosts and TLS of an ingress or egress `router` proxy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatewayPort:
    number: int
    protocol: str  # HTTP | HTTPS | HTTP2 | GRPC | TCP | TLS | MONGO
    name: str
    target_port: int | None = None


@dataclass(frozen=True)
class ServerTLS:
    mode: str = "SIMPLE"  # PASSTHROUGH | SIMPLE | MUTUAL | AUTO_PASSTHROUGH | ISTIO_MUTUAL
    https_redirect: bool = False
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None


@dataclass(frozen=True)
class Server:
    port: GatewayPort
    hosts: tuple[str, ...]
    tls: ServerTLS | None = None
    bind: str | None = None
    name: str = ""


@dataclass(frozen=True)
class GatewaySpec:
    servers: tuple[Server, ...]
    selector: Mapping[str, str] = field(default_factory=dict)
