"""The HTTP filter chain of every HTTP connection manager, in order.

Each filter is one `HttpFilterSpec`: its Envoy name and a builder returning its typed config
for a given context, or None when that filter has nothing to do there (Envoy Gateway's
httpFilter registry, reduced to what translation needs today). Later issues append fault
injection, CORS, JWT and RBAC here; their positions are fixed by the list below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from envoy.extensions.filters.http.router.v3.router_pb2 import Router
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpFilter,
)
from google.protobuf.message import Message

from meshplane.translators.protos import any_of


@dataclass(frozen=True)
class FilterContext:
    """Where an HTTP connection manager sits: `direction` is inbound, outbound or gateway."""

    direction: str


@dataclass(frozen=True)
class HttpFilterSpec:
    name: str
    config: Callable[[FilterContext], Message | None]


def _router(_: FilterContext) -> Message:
    return Router()


# Order matters to Envoy: filters run top to bottom and the router must be last.
# Planned positions (security issue, full routing issue): jwt_authn, rbac (CUSTOM/DENY/ALLOW),
# fault, cors, then the router.
HTTP_FILTERS: tuple[HttpFilterSpec, ...] = (HttpFilterSpec("envoy.filters.http.router", _router),)


def http_filters(context: FilterContext) -> list[HttpFilter]:
    """The filters that apply in `context`, each with its typed config."""
    result = []
    for spec in HTTP_FILTERS:
        config = spec.config(context)
        if config is not None:
            result.append(HttpFilter(name=spec.name, typed_config=any_of(config)))
    return result
