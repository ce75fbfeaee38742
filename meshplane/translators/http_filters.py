"""The HTTP filter chain of every HTTP connection manager, in order.

Each filter is one `HttpFilterSpec`: its Envoy name and a builder returning its typed config
for a given context, or None when that filter has nothing to do there (Envoy Gateway's
httpFilter registry, reduced to what translation needs today). Filters that routes
configure (fault, CORS) sit in the HCM with an inert config and are switched on per route
by `typed_per_filter_config` (modules under `filters/`). jwt_authn and RBAC, built per proxy
from the policies that apply to it (`security_filters`), go right after CORS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from envoy.extensions.filters.http.router.v3.router_pb2 import Router
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpFilter,
)
from google.protobuf.message import Message

from meshplane.model.scope import ProxyView
from meshplane.translators.filters import cors, fault
from meshplane.translators.filters.jwt_authn import jwt_authn_filter
from meshplane.translators.filters.rbac import http_rbac_filters
from meshplane.translators.protos import any_of

# Where VirtualService routes are applied: sidecar outbound listeners and gateways. Inbound
# routes are meshplane's own and never carry fault or CORS config.
_ROUTED = ("outbound", "gateway")


@dataclass(frozen=True)
class FilterContext:
    """Where an HTTP connection manager sits: `direction` is inbound, outbound or gateway;
    `security` are the proxy's own jwt_authn and RBAC filters (filters/jwt_authn.py,
    filters/rbac.py), already built, placed right after CORS."""

    direction: str
    security: tuple[HttpFilter, ...] = ()


@dataclass(frozen=True)
class HttpFilterSpec:
    name: str
    config: Callable[[FilterContext], Message | None]


def _router(_: FilterContext) -> Message:
    return Router()


def _cors(context: FilterContext) -> Message | None:
    return cors.hcm_config() if context.direction in _ROUTED else None


def _fault(context: FilterContext) -> Message | None:
    return fault.hcm_config() if context.direction in _ROUTED else None


# Order matters to Envoy: filters run top to bottom and the router must be last.
# CORS comes first so a preflight is answered before any authentication or fault (Istio's
# order); the security issue puts jwt_authn and rbac (CUSTOM/DENY/ALLOW) between CORS and
# fault; fault injection runs just before the router, as in Istio.
HTTP_FILTERS: tuple[HttpFilterSpec, ...] = (
    HttpFilterSpec(cors.NAME, _cors),
    HttpFilterSpec(fault.NAME, _fault),
    HttpFilterSpec("envoy.filters.http.router", _router),
)


def http_filters(context: FilterContext) -> list[HttpFilter]:
    """The filters that apply in `context`, each with its typed config."""
    result = []
    for spec in HTTP_FILTERS:
        config = spec.config(context)
        if config is not None:
            result.append(HttpFilter(name=spec.name, typed_config=any_of(config)))
        if spec.name == cors.NAME:
            result.extend(context.security)
    return result


def security_filters(view: ProxyView) -> tuple[HttpFilter, ...]:
    """jwt_authn, then the AUDIT, DENY and ALLOW RBAC filters of the RequestAuthentications
    and AuthorizationPolicies that apply to `view` (Istio's order): what an HCM serving the
    proxy's own traffic (sidecar inbound, gateway) puts in `FilterContext.security`."""
    jwt = jwt_authn_filter(view)
    return (*([jwt] if jwt is not None else []), *http_rbac_filters(view))
