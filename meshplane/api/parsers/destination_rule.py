"""DestinationRule: subsets and traffic policy (load balancing, pools, outlier detection, TLS)."""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.destination_rule import (
    ClientTLS,
    ConnectionPool,
    ConsistentHash,
    DestinationRuleSpec,
    HttpCookie,
    HttpSettings,
    LoadBalancer,
    OutlierDetection,
    PortTrafficPolicy,
    Subset,
    TcpKeepalive,
    TcpSettings,
    TrafficPolicy,
)
from meshplane.api.parsers.common import export_to, port_selector

LB_SIMPLE = ("UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM", "PASSTHROUGH")
TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
_POLICY_KEYS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")
_POLICY_IGNORED = ("tunnel", "proxyProtocol", "retryBudget")


def destination_rule(f: Fields) -> DestinationRuleSpec | None:
    f.keys(("host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"))
    host = f.text("host", required=True)
    if host is not None and (reason := formats.hostname_problem(host)):
        f.error("host", reason)
        host = None
    subsets = f.each("subsets", _subset)
    seen: set[str] = set()
    for i, s in enumerate(subsets):
        if s.name in seen:
            f.problems.error(f"{f.at('subsets')}[{i}].name", f"duplicate subset name {s.name!r}")
        seen.add(s.name)
    selector = None
    sel = f.obj("workloadSelector")
    if sel is not None:
        sel.keys(("matchLabels",))
        selector = sel.str_map("matchLabels", labels=True) or {}
    spec = DestinationRuleSpec(
        host=host or "",
        traffic_policy=f.read("trafficPolicy", traffic_policy),
        subsets=subsets,
        export_to=export_to(f),
        workload_selector=selector,
    )
    return spec if host else None


def _subset(f: Fields) -> Subset | None:
    f.keys(("name", "labels", "trafficPolicy"))
    name = f.text("name", required=True, empty_ok=False)
    if name and (reason := formats.dns1123_label_problem(name.lower())):
        f.error("name", reason)
    policy = f.read("trafficPolicy", traffic_policy)
    labels = f.str_map("labels", labels=True) or {}
    return Subset(name, labels, policy) if name else None


def traffic_policy(f: Fields) -> TrafficPolicy:
    f.keys((*_POLICY_KEYS, "portLevelSettings"), ignored=_POLICY_IGNORED)
    ports = f.each("portLevelSettings", _port_policy)
    return TrafficPolicy(
        load_balancer=f.read("loadBalancer", _load_balancer),
        connection_pool=f.read("connectionPool", _connection_pool),
        outlier_detection=f.read("outlierDetection", _outlier_detection),
        tls=f.read("tls", client_tls),
        port_level_settings=ports,
    )


def _port_policy(f: Fields) -> PortTrafficPolicy | None:
    f.keys(("port", *_POLICY_KEYS))
    port = f.read("port", port_selector)
    if not f.has("port"):
        f.error("port", "required field is missing")
    if port is None:
        return None
    return PortTrafficPolicy(
        port=port,
        load_balancer=f.read("loadBalancer", _load_balancer),
        connection_pool=f.read("connectionPool", _connection_pool),
        outlier_detection=f.read("outlierDetection", _outlier_detection),
        tls=f.read("tls", client_tls),
    )


def _load_balancer(f: Fields) -> LoadBalancer:
    f.keys(
        ("simple", "consistentHash", "warmupDurationSecs"),
        ignored=("localityLbSetting", "warmup"),
    )
    if f.has("simple") and f.has("consistentHash"):
        f.problems.error(f.path, "set only one of simple or consistentHash")
    return LoadBalancer(
        simple=f.enum("simple", LB_SIMPLE),
        consistent_hash=f.read("consistentHash", _consistent_hash),
        warmup_duration=f.duration("warmupDurationSecs"),
    )


def _consistent_hash(f: Fields) -> ConsistentHash:
    keys = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
    f.keys((*keys, "minimumRingSize", "ringHash", "maglev"))
    chosen = [k for k in keys if f.has(k)]
    if len(chosen) != 1:
        f.problems.error(f.path, "set exactly one of " + ", ".join(keys))
    ring_size = f.integer("minimumRingSize", lo=0)
    ring = f.obj("ringHash")
    if ring is not None:
        ring.keys(("minimumRingSize",))
        ring_size = ring.integer("minimumRingSize", lo=0)
    maglev = f.obj("maglev")
    if maglev is not None:
        maglev.keys((), ignored=("tableSize",))
    return ConsistentHash(
        http_header_name=f.text("httpHeaderName"),
        http_cookie=f.read("httpCookie", _cookie),
        use_source_ip=bool(f.flag("useSourceIp")),
        http_query_parameter_name=f.text("httpQueryParameterName"),
        minimum_ring_size=ring_size,
        maglev=maglev is not None,
    )


def _cookie(f: Fields) -> HttpCookie | None:
    f.keys(("name", "path", "ttl"), ignored=("attributes",))
    name = f.text("name", required=True, empty_ok=False)
    return HttpCookie(name, f.text("path") or "", f.duration("ttl")) if name else None


def _connection_pool(f: Fields) -> ConnectionPool:
    f.keys(("tcp", "http"))
    return ConnectionPool(tcp=f.read("tcp", _tcp_settings), http=f.read("http", _http_settings))


def _tcp_settings(f: Fields) -> TcpSettings:
    f.keys(
        ("maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration"),
        ignored=("idleTimeout",),
    )
    return TcpSettings(
        max_connections=f.integer("maxConnections", lo=0),
        connect_timeout=f.duration("connectTimeout", min_ms=1),
        tcp_keepalive=f.read("tcpKeepalive", _keepalive),
        max_connection_duration=f.duration("maxConnectionDuration", min_ms=1),
    )


def _keepalive(f: Fields) -> TcpKeepalive:
    f.keys(("probes", "time", "interval"))
    return TcpKeepalive(f.integer("probes", lo=0), f.duration("time"), f.duration("interval"))


def _http_settings(f: Fields) -> HttpSettings:
    f.keys(
        (
            "http1MaxPendingRequests",
            "http2MaxRequests",
            "maxRequestsPerConnection",
            "maxRetries",
            "idleTimeout",
            "h2UpgradePolicy",
            "useClientProtocol",
            "maxConcurrentStreams",
        )
    )
    return HttpSettings(
        http1_max_pending_requests=f.integer("http1MaxPendingRequests", lo=0),
        http2_max_requests=f.integer("http2MaxRequests", lo=0),
        max_requests_per_connection=f.integer("maxRequestsPerConnection", lo=0),
        max_retries=f.integer("maxRetries", lo=0),
        idle_timeout=f.duration("idleTimeout"),
        h2_upgrade_policy=f.enum("h2UpgradePolicy", ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")),
        use_client_protocol=bool(f.flag("useClientProtocol")),
        max_concurrent_streams=f.integer("maxConcurrentStreams", lo=0),
    )


def _outlier_detection(f: Fields) -> OutlierDetection:
    f.keys(
        (
            "consecutiveErrors",
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "consecutiveLocalOriginFailures",
            "splitExternalLocalOriginErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
            "minHealthPercent",
        )
    )
    return OutlierDetection(
        consecutive_errors=f.integer("consecutiveErrors", lo=0),
        consecutive_5xx_errors=f.integer("consecutive5xxErrors", lo=0),
        consecutive_gateway_errors=f.integer("consecutiveGatewayErrors", lo=0),
        consecutive_local_origin_failures=f.integer("consecutiveLocalOriginFailures", lo=0),
        split_external_local_origin_errors=bool(f.flag("splitExternalLocalOriginErrors")),
        interval=f.duration("interval", min_ms=1),
        base_ejection_time=f.duration("baseEjectionTime", min_ms=1),
        max_ejection_percent=f.integer("maxEjectionPercent", lo=0, hi=100),
        min_health_percent=f.integer("minHealthPercent", lo=0, hi=100),
    )


def client_tls(f: Fields) -> ClientTLS:
    f.keys(
        (
            "mode",
            "clientCertificate",
            "privateKey",
            "caCertificates",
            "credentialName",
            "subjectAltNames",
            "sni",
            "insecureSkipVerify",
        ),
        ignored=("caCrl",),
    )
    mode = f.enum("mode", TLS_MODES) or "DISABLE"
    if mode == "MUTUAL" and not f.has("credentialName"):
        for key in ("clientCertificate", "privateKey"):
            if not f.has(key):
                f.error(key, "required when mode is MUTUAL (or set credentialName)")
    return ClientTLS(
        mode=mode,
        client_certificate=f.text("clientCertificate"),
        private_key=f.text("privateKey"),
        ca_certificates=f.text("caCertificates"),
        credential_name=f.text("credentialName"),
        subject_alt_names=f.str_list("subjectAltNames"),
        sni=f.text("sni"),
        insecure_skip_verify=bool(f.flag("insecureSkipVerify")),
    )
