"""Which DestinationRule traffic policy applies to one cluster (service port, subset).

Istio's precedence (MergeTrafficPolicy in pilot/pkg/networking/core/cluster_traffic_policy):
the top-level policy, or its port-level settings for this port instead; then each section a
subset's policy sets replaces the merged one; then the subset's own port-level settings for
this port replace all four sections. Port-level settings never inherit: a section they leave
out means the default, as Istio's docs say.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshplane.api.networking.destination_rule import (
    ClientTLS,
    ConnectionPool,
    LoadBalancer,
    OutlierDetection,
    PortTrafficPolicy,
    Subset,
    TrafficPolicy,
)


@dataclass(frozen=True)
class ClusterPolicy:
    """The four sections of a traffic policy that shape one cluster."""

    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None


NO_POLICY = ClusterPolicy()


def _port_settings(policy: TrafficPolicy | None, port: int) -> PortTrafficPolicy | None:
    if policy is None:
        return None
    return next((p for p in policy.port_level_settings if p.port == port), None)


def _from_port_settings(settings: PortTrafficPolicy) -> ClusterPolicy:
    return ClusterPolicy(
        settings.load_balancer, settings.connection_pool, settings.outlier_detection, settings.tls
    )


def _top_level(policy: TrafficPolicy | None, port: int) -> ClusterPolicy:
    if policy is None:
        return NO_POLICY
    merged = ClusterPolicy(
        policy.load_balancer, policy.connection_pool, policy.outlier_detection, policy.tls
    )
    settings = _port_settings(policy, port)
    return _from_port_settings(settings) if settings else merged


def cluster_policy(top: TrafficPolicy | None, subset: Subset | None, port: int) -> ClusterPolicy:
    """The effective policy for `port` (and `subset`, if any) of a DestinationRule."""
    merged = _top_level(top, port)
    sub = subset.traffic_policy if subset else None
    if sub is None:
        return merged
    merged = ClusterPolicy(
        sub.load_balancer or merged.load_balancer,
        sub.connection_pool or merged.connection_pool,
        sub.outlier_detection or merged.outlier_detection,
        sub.tls or merged.tls,
    )
    settings = _port_settings(sub, port)
    return _from_port_settings(settings) if settings else merged
