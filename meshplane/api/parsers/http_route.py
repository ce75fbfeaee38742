"""VirtualService `http[]` routes: matches, destinations and the per-route policies."""

from __future__ import annotations

import base64
import binascii
import re

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.virtual_service import (
    CorsPolicy,
    Delegate,
    FaultAbort,
    FaultDelay,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    StringMatch,
)
from meshplane.api.parsers.common import (
    destination,
    percentage,
    string_match,
    string_match_map,
)

MAX_DIRECT_RESPONSE_BODY = 1024 * 1024
LARGE_DIRECT_RESPONSE_BODY = 100 * 1024

_ROUTE_KEYS = (
    "name", "match", "route", "redirect", "directResponse", "delegate", "rewrite", "timeout",
    "retries", "fault", "mirror", "mirrorPercent", "mirrorPercentage", "mirrors", "corsPolicy",
    "headers",
)  # fmt: skip
_MATCH_KEYS = (
    "name", "uri", "scheme", "method", "authority", "headers", "withoutHeaders", "queryParams",
    "port", "sourceLabels", "gateways", "sourceNamespace", "ignoreUriCase",
)  # fmt: skip
# Envoy's retry_on conditions (router filter docs); Istio also accepts HTTP status codes.
RETRY_ON = frozenset(
    {
        "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
        "envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
        "retriable-headers", "http3-post-connect-failure", "cancelled", "deadline-exceeded",
        "internal", "resource-exhausted", "unavailable",
    }
)  # fmt: skip
REDIRECT_CODES = (301, 302, 303, 307, 308)
# gRPC status names (grpc/status.proto) -> codes: what `fault.abort.grpcStatus` accepts.
GRPC_STATUS = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip
# An HTTP header name (RFC 9110 token); Envoy rejects anything else in headers_to_add.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def http_route(f: Fields) -> HTTPRoute | None:
    f.keys(_ROUTE_KEYS)
    route = f.each("route", route_destination)
    redirect = f.read("redirect", http_redirect)
    direct = f.read("directResponse", direct_response)
    delegate = f.read("delegate", _delegate)
    actions = [k for k in ("route", "redirect", "directResponse", "delegate") if f.has(k)]
    if not actions:
        f.problems.error(f.path, "one of route, redirect, directResponse or delegate is required")
    elif len(actions) > 1:
        f.problems.error(f.path, f"set only one of {', '.join(actions)}")
    if f.has("rewrite") and f.has("redirect"):
        f.error("rewrite", "rewrite cannot be used with redirect")
    check_weights(f, len(route), [d.weight for d in route])
    return HTTPRoute(
        name=f.text("name") or "",
        match=f.each("match", http_match),
        route=route,
        redirect=redirect,
        direct_response=direct,
        delegate=delegate,
        rewrite=f.read("rewrite", _rewrite),
        timeout=f.duration("timeout"),
        retries=f.read("retries", _retry),
        fault=f.read("fault", _fault),
        mirrors=_mirrors(f),
        cors_policy=f.read("corsPolicy", _cors),
        headers=f.read("headers", headers),
    )


def check_weights(f: Fields, count: int, weights: list[int | None]) -> None:
    """Istio (since 1.14, and the v1 API docs) treats weights as relative: a destination gets
    weight/sum of the traffic, so a sum other than 100 is legal and only suspicious (a
    warning). A sum of 0 over several destinations routes nothing and Envoy rejects it
    (istio/istio#36021), so that is an error."""
    if count < 2 or len(weights) != count:
        return
    total = sum(w or 0 for w in weights)
    if total == 0:
        f.error("route", "weights of several destinations sum to 0")
    elif total != 100:
        f.warn("route", f"weights sum to {total}, not 100 (they are applied as relative)")


def route_destination(f: Fields) -> HTTPRouteDestination | None:
    f.keys(("destination", "weight", "headers"))
    dest = f.read("destination", destination)
    if not f.has("destination"):
        f.error("destination", "required field is missing")
    weight = f.integer("weight", lo=0, hi=100)
    hdrs = f.read("headers", headers)
    return HTTPRouteDestination(dest, weight, hdrs) if dest is not None else None


def http_match(f: Fields) -> HTTPMatchRequest:
    f.keys(_MATCH_KEYS, ignored=("statPrefix",))

    gateways = f.str_list("gateways")
    return HTTPMatchRequest(
        name=f.text("name") or "",
        uri=f.read("uri", string_match),
        scheme=f.read("scheme", string_match),
        method=f.read("method", string_match),
        authority=f.read("authority", string_match),
        headers=string_match_map(f, "headers"),
        without_headers=string_match_map(f, "withoutHeaders"),
        query_params=string_match_map(f, "queryParams"),
        port=f.port("port"),
        source_labels=f.str_map("sourceLabels", labels=True) or {},
        gateways=gateways,
        source_namespace=f.text("sourceNamespace"),
        ignore_uri_case=bool(f.flag("ignoreUriCase")),
    )


def http_redirect(f: Fields) -> HTTPRedirect | None:
    f.keys(("uri", "authority", "port", "derivePort", "scheme", "redirectCode"))
    if f.has("port") and f.has("derivePort"):
        f.problems.error(f.path, "set only one of port or derivePort")
    code = f.integer("redirectCode")
    if code is not None and code not in REDIRECT_CODES:
        f.error("redirectCode", f"{code} is not one of {', '.join(map(str, REDIRECT_CODES))}")
    return HTTPRedirect(
        uri=f.text("uri"),
        authority=f.text("authority"),
        port=f.port("port"),
        derive_port=f.enum("derivePort", ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")),
        scheme=f.text("scheme"),
        redirect_code=code if code in REDIRECT_CODES else 301,
    )


def direct_response(f: Fields) -> HTTPDirectResponse | None:
    f.keys(("status", "body"))
    status = f.integer("status", required=True, lo=200, hi=599)
    body = body_bytes = None
    sub = f.obj("body")
    if sub is not None:
        sub.keys(("string", "bytes"))
        if sub.has("string") and sub.has("bytes"):
            sub.problems.error(sub.path, "set only one of string or bytes")
        body = sub.text("string")
        body_bytes = _base64(sub, "bytes")
        # Istio's validateHTTPDirectResponse limits.
        size = len(body.encode()) if body is not None else len(body_bytes or b"")
        if size > MAX_DIRECT_RESPONSE_BODY:
            sub.problems.error(sub.path, f"is {size} bytes; it must be less than 1MB")
        elif size > LARGE_DIRECT_RESPONSE_BODY:
            sub.problems.warn(sub.path, "large direct responses may slow the control plane")
    if status is None:
        return None
    return HTTPDirectResponse(status, body, body_bytes)


def _base64(f: Fields, key: str) -> bytes | None:
    """A protobuf `bytes` field as YAML carries it: base64 text."""
    text = f.text(key)
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        f.error(key, "must be base64 (protobuf bytes)")
        return None


def _delegate(f: Fields) -> Delegate | None:
    f.keys(("name", "namespace"))
    name = f.text("name", required=True, empty_ok=False)
    return Delegate(name, f.text("namespace") or "") if name else None


def _rewrite(f: Fields) -> HTTPRewrite:
    f.keys(("uri", "authority", "uriRegexRewrite"))
    pattern = substitution = None
    sub = f.obj("uriRegexRewrite")
    if sub is not None:
        sub.keys(("match", "rewrite"))
        pattern = sub.text("match", required=True)
        substitution = sub.text("rewrite", required=True)
        if pattern is not None and (reason := formats.regex_problem(pattern)):
            sub.error("match", reason)
    if f.has("uri") and sub is not None:
        f.problems.error(f.path, "set only one of uri or uriRegexRewrite")
    return HTTPRewrite(f.text("uri"), f.text("authority"), pattern, substitution)


def _retry(f: Fields) -> HTTPRetry:
    f.keys(
        (
            "attempts",
            "perTryTimeout",
            "retryOn",
            "retryRemoteLocalities",
            "retryIgnorePreviousHosts",
            "backoff",
        )
    )
    retry_on = f.text("retryOn")
    for cond in (retry_on or "").split(","):
        cond = cond.strip()
        if cond and cond not in RETRY_ON and not (cond.isdigit() and 100 <= int(cond) <= 599):
            f.error("retryOn", f"{cond!r} is not a retry condition or HTTP status code")
    return HTTPRetry(
        attempts=f.integer("attempts", lo=0) or 0,
        per_try_timeout=f.duration("perTryTimeout", min_ms=1),
        retry_on=retry_on,
        retry_remote_localities=bool(f.flag("retryRemoteLocalities")),
        retry_ignore_previous_hosts=f.flag("retryIgnorePreviousHosts"),
        backoff=f.duration("backoff", min_ms=1),
    )


def _fault(f: Fields) -> HTTPFaultInjection:
    f.keys(("delay", "abort"))
    if not f.has("delay") and not f.has("abort"):
        f.problems.error(f.path, "one of delay or abort is required")
    return HTTPFaultInjection(delay=f.read("delay", _delay), abort=f.read("abort", _abort))


def _delay(f: Fields) -> FaultDelay | None:
    f.keys(("fixedDelay", "percentage", "percent", "exponentialDelay"))
    if f.has("exponentialDelay"):
        # In Istio's API but never implemented (its validation says "not supported yet").
        f.warn("exponentialDelay", "not implemented by Istio either; ignored (use fixedDelay)")
    fixed = f.duration("fixedDelay", required=True, min_ms=1)
    pct = f.read("percentage", percentage)
    if pct is None and f.has("percent"):
        pct = f.percent("percent")
    return FaultDelay(fixed, pct) if fixed is not None else None


def _abort(f: Fields) -> FaultAbort | None:
    f.keys(("httpStatus", "grpcStatus", "percentage"), ignored=("http2Error",))
    status = f.integer("httpStatus", lo=200, hi=599)
    grpc = f.enum("grpcStatus", GRPC_STATUS)
    pct = f.read("percentage", percentage)
    if f.has("httpStatus") and f.has("grpcStatus"):
        f.problems.error(f.path, "set only one of httpStatus or grpcStatus")
    if status is None and grpc is None:
        if not any(f.has(k) for k in ("httpStatus", "grpcStatus", "http2Error")):
            f.problems.error(f.path, "one of httpStatus or grpcStatus is required")
        return None
    return FaultAbort(http_status=status, grpc_status=grpc, percentage=pct)


def _mirrors(f: Fields) -> tuple[HTTPMirrorPolicy, ...]:
    """`mirror` + `mirrorPercentage`/`mirrorPercent` (the older form) and `mirrors[]` all
    normalise into one list."""
    out: list[HTTPMirrorPolicy] = []
    if f.has("mirror") and f.has("mirrors"):
        f.problems.error(f.path, "set only one of mirror or mirrors")
    single = f.read("mirror", destination)
    pct = f.read("mirrorPercentage", percentage)
    old_pct = f.percent("mirrorPercent")
    if single is not None:
        out.append(HTTPMirrorPolicy(single, pct if pct is not None else old_pct))
    elif f.has("mirrorPercentage") or f.has("mirrorPercent"):
        f.warn("mirrorPercentage", "has no effect without mirror")
    for sub in f.objs("mirrors"):
        sub.keys(("destination", "percentage"))
        dest = sub.read("destination", destination)
        if not sub.has("destination"):
            sub.error("destination", "required field is missing")
        if dest is not None:
            out.append(HTTPMirrorPolicy(dest, sub.read("percentage", percentage)))
    return tuple(out)


def _cors(f: Fields) -> CorsPolicy:
    f.keys(
        (
            "allowOrigins",
            "allowOrigin",
            "allowMethods",
            "allowHeaders",
            "exposeHeaders",
            "maxAge",
            "allowCredentials",
            "unmatchedPreflights",
        ),
    )
    origins = f.each("allowOrigins", string_match)
    # `allowOrigin` (deprecated) lists exact origins.
    legacy = tuple(StringMatch(exact=o) for o in f.str_list("allowOrigin"))
    return CorsPolicy(
        allow_origins=origins + legacy,
        allow_methods=f.str_list("allowMethods"),
        allow_headers=f.str_list("allowHeaders"),
        expose_headers=f.str_list("exposeHeaders"),
        max_age=f.duration("maxAge"),
        allow_credentials=f.flag("allowCredentials"),
        unmatched_preflights=f.enum("unmatchedPreflights", ("FORWARD", "IGNORE")),
    )


def headers(f: Fields) -> Headers:
    f.keys(("request", "response"))
    request = f.read("request", lambda sub: _header_ops(sub, request=True))
    return Headers(request, f.read("response", lambda sub: _header_ops(sub, request=False)))


def _header_name_problem(name: str, *, request: bool, removing: bool) -> str:
    """Envoy refuses to add or remove pseudo-headers and Host; Istio turns a request op on
    Host / :authority into a host rewrite, so only that one is allowed (and not removed)."""
    authority = name.lower() in ("host", ":authority")
    if authority and request and not removing:
        return ""
    if authority or name.startswith(":"):
        action = "removed" if removing else "set"
        return f"header {name!r} cannot be {action} here"
    if not _HEADER_NAME.match(name):
        return f"{name!r} is not a valid HTTP header name"
    return ""


def _header_ops(f: Fields, *, request: bool) -> HeaderOperations:
    f.keys(("set", "add", "remove"))
    ops = HeaderOperations(
        set=f.str_map("set") or {}, add=f.str_map("add") or {}, remove=f.str_list("remove")
    )
    for key in ("set", "add"):
        for name in getattr(ops, key):
            if reason := _header_name_problem(name, request=request, removing=False):
                f.problems.error(f"{f.at(key)}.{name}", reason)
    for i, name in enumerate(ops.remove):
        if reason := _header_name_problem(name, request=request, removing=True):
            f.problems.error(f"{f.at('remove')}[{i}]", reason)
    return ops
