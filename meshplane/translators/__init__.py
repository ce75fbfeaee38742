"""Pure functions from a ProxyView to Envoy protobufs. No I/O, no globals.

`translate(view)` builds everything a proxy gets; `endpoints.cluster_load_assignments(view)`
rebuilds EDS alone for endpoint-only pushes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from meshplane.model.scope import ProxyView
from meshplane.translators.capture_none import none_mode_parts
from meshplane.translators.clusters import outbound_clusters
from meshplane.translators.endpoints import cluster_load_assignments
from meshplane.translators.gateways import gateway_listeners_and_routes
from meshplane.translators.inbound import inbound_clusters, virtual_inbound_listener
from meshplane.translators.memo import TranslationMemo
from meshplane.translators.outbound import outbound_listeners_and_routes
from meshplane.translators.resources import Resources
from meshplane.translators.telemetry import apply_mesh_telemetry, zipkin_cluster

__all__ = ["TranslationMemo", "translate"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def _by_name(items: Iterable[N]) -> dict[str, N]:
    """Keyed and ordered by name; the first of two same-named resources wins (Envoy NACKs
    duplicates, and the builders already avoid them)."""
    result: dict[str, N] = {}
    for item in sorted(items, key=lambda i: i.name):
        result.setdefault(item.name, item)
    return result


def _listeners_routes_clusters(
    view: ProxyView, memo: TranslationMemo | None
) -> tuple[list[Listener], list[RouteConfiguration], list[Cluster]]:
    if view.proxy_type == "router":
        listeners, routes = gateway_listeners_and_routes(view)
        return listeners, routes, []
    if view.interception_mode.upper() == "NONE":
        parts = none_mode_parts(view)
        return parts.listeners, parts.routes, parts.clusters
    listeners, routes = outbound_listeners_and_routes(view, memo)
    return [*listeners, virtual_inbound_listener(view)], routes, inbound_clusters(view)


def translate(view: ProxyView, memo: TranslationMemo | None = None) -> Resources:
    """Listeners, routes, clusters and endpoints for one proxy view (secrets: none yet).

    `memo` (owned by the caller, e.g. the pusher) lets resources whose inputs did not change
    since an earlier call, for this view or another, be returned as the objects built then;
    the output is the same with or without it.
    """
    listeners, routes, extra_clusters = _listeners_routes_clusters(view, memo)
    apply_mesh_telemetry(listeners, view)
    return Resources(
        listeners=_by_name(listeners),
        routes=_by_name(routes),
        clusters=_by_name(
            [*outbound_clusters(view, memo), *extra_clusters, *zipkin_cluster(view.mesh)]
        ),
        endpoints=cluster_load_assignments(view, memo),
        secrets={},
    )
