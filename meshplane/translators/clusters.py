"""Clusters (CDS): one per visible service port and DestinationRule subset, plus Istio's
fixed clusters (BlackHoleCluster, PassthroughCluster, InboundPassthroughCluster).

The discovery type follows the service's resolution (EDS, STRICT_DNS, LOGICAL_DNS,
ORIGINAL_DST; see plans.py). EDS clusters read their endpoints over ADS; DNS clusters carry
their (host name) endpoints inline, since Envoy resolves those itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.address_pb2 import BindConfig, SocketAddress
from envoy.config.core.v3.config_source_pb2 import (
    V3,
    AggregatedConfigSource,
    ConfigSource,
)
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import ProxyView
from meshplane.model.services import Endpoint
from meshplane.translators import cluster_policy as policy
from meshplane.translators.endpoints import cluster_load_assignment, plan_endpoints
from meshplane.translators.memo import TranslationMemo
from meshplane.translators.mtls import apply_client_mtls
from meshplane.translators.names import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_BIND,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
)
from meshplane.translators.plans import (
    EDS,
    LOGICAL_DNS,
    ORIGINAL_DST,
    STRICT_DNS,
    ClusterPlan,
    outbound_cluster_plans,
)
from meshplane.translators.protos import any_of, duration
from meshplane.translators.upstream_tls import upstream_transport_socket

_DISCOVERY_TYPES = {
    EDS: Cluster.EDS,
    STRICT_DNS: Cluster.STRICT_DNS,
    LOGICAL_DNS: Cluster.LOGICAL_DNS,
    ORIGINAL_DST: Cluster.ORIGINAL_DST,
}


def ads_config_source() -> ConfigSource:
    """Resources fetched over the proxy's one ADS stream, v3, without an initial-fetch
    timeout (Istio's choice: a proxy waits for its config rather than starting without)."""
    return ConfigSource(
        ads=AggregatedConfigSource(), initial_fetch_timeout=duration(0), resource_api_version=V3
    )


def eds_cluster_config(name: str) -> Cluster.EdsClusterConfig:
    return Cluster.EdsClusterConfig(service_name=name, eds_config=ads_config_source())


def dns_load_assignment(
    plan: ClusterPlan, endpoints: Mapping[str, tuple[Endpoint, ...]]
) -> ClusterLoadAssignment:
    """Inline endpoints of a DNS cluster. Without declared endpoints the host itself is
    resolved (Istio's behaviour); LOGICAL_DNS takes exactly one endpoint, as Envoy requires."""
    chosen = plan_endpoints(plan, endpoints.get(plan.service.hostname, ()))
    if not chosen and not plan.service.hostname.startswith("*"):
        port = plan.port.target_port or plan.port.number
        chosen = [Endpoint(plan.service.hostname, plan.port.number, plan.service.hostname, port)]
    if plan.discovery == LOGICAL_DNS:
        chosen = sorted(chosen, key=lambda e: (e.address, e.port))[:1]
    return cluster_load_assignment(plan.name, chosen)


def _apply_policy(cluster: Cluster, plan: ClusterPlan, mesh: MeshConfig) -> None:
    pool = plan.policy.connection_pool
    cluster.circuit_breakers.CopyFrom(policy.circuit_breakers(pool))
    keepalive = policy.upstream_connection_options(pool)
    if keepalive is not None:
        cluster.upstream_connection_options.CopyFrom(keepalive)
    http = policy.http_protocol_options(plan.port.protocol, pool)
    if http is not None:
        cluster.typed_extension_protocol_options[policy.HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(
            any_of(http)
        )
    outlier = plan.policy.outlier_detection
    if outlier is not None:
        cluster.outlier_detection.CopyFrom(policy.outlier_detection(outlier))
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
            policy.healthy_panic_threshold(outlier)
        )
    socket = upstream_transport_socket(
        plan.policy.tls, plan.service.hostname, mesh.system_ca_bundle
    )
    if socket is not None:
        cluster.transport_socket.CopyFrom(socket)
    apply_client_mtls(cluster, plan.mtls, sni=plan.sni, protocol=plan.port.protocol, sans=plan.sans)


def outbound_cluster(
    plan: ClusterPlan, mesh: MeshConfig, endpoints: Mapping[str, tuple[Endpoint, ...]]
) -> Cluster:
    """``outbound|PORT|SUBSET|HOST`` as its plan and DestinationRule say."""
    pool = plan.policy.connection_pool
    timeout = pool.tcp.connect_timeout if pool and pool.tcp else None
    cluster = Cluster(
        name=plan.name,
        type=_DISCOVERY_TYPES[plan.discovery],
        connect_timeout=duration(timeout if timeout is not None else mesh.connect_timeout),
    )
    if plan.discovery == ORIGINAL_DST:
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
    else:
        cluster.lb_policy = policy.lb_policy(plan.policy.load_balancer)
        ring = policy.ring_hash_lb_config(plan.policy.load_balancer)
        if ring is not None:
            cluster.ring_hash_lb_config.CopyFrom(ring)
    if plan.discovery == EDS:
        cluster.eds_cluster_config.CopyFrom(eds_cluster_config(plan.name))
    elif plan.discovery in (STRICT_DNS, LOGICAL_DNS):
        cluster.dns_lookup_family = Cluster.V4_ONLY
        cluster.load_assignment.CopyFrom(dns_load_assignment(plan, endpoints))
    _apply_policy(cluster, plan, mesh)
    _set_istio_metadata(cluster, plan)
    return cluster


def _set_istio_metadata(cluster: Cluster, plan: ClusterPlan) -> None:
    """Istio's `istio` filter metadata: the service behind the cluster and the
    DestinationRule that shaped it, which istioctl-style tools read back."""
    svc = plan.service
    istio = cluster.metadata.filter_metadata["istio"]
    istio.update(
        {"services": [{"host": svc.hostname, "name": svc.name, "namespace": svc.namespace}]}
    )
    if plan.config:
        istio.update({"config": plan.config})


def blackhole_cluster(mesh: MeshConfig) -> Cluster:
    """A STATIC cluster with no endpoints: whatever is routed here fails fast."""
    return Cluster(
        name=BLACKHOLE_CLUSTER, type=Cluster.STATIC, connect_timeout=duration(mesh.connect_timeout)
    )


def original_dst_cluster(name: str, mesh: MeshConfig, bind: str = "") -> Cluster:
    """Forward to the connection's original destination. `bind` sets the upstream source
    address (Istio binds inbound passthrough to 127.0.0.6 so iptables lets it through)."""
    cluster = Cluster(
        name=name,
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        connect_timeout=duration(mesh.connect_timeout),
    )
    if bind:
        cluster.upstream_bind_config.CopyFrom(
            BindConfig(source_address=SocketAddress(address=bind, port_value=0))
        )
    return cluster


def passthrough_cluster(mesh: MeshConfig) -> Cluster:
    return original_dst_cluster(PASSTHROUGH_CLUSTER, mesh)


def inbound_passthrough_cluster(mesh: MeshConfig) -> Cluster:
    return original_dst_cluster(INBOUND_PASSTHROUGH_CLUSTER, mesh, INBOUND_PASSTHROUGH_BIND)


def _memo_cluster(plan: ClusterPlan, view: ProxyView, memo: TranslationMemo) -> Cluster:
    def build() -> Cluster:
        return outbound_cluster(plan, view.mesh, view.endpoints)

    # A cluster is a function of its plan (service, port, subset, policy, discovery) and the
    # mesh config; DNS clusters carry their endpoints inline, so those join the key.
    inline = plan.discovery in (STRICT_DNS, LOGICAL_DNS)
    endpoints = view.endpoints.get(plan.service.hostname, ()) if inline else ()
    return memo.get(("cds", plan.name), (plan, view.mesh, endpoints), build)


def outbound_clusters(view: ProxyView, memo: TranslationMemo | None = None) -> list[Cluster]:
    """Every service cluster of `view` plus BlackHoleCluster and PassthroughCluster.
    With a `memo`, clusters whose inputs did not change are reused as built."""
    plans = outbound_cluster_plans(view)
    if memo is None:
        clusters = [outbound_cluster(p, view.mesh, view.endpoints) for p in plans]
    else:
        clusters = [_memo_cluster(p, view, memo) for p in plans]
    return [*clusters, blackhole_cluster(view.mesh), passthrough_cluster(view.mesh)]
