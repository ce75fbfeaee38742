"""DestinationRule: what happens to traffic after routing (subsets, load balancing, pools, TLS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Durations are float seconds throughout the api package.


@dataclass(frozen=True)
class HttpCookie:
    name: str
    path: str = ""
    ttl: float | None = None


@dataclass(frozen=True)
class ConsistentHash:
    http_header_name: str | None = None
    http_cookie: HttpCookie | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str | None = None
    minimum_ring_size: int | None = None
    maglev: bool = False


@dataclass(frozen=True)
class LoadBalancer:
    simple: str | None = None  # ROUND_ROBIN | LEAST_REQUEST | LEAST_CONN | RANDOM | PASSTHROUGH
    consistent_hash: ConsistentHash | None = None
    warmup_duration: float | None = None


@dataclass(frozen=True)
class TcpKeepalive:
    probes: int | None = None
    time: float | None = None
    interval: float | None = None


@dataclass(frozen=True)
class TcpSettings:
    max_connections: int | None = None
    connect_timeout: float | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: float | None = None


@dataclass(frozen=True)
class HttpSettings:
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: float | None = None
    h2_upgrade_policy: str | None = None  # DEFAULT | DO_NOT_UPGRADE | UPGRADE
    use_client_protocol: bool = False
    max_concurrent_streams: int | None = None


@dataclass(frozen=True)
class ConnectionPool:
    tcp: TcpSettings | None = None
    http: HttpSettings | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_errors: int | None = None  # deprecated alias Istio still accepts
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval: float | None = None
    base_ejection_time: float | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


@dataclass(frozen=True)
class ClientTLS:
    mode: str = "DISABLE"  # DISABLE | SIMPLE | MUTUAL | ISTIO_MUTUAL
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    sni: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PortTrafficPolicy:
    port: int
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRuleSpec:
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Mapping[str, str] | None = None
