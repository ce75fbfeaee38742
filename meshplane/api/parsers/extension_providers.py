"""MeshConfig `extensionProviders`: the external authorizers (Envoy ext_authz over HTTP or
gRPC) that AuthorizationPolicies with action CUSTOM name, validated as Istio's
pkg/config/validation does (unique non-empty names, a port in range, a known
`statusOnError`, a `pathPrefix` starting with "/"). Other provider kinds (tracers, access
loggers) are not read: a warning, the entry is skipped.
"""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.core.mesh_config import ExtensionProvider
from meshplane.api.fields import UNSUPPORTED, Fields

__all__ = ["extension_providers"]

_HTTP = "envoyExtAuthzHttp"
_GRPC = "envoyExtAuthzGrpc"
_COMMON = ("service", "port", "timeout", "failOpen", "statusOnError")
_HTTP_ONLY = (
    "pathPrefix",
    "includeRequestHeadersInCheck",
    "headersToUpstreamOnAllow",
    "headersToDownstreamOnDeny",
    "headersToDownstreamOnAllow",
)
# Istio fields meshplane does not model yet.
_IGNORED = ("includeAdditionalHeadersInCheck", "includeRequestBodyInCheck", "clearRouteCache")
# The codes Envoy's `envoy.type.v3.StatusCode` defines (HttpStatus accepts no other).
_STATUS_CODES = frozenset(
    {
        *(100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226),
        *(300, 301, 302, 303, 304, 305, 307, 308),
        *(400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415),
        *(416, 417, 421, 422, 423, 424, 426, 428, 429, 431),
        *(500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511),
    }
)


def extension_providers(f: Fields) -> tuple[ExtensionProvider, ...]:
    """The ext_authz entries of `extensionProviders` (the list at `f`'s key)."""
    found: list[ExtensionProvider] = []
    names: set[str] = set()
    for entry in f.objs("extensionProviders"):
        name = entry.text("name", required=True, empty_ok=False)
        if name and name in names:
            entry.error("name", f"extension provider name must be unique, found duplicate {name!r}")
        kinds = [k for k in entry.data if k != "name"]
        if len(kinds) != 1:
            entry.problems.error(entry.path, "exactly one provider kind must be set")
            continue
        kind = kinds[0]
        if kind not in (_HTTP, _GRPC):
            entry.warn(kind, f"{UNSUPPORTED} (only {_HTTP} and {_GRPC} are read)")
            continue
        sub = entry.obj(kind)
        provider = _ext_authz(sub, name, kind == _GRPC) if sub is not None else None
        if name:
            names.add(name)
        if provider is not None:
            found.append(provider)
    return tuple(found)


def _ext_authz(f: Fields, name: str | None, grpc: bool) -> ExtensionProvider | None:
    f.keys((*_COMMON, *(() if grpc else _HTTP_ONLY)), ignored=_IGNORED)
    service = f.text("service", required=True, empty_ok=False)
    if service and (reason := formats.hostname_problem(service.rpartition("/")[2])):
        f.error("service", reason)
        service = None
    port = _port(f)
    timeout = f.duration("timeout", min_ms=1)
    status = _status_on_error(f)
    prefix = "" if grpc else (f.text("pathPrefix") or "")
    if prefix and not prefix.startswith("/"):
        f.error("pathPrefix", f"pathPrefix must begin with '/', found {prefix!r}")
    if not name or not service or port is None or f.problems.errors:
        return None
    return ExtensionProvider(
        name=name,
        grpc=grpc,
        service=service.rpartition("/")[2],
        port=port,
        timeout=timeout,
        fail_open=bool(f.flag("failOpen")),
        status_on_error=status,
        path_prefix=prefix,
        include_request_headers_in_check=f.str_list("includeRequestHeadersInCheck"),
        headers_to_upstream_on_allow=f.str_list("headersToUpstreamOnAllow"),
        headers_to_downstream_on_deny=f.str_list("headersToDownstreamOnDeny"),
        headers_to_downstream_on_allow=f.str_list("headersToDownstreamOnAllow"),
    )


def _port(f: Fields) -> int | None:
    """uint32 in Istio's API; a quoted number ("5005", as Istio's samples write) is fine."""
    value = f.data.get("port")
    if value is None:
        f.error("port", "required")
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        f.error("port", f"port must be in the range [1, 65535], found {value!r}")
        return None
    return value


def _status_on_error(f: Fields) -> int | None:
    text = f.text("statusOnError")
    if not text:
        return None
    if not text.isdigit() or int(text) not in _STATUS_CODES:
        f.error("statusOnError", f"unsupported statusOnError {text!r} (an HTTP status code)")
        return None
    return int(text)
