"""Resources: what translation returns for one proxy view, one mapping per xDS type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret


@dataclass(frozen=True, eq=False)
class Resources:
    """Envoy resources keyed by name (the name inside each message equals its key)."""

    listeners: Mapping[str, Listener] = field(default_factory=dict)
    routes: Mapping[str, RouteConfiguration] = field(default_factory=dict)
    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    endpoints: Mapping[str, ClusterLoadAssignment] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)
