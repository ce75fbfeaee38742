"""`/debug/config_dump?proxyID=ID`: what one proxy was sent, in Envoy's admin format.

The output is Envoy's own `envoy.admin.v3.ConfigDump`, so it can be diffed against the
proxy's `localhost:15000/config_dump` with the same tools (as istioctl does against
istiod). It shows what meshplane SENT; what Envoy accepted is in /debug/syncz.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from envoy.admin.v3 import config_dump_pb2 as dump_pb2
from envoy.admin.v3 import config_dump_shared_pb2 as shared_pb2
from google.protobuf import any_pb2

from meshplane.debug.json_responses import json_error, json_ok
from meshplane.debug.proto_json import message_to_dict
from meshplane.debug.redaction import redact
from meshplane.debug.sources import ConnectionView, SyncStatusView
from meshplane.xds import type_urls

__all__ = [
    "config_dump",
    "config_dump_handler",
    "find_connection",
    "sent_versions",
    "short_proxy_name",
]


def short_proxy_name(node_id: str) -> str:
    """``NAME.NAMESPACE`` from Istio's node id; the id itself if it has another shape."""
    parts = node_id.split("~")
    return parts[2] if len(parts) == 4 else node_id


def find_connection(connections: Iterable[ConnectionView], proxy_id: str) -> ConnectionView | None:
    """The newest connection whose node id, or NAME.NAMESPACE, is `proxy_id`."""
    found = None
    for conn in connections:
        if proxy_id in (conn.node.id, short_proxy_name(conn.node.id)):
            found = conn
    return found


def _sorted(conn: ConnectionView, type_url: str) -> list[tuple[str, Any]]:
    return sorted(conn.held.get(type_url, {}).items())


def as_any(message: Any) -> Any:
    """`message` packed in a google.protobuf.Any (a copy if it already is one)."""
    packed = any_pb2.Any()
    if message.DESCRIPTOR.full_name == "google.protobuf.Any":
        packed.CopyFrom(message)
    else:
        packed.Pack(message)
    return packed


def config_dump(conn: ConnectionView, type_versions: Mapping[str, str]) -> Any:
    """Build the ConfigDump (clusters, endpoints, listeners, routes, secrets) for `conn`.

    `type_versions` maps a type URL to the version_info last sent for it.
    """
    clusters = shared_pb2.ClustersConfigDump(version_info=type_versions.get(type_urls.CLUSTER, ""))
    for _, sent in _sorted(conn, type_urls.CLUSTER):
        clusters.dynamic_active_clusters.add(
            version_info=sent.version, cluster=as_any(sent.message)
        )

    endpoints = shared_pb2.EndpointsConfigDump()
    for _, sent in _sorted(conn, type_urls.ENDPOINT):
        endpoints.dynamic_endpoint_configs.add(
            version_info=sent.version, endpoint_config=as_any(sent.message)
        )

    listeners = shared_pb2.ListenersConfigDump(
        version_info=type_versions.get(type_urls.LISTENER, "")
    )
    for name, sent in _sorted(conn, type_urls.LISTENER):
        listener = listeners.dynamic_listeners.add(name=name)
        listener.active_state.version_info = sent.version
        listener.active_state.listener.CopyFrom(as_any(sent.message))

    routes = shared_pb2.RoutesConfigDump()
    for _, sent in _sorted(conn, type_urls.ROUTE):
        routes.dynamic_route_configs.add(
            version_info=sent.version, route_config=as_any(sent.message)
        )

    secrets = dump_pb2.SecretsConfigDump()
    for name, sent in _sorted(conn, type_urls.SECRET):
        packed = as_any(sent.message)
        redact(packed)
        secrets.dynamic_active_secrets.add(name=name, version_info=sent.version, secret=packed)

    result = dump_pb2.ConfigDump()
    for section in (clusters, endpoints, listeners, routes, secrets):
        result.configs.add().Pack(section)
    return result


def sent_versions(sync_status: SyncStatusView, conn_id: str) -> dict[str, str]:
    """Type URL -> version_info last sent on that stream."""
    versions = {}
    for type_url in type_urls.PUSH_ORDER:
        progress = sync_status.progress(conn_id, type_url)
        if progress is not None:
            versions[type_url] = progress.sent_version
    return versions


def config_dump_handler(
    connections: Callable[[], Iterable[ConnectionView]], sync_status: SyncStatusView
) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        proxy_id = request.query.get("proxyID", "")
        if not proxy_id:
            return json_error(400, "proxyID is required: the node id or NAME.NAMESPACE")
        conn = find_connection(connections(), proxy_id)
        if conn is None:
            return json_error(404, f"proxy {proxy_id!r} is not connected")
        dump = config_dump(conn, sent_versions(sync_status, conn.id))
        return json_ok(message_to_dict(dump))

    return handle
