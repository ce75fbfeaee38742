"""Access logs and tracing, as the mesh config (Istio's MeshConfig) asks.

Listeners are built with meshplane's default access log: one JSON line per request or
connection on the proxy's stdout, so a local mesh (`meshplane up`) shows traffic without any
log pipeline. When the `istio` ConfigMap says otherwise (`accessLogFile`,
`accessLogEncoding`) or turns on Zipkin tracing, `apply_mesh_telemetry` rewrites every HTTP
connection manager and TCP proxy of the built listeners once, rather than threading the
settings through every listener builder; with the defaults it leaves them untouched.
Tracing follows Istio's sidecar config: the `envoy.tracers.zipkin` provider posting JSON v2
spans to the `zipkin` cluster, sampling `defaultConfig.tracing.sampling` percent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence

from envoy.config.accesslog.v3.accesslog_pb2 import AccessLog
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.substitution_format_string_pb2 import SubstitutionFormatString
from envoy.config.endpoint.v3.endpoint_components_pb2 import (
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.trace.v3.http_tracer_pb2 import Tracing
from envoy.config.trace.v3.zipkin_pb2 import ZipkinConfig
from envoy.extensions.access_loggers.file.v3.file_pb2 import FileAccessLog
from envoy.extensions.access_loggers.stream.v3.stream_pb2 import StderrAccessLog, StdoutAccessLog
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2 import TcpProxy
from envoy.type.tracing.v3.custom_tag_pb2 import CustomTag
from envoy.type.v3.percent_pb2 import Percent
from google.protobuf.struct_pb2 import Struct

from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import ProxyView
from meshplane.translators.protos import any_of, duration, socket_address

__all__ = [
    "ZIPKIN_CLUSTER",
    "access_logs",
    "apply_mesh_telemetry",
    "stdout_access_log",
    "zipkin_cluster",
]

ZIPKIN_CLUSTER = "zipkin"  # Istio's name for the collector cluster
ZIPKIN_ENDPOINT = "/api/v2/spans"
_HCM_FILTER = "envoy.filters.network.http_connection_manager"
_TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
_DEFAULT_LOG = MeshConfig()

# Field names follow Istio's JSON access log encoding (meshConfig.accessLogEncoding: JSON).
_HTTP_FIELDS = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "route_name": "%ROUTE_NAME%",
}

_TCP_FIELDS = {
    "start_time": "%START_TIME%",
    "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
}

# Istio's default TEXT format (accessLogEncoding: TEXT), for HTTP and TCP alike.
_TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)


def _log_format(encoding: str, http: bool) -> SubstitutionFormatString:
    if encoding.upper() == "TEXT":
        return SubstitutionFormatString(text_format_source={"inline_string": _TEXT_FORMAT})
    fields = Struct()
    fields.update(_HTTP_FIELDS if http else _TCP_FIELDS)
    return SubstitutionFormatString(json_format=fields)


def access_logs(mesh: MeshConfig, http: bool) -> list[AccessLog]:
    """The access log `accessLogFile` asks for: none (""), stdout, stderr or a file."""
    path = mesh.access_log_file
    if not path:
        return []
    log_format = _log_format(mesh.access_log_encoding, http)
    if path == "/dev/stdout":
        name, config = "envoy.access_loggers.stdout", StdoutAccessLog(log_format=log_format)
    elif path == "/dev/stderr":
        name, config = "envoy.access_loggers.stderr", StderrAccessLog(log_format=log_format)
    else:
        name, config = "envoy.access_loggers.file", FileAccessLog(path=path, log_format=log_format)
    return [AccessLog(name=name, typed_config=any_of(config))]


def stdout_access_log(http: bool = True) -> AccessLog:
    """The listener builders' default: a JSON access log to stdout with HTTP or TCP fields."""
    return access_logs(_DEFAULT_LOG, http)[0]


def hcm_tracing(view: ProxyView) -> HttpConnectionManager.Tracing:
    """Istio's HCM tracing: Zipkin JSON v2 spans to the `zipkin` cluster, 128-bit trace ids,
    client and server spans apart (`shared_span_context: false`), `sampling` percent of
    requests without a trace decision; Istio's namespace and mesh tags on every span."""
    mesh = view.mesh
    zipkin = ZipkinConfig(
        collector_cluster=ZIPKIN_CLUSTER,
        collector_endpoint=ZIPKIN_ENDPOINT,
        collector_endpoint_version=ZipkinConfig.HTTP_JSON,
        trace_id_128bit=True,
    )
    zipkin.shared_span_context.value = False
    tags = {"istio.mesh_id": mesh.trust_domain, "istio.namespace": view.namespace}
    return HttpConnectionManager.Tracing(
        client_sampling=Percent(value=100.0),
        random_sampling=Percent(value=mesh.trace_sampling),
        overall_sampling=Percent(value=100.0),
        custom_tags=[
            CustomTag(tag=tag, literal=CustomTag.Literal(value=value))
            for tag, value in sorted(tags.items())
        ],
        provider=Tracing.Http(name="envoy.tracers.zipkin", typed_config=any_of(zipkin)),
    )


def zipkin_cluster(mesh: MeshConfig) -> list[Cluster]:
    """The collector cluster when tracing is on: STATIC for an IP address, else STRICT_DNS."""
    if not mesh.tracing:
        return []
    host, _, port = mesh.zipkin_address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    endpoint = LbEndpoint(endpoint=Endpoint(address=socket_address(host, int(port))))
    cluster = Cluster(
        name=ZIPKIN_CLUSTER,
        connect_timeout=duration(1.0),
        load_assignment=ClusterLoadAssignment(
            cluster_name=ZIPKIN_CLUSTER, endpoints=[LocalityLbEndpoints(lb_endpoints=[endpoint])]
        ),
    )
    if _is_ip(host):
        cluster.type = Cluster.STATIC
    else:
        cluster.type = Cluster.STRICT_DNS
        cluster.dns_lookup_family = Cluster.V4_ONLY
    return [cluster]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _chains(listener: Listener) -> Iterator[FilterChain]:
    yield from listener.filter_chains
    if listener.HasField("default_filter_chain"):
        yield listener.default_filter_chain


def apply_mesh_telemetry(listeners: Sequence[Listener], view: ProxyView) -> None:
    """Give every HCM and TCP proxy of `listeners` the mesh's access log and tracing (in
    place: the listeners are this translation's own). A no-op with meshplane's defaults."""
    mesh = view.mesh
    same_log = (mesh.access_log_file, mesh.access_log_encoding) == (
        _DEFAULT_LOG.access_log_file,
        _DEFAULT_LOG.access_log_encoding,
    )
    if same_log and not mesh.tracing:
        return
    http_logs, tcp_logs = access_logs(mesh, http=True), access_logs(mesh, http=False)
    tracing = hcm_tracing(view) if mesh.tracing else None
    for listener in listeners:
        for chain in _chains(listener):
            for network_filter in chain.filters:
                _apply(network_filter, http_logs, tcp_logs, tracing)


def _apply(
    network_filter: Filter,
    http_logs: list[AccessLog],
    tcp_logs: list[AccessLog],
    tracing: HttpConnectionManager.Tracing | None,
) -> None:
    if network_filter.name == _HCM_FILTER:
        hcm = HttpConnectionManager()
        network_filter.typed_config.Unpack(hcm)
        del hcm.access_log[:]
        hcm.access_log.extend(http_logs)
        if tracing is not None:
            hcm.tracing.CopyFrom(tracing)
        network_filter.typed_config.CopyFrom(any_of(hcm))
    elif network_filter.name == _TCP_PROXY_FILTER:
        proxy = TcpProxy()
        network_filter.typed_config.Unpack(proxy)
        del proxy.access_log[:]
        proxy.access_log.extend(tcp_logs)
        network_filter.typed_config.CopyFrom(any_of(proxy))
