"""Assemble a whole Envoy Bootstrap and prove it well-formed by parsing it into the proto.

The sections are written as JSON-shaped dicts (they read like Istio's bootstrap template)
and parsed with `json_format.ParseDict`, which rejects any misspelt field or wrong type
before a user ever starts Envoy with it.
"""

from __future__ import annotations

import json
from typing import Any

# Registered for json_format: the typed_config / extension Any types used in the sections.
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from google.protobuf import json_format

from meshplane.bootstrap.node import node
from meshplane.bootstrap.options import BootstrapOptions
from meshplane.bootstrap.stats_tags import stats_config
from meshplane.bootstrap.status_listeners import status_clusters, status_listeners
from meshplane.bootstrap.xds_cluster import dynamic_resources, xds_cluster

__all__ = ["bootstrap", "bootstrap_dict", "render_json"]


def bootstrap_dict(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap as Envoy JSON (snake_case field names)."""
    return {
        "node": node(opts),
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": opts.admin_port}}
        },
        "dynamic_resources": dynamic_resources(opts),
        "stats_config": stats_config(opts),
        "static_resources": {
            "listeners": status_listeners(opts),
            "clusters": [*status_clusters(opts), xds_cluster(opts)],
        },
    }


def bootstrap(opts: BootstrapOptions) -> Bootstrap:
    """The bootstrap as a validated envoy.config.bootstrap.v3.Bootstrap message."""
    message = Bootstrap()
    json_format.ParseDict(bootstrap_dict(opts), message)
    return message


def render_json(message: Bootstrap) -> str:
    """Stable, human-readable JSON for `-o FILE` (field names as in Envoy's docs)."""
    as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return json.dumps(as_dict, indent=2, sort_keys=True) + "\n"
