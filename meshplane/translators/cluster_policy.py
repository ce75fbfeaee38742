"""DestinationRule traffic policy -> the Cluster fields it controls: load balancing,
circuit breakers, outlier detection, TCP keepalive and upstream HTTP protocol options.

Each builder takes one policy section and returns the Envoy message for it, following
Istio's cluster_traffic_policy.go (defaults and field mappings are cited where they differ
from Envoy's own defaults)."""

from __future__ import annotations

from envoy.config.cluster.v3.circuit_breaker_pb2 import CircuitBreakers
from envoy.config.cluster.v3.cluster_pb2 import Cluster, UpstreamConnectionOptions
from envoy.config.cluster.v3.outlier_detection_pb2 import OutlierDetection
from envoy.config.core.v3.address_pb2 import TcpKeepalive
from envoy.config.core.v3.protocol_pb2 import (
    Http1ProtocolOptions,
    Http2ProtocolOptions,
)
from envoy.config.core.v3.protocol_pb2 import (
    HttpProtocolOptions as CommonHttpProtocolOptions,
)
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions
from envoy.type.v3.percent_pb2 import Percent
from google.protobuf.wrappers_pb2 import UInt64Value

from meshplane.api.networking.destination_rule import (
    ConnectionPool,
    LoadBalancer,
)
from meshplane.api.networking.destination_rule import (
    OutlierDetection as OutlierSpec,
)
from meshplane.translators.names import is_http, is_http2
from meshplane.translators.protos import duration, u32

HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# Istio lifts Envoy's default circuit-breaker limits (1024) to "unlimited" unless a
# DestinationRule sets them: a mesh should not shed load the user never asked it to.
_UNLIMITED = 4294967295
# Istio's default ring size when consistentHash.minimumRingSize is not given.
_DEFAULT_RING_SIZE = 1024

_SIMPLE_LB = {
    "ROUND_ROBIN": Cluster.ROUND_ROBIN,
    "LEAST_CONN": Cluster.LEAST_REQUEST,
    "LEAST_REQUEST": Cluster.LEAST_REQUEST,
    "RANDOM": Cluster.RANDOM,
    "PASSTHROUGH": Cluster.CLUSTER_PROVIDED,
}


def lb_policy(lb: LoadBalancer | None) -> Cluster.LbPolicy.ValueType:
    """Envoy's lb_policy; LEAST_REQUEST when unset (Istio's default since 1.14)."""
    if lb is None:
        return Cluster.LEAST_REQUEST
    if lb.consistent_hash is not None:
        return Cluster.MAGLEV if lb.consistent_hash.maglev else Cluster.RING_HASH
    return _SIMPLE_LB.get((lb.simple or "").upper(), Cluster.LEAST_REQUEST)


def ring_hash_lb_config(lb: LoadBalancer | None) -> Cluster.RingHashLbConfig | None:
    """Ring size for RING_HASH clusters; None for any other policy."""
    if lb is None or lb.consistent_hash is None or lb.consistent_hash.maglev:
        return None
    size = lb.consistent_hash.minimum_ring_size or _DEFAULT_RING_SIZE
    return Cluster.RingHashLbConfig(minimum_ring_size=UInt64Value(value=size))


def circuit_breakers(pool: ConnectionPool | None) -> CircuitBreakers:
    """Thresholds from connectionPool (tcp.maxConnections, http.*), unlimited otherwise."""
    tcp = pool.tcp if pool else None
    http = pool.http if pool else None

    def limit(value: int | None) -> int:
        return value if value is not None else _UNLIMITED

    return CircuitBreakers(
        thresholds=[
            CircuitBreakers.Thresholds(
                max_connections=u32(limit(tcp.max_connections if tcp else None)),
                max_pending_requests=u32(limit(http.http1_max_pending_requests if http else None)),
                max_requests=u32(limit(http.http2_max_requests if http else None)),
                max_retries=u32(limit(http.max_retries if http else None)),
                track_remaining=True,
            )
        ]
    )


def upstream_connection_options(pool: ConnectionPool | None) -> UpstreamConnectionOptions | None:
    """TCP keepalive from connectionPool.tcp.tcpKeepalive (times in whole seconds)."""
    keepalive = pool.tcp.tcp_keepalive if pool and pool.tcp else None
    if keepalive is None:
        return None
    msg = TcpKeepalive()
    if keepalive.probes is not None:
        msg.keepalive_probes.CopyFrom(u32(keepalive.probes))
    if keepalive.time is not None:
        msg.keepalive_time.CopyFrom(u32(int(keepalive.time)))
    if keepalive.interval is not None:
        msg.keepalive_interval.CopyFrom(u32(int(keepalive.interval)))
    return UpstreamConnectionOptions(tcp_keepalive=msg)


def outlier_detection(spec: OutlierSpec) -> OutlierDetection:
    """Envoy outlier detection; enforcement 100% for each consecutive-error kind set."""
    out = OutlierDetection()
    gateway_errors = spec.consecutive_gateway_errors
    if spec.consecutive_errors is not None and gateway_errors is None:
        # Deprecated consecutiveErrors counts gateway errors only (istio/api#617), and
        # Istio then turns 5xx enforcement off.
        gateway_errors = spec.consecutive_errors
        out.enforcing_consecutive_5xx.CopyFrom(u32(0))
    if gateway_errors is not None:
        out.consecutive_gateway_failure.CopyFrom(u32(gateway_errors))
        out.enforcing_consecutive_gateway_failure.CopyFrom(u32(100 if gateway_errors else 0))
    if spec.consecutive_5xx_errors is not None:
        out.consecutive_5xx.CopyFrom(u32(spec.consecutive_5xx_errors))
        out.enforcing_consecutive_5xx.CopyFrom(u32(100 if spec.consecutive_5xx_errors else 0))
    if spec.interval is not None:
        out.interval.CopyFrom(duration(spec.interval))
    if spec.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(spec.base_ejection_time))
    if spec.max_ejection_percent is not None:
        out.max_ejection_percent.CopyFrom(u32(spec.max_ejection_percent))
    if spec.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if spec.consecutive_local_origin_failures is not None:
            out.consecutive_local_origin_failure.CopyFrom(
                u32(spec.consecutive_local_origin_failures)
            )
    return out


def healthy_panic_threshold(spec: OutlierSpec) -> Percent:
    """Istio sets the panic threshold to minHealthPercent (0 when unset) whenever outlier
    detection is on: with few pods per service, panic mode would undo the ejections."""
    return Percent(value=float(spec.min_health_percent or 0))


def _common_http_options(pool: ConnectionPool | None) -> CommonHttpProtocolOptions | None:
    http = pool.http if pool else None
    tcp = pool.tcp if pool else None
    opts = CommonHttpProtocolOptions()
    if http and http.idle_timeout is not None:
        opts.idle_timeout.CopyFrom(duration(http.idle_timeout))
    if http and http.max_requests_per_connection is not None:
        opts.max_requests_per_connection.CopyFrom(u32(http.max_requests_per_connection))
    if tcp and tcp.max_connection_duration is not None:
        opts.max_connection_duration.CopyFrom(duration(tcp.max_connection_duration))
    return opts if opts.ByteSize() else None


def _http2_options(pool: ConnectionPool | None) -> Http2ProtocolOptions:
    streams = pool.http.max_concurrent_streams if pool and pool.http else None
    return (
        Http2ProtocolOptions(max_concurrent_streams=u32(streams))
        if streams
        else (Http2ProtocolOptions())
    )


def http_protocol_options(protocol: str, pool: ConnectionPool | None) -> HttpProtocolOptions | None:
    """Upstream HTTP options for an HTTP port: HTTP/2 for HTTP2/GRPC ports (or when
    h2UpgradePolicy is UPGRADE), the client's protocol with useClientProtocol. None for
    non-HTTP ports and for HTTP/1.1 ports that need nothing beyond Envoy's defaults."""
    if not is_http(protocol):
        return None
    http = pool.http if pool else None
    common = _common_http_options(pool)
    upgrade = http is not None and (http.h2_upgrade_policy or "").upper() == "UPGRADE"
    opts = HttpProtocolOptions()
    if common is not None:
        opts.common_http_protocol_options.CopyFrom(common)
    if http is not None and http.use_client_protocol:
        downstream = opts.use_downstream_protocol_config
        downstream.http_protocol_options.CopyFrom(Http1ProtocolOptions())
        downstream.http2_protocol_options.CopyFrom(_http2_options(pool))
    elif is_http2(protocol) or upgrade:
        opts.explicit_http_config.http2_protocol_options.CopyFrom(_http2_options(pool))
    elif common is not None:
        opts.explicit_http_config.http_protocol_options.CopyFrom(Http1ProtocolOptions())
    else:
        return None
    return opts
