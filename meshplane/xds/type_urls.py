"""xDS type URLs, their short names, and the order ADS pushes them in.

The push order is make-before-break (xDS spec, "Eventual consistency considerations"):
clusters before the endpoints that warm them, both before the listeners and routes that
point at them; secrets last because nothing waits on them in our configs.
"""

from __future__ import annotations

from typing import Final

_PREFIX: Final = "type.googleapis.com/"

CLUSTER: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET: Final = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

SHORT_NAMES: Final[dict[str, str]] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}

BY_SHORT_NAME: Final[dict[str, str]] = {short: url for url, short in SHORT_NAMES.items()}

# Types whose SotW responses carry the complete state, and the only types for which an
# empty first request means "wildcard" (xDS spec: Envoy uses wildcard only for LDS/CDS).
FULL_STATE: Final[frozenset[str]] = frozenset({CLUSTER, LISTENER})

# The only types that may carry a resource TTL (rule 42). Envoy's SotW client drops heartbeat
# resources before handing a response to its watches, so a heartbeat-only CDS or LDS response
# would reach a wildcard watch as an empty state of the world and delete everything.
TTL_TYPES: Final[frozenset[str]] = frozenset({ENDPOINT, ROUTE, SECRET})

# The wrapper SotW resources travel in when they carry a TTL (rule 42).
RESOURCE: Final = _PREFIX + "envoy.service.discovery.v3.Resource"


def short_name(type_url: str) -> str:
    """`cds`, `eds`, ... for a known type URL; the bare message name otherwise."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]
