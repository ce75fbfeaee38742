"""Access logs: one JSON line per request or connection on the proxy's stdout, so a local
mesh (`meshplane up`) shows traffic without any log pipeline."""

from __future__ import annotations

from envoy.config.accesslog.v3.accesslog_pb2 import AccessLog
from envoy.config.core.v3.substitution_format_string_pb2 import SubstitutionFormatString
from envoy.extensions.access_loggers.stream.v3.stream_pb2 import StdoutAccessLog
from google.protobuf.struct_pb2 import Struct

from meshplane.translators.protos import any_of

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


def stdout_access_log(http: bool = True) -> AccessLog:
    """A JSON access log to stdout with HTTP or TCP fields."""
    fields = Struct()
    fields.update(_HTTP_FIELDS if http else _TCP_FIELDS)
    log = StdoutAccessLog(log_format=SubstitutionFormatString(json_format=fields))
    return AccessLog(name="envoy.access_loggers.stdout", typed_config=any_of(log))
