"""VirtualService: how requests to a host are routed (matches, destinations, policies)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StringMatch:
    """Exactly one of exact/prefix/regex is set."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


@dataclass(frozen=True)
class HTTPMatchRequest:
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    # A header whose StringMatch has no field set means "present".
    headers: Mapping[str, StringMatch] = field(default_factory=dict)
    without_headers: Mapping[str, StringMatch] = field(default_factory=dict)
    query_params: Mapping[str, StringMatch] = field(default_factory=dict)
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None
    ignore_uri_case: bool = False


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class HeaderOperations:
    set: Mapping[str, str] = field(default_factory=dict)
    add: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


@dataclass(frozen=True)
class HTTPRetry:
    attempts: int
    per_try_timeout: float | None = None
    retry_on: str | None = None
    retry_remote_localities: bool = False
    retry_ignore_previous_hosts: bool | None = None  # unset: Istio's default (true)
    backoff: float | None = None  # seconds: Envoy's retry back-off base interval


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str | None = None
    authority: str | None = None
    uri_regex_pattern: str | None = None
    uri_regex_substitution: str | None = None


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: str | None = None
    scheme: str | None = None
    redirect_code: int = 301


@dataclass(frozen=True)
class HTTPDirectResponse:
    status: int
    body: str | None = None
    body_bytes: bytes | None = None  # `body.bytes`, decoded from base64


@dataclass(frozen=True)
class FaultDelay:
    fixed_delay: float
    percentage: float | None = None  # 0-100


@dataclass(frozen=True)
class FaultAbort:
    http_status: int | None = None
    grpc_status: str | None = None
    percentage: float | None = None


@dataclass(frozen=True)
class HTTPFaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True)
class HTTPMirrorPolicy:
    destination: Destination
    percentage: float | None = None


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: float | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: str | None = None  # FORWARD (default) | IGNORE


@dataclass(frozen=True)
class Delegate:
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class HTTPRoute:
    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: float | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()  # `mirror` + `mirrorPercentage` normalised here
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


@dataclass(frozen=True)
class L4MatchAttributes:
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None
    sni_hosts: tuple[str, ...] = ()  # TLS routes only


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int | None = None


@dataclass(frozen=True)
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class TLSRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class VirtualServiceSpec:
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    export_to: tuple[str, ...] = ()
