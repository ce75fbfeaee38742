"""Static listeners that let outsiders watch the proxy: Prometheus stats and readiness.

As in Istio's bootstrap, `/stats/prometheus` on the stats port is routed to Envoy's own
admin endpoint (cluster `prometheus_stats`), so scrapers never reach the rest of the
admin API. Istio answers `/healthz/ready` on 15021 through its agent; meshplane has no
agent, so the route rewrites it to the admin `/ready`, which says 200 only while Envoy
is LIVE (initialised with its first config, not draining).
"""

from __future__ import annotations

from typing import Any

from meshplane.bootstrap.options import BootstrapOptions

__all__ = ["HEALTH_CLUSTER", "STATS_CLUSTER", "status_clusters", "status_listeners"]

STATS_CLUSTER = "prometheus_stats"
HEALTH_CLUSTER = "envoy_admin_ready"

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _admin_cluster(name: str, admin_port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": admin_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def _listener(name: str, ip: str, port: int, route: dict[str, Any]) -> dict[str, Any]:
    hcm = {
        "@type": _HCM + "HttpConnectionManager",
        "codec_type": "AUTO",
        "stat_prefix": name,
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": ip, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def status_listeners(opts: BootstrapOptions) -> list[dict[str, Any]]:
    """The stats and health listeners that are enabled (port != 0).

    A sidecar with iptables owns its network namespace and binds 0.0.0.0 as Istio's does
    (scraped on the pod IP, read on localhost inside the pod); without iptables (NONE) and
    for gateways, proxies may share a host, so they bind the proxy's own IP.
    """
    listeners = []
    own_netns = opts.type == "sidecar" and opts.interception == "REDIRECT"
    ip = "0.0.0.0" if own_netns else opts.ip
    if opts.stats_port:
        route = {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": STATS_CLUSTER}}
        listeners.append(_listener("prometheus_stats", ip, opts.stats_port, route))
    if opts.health_port:
        route = {
            "match": {"path": "/healthz/ready"},
            "route": {"cluster": HEALTH_CLUSTER, "prefix_rewrite": "/ready"},
        }
        listeners.append(_listener("health_status", ip, opts.health_port, route))
    return listeners


def status_clusters(opts: BootstrapOptions) -> list[dict[str, Any]]:
    """Admin-backed clusters the status listeners route to."""
    clusters = []
    if opts.stats_port:
        clusters.append(_admin_cluster(STATS_CLUSTER, opts.admin_port))
    if opts.health_port:
        clusters.append(_admin_cluster(HEALTH_CLUSTER, opts.admin_port))
    return clusters
