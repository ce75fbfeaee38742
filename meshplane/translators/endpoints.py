"""ClusterLoadAssignments: endpoints of EDS clusters, buildable on their own.

Endpoint-only changes (pods scaling, readiness flips) are the most frequent event in a mesh;
Contour and Istio push EDS alone for them. `cluster_load_assignments(view)` is that path: it
reads only the view's services, rules and endpoints and builds no listeners or routes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from envoy.config.core.v3.base_pb2 import Locality
from envoy.config.core.v3.health_check_pb2 import HEALTHY
from envoy.config.endpoint.v3.endpoint_components_pb2 import (
    Endpoint as EnvoyEndpoint,
)
from envoy.config.endpoint.v3.endpoint_components_pb2 import (
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from meshplane.model.scope import ProxyView
from meshplane.model.services import Endpoint
from meshplane.translators.endpoint_mtls import EndpointMtls
from meshplane.translators.memo import TranslationMemo
from meshplane.translators.mtls import TLS_MODE_LABEL, TRANSPORT_SOCKET_MATCH
from meshplane.translators.plans import EDS, ClusterPlan, outbound_cluster_plans
from meshplane.translators.protos import socket_address, u32


def plan_endpoints(plan: ClusterPlan, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints behind `plan`: its service port, its subset's labels, healthy only.

    Unhealthy endpoints are left out, as Istio does by default
    (PILOT_SEND_UNHEALTHY_ENDPOINTS=false): sent as UNHEALTHY they would still receive
    traffic whenever Envoy's panic threshold trips.
    """
    labels = plan.subset_labels.items()
    return [
        e
        for e in endpoints
        if e.service_port == plan.port.number
        and e.healthy
        and all(e.labels.get(k) == v for k, v in labels)
    ]


def locality(name: str) -> Locality:
    """Istio's ``region/zone/subzone`` locality string as an Envoy Locality."""
    region, zone, sub_zone = ([*name.split("/", 2), "", ""])[:3]
    return Locality(region=region, zone=zone, sub_zone=sub_zone)


def lb_endpoint(endpoint: Endpoint, istio: bool | None = None) -> LbEndpoint:
    """`istio`: whether auto mTLS uses mTLS to it (endpoint_mtls.py); None: its tlsMode
    label decides (no policy known)."""
    result = LbEndpoint(
        endpoint=EnvoyEndpoint(address=socket_address(endpoint.address, endpoint.port)),
        health_status=HEALTHY,
        # Envoy rejects weight 0; ServiceEntry uses 0 for "unset".
        load_balancing_weight=u32(max(endpoint.weight, 1)),
    )
    # Endpoints running a sidecar: auto mTLS clusters pick their Istio mTLS socket by this.
    if istio is None:
        istio = endpoint.labels.get(TLS_MODE_LABEL) == "istio"
    if istio:
        result.metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].update({"tlsMode": "istio"})
    return result


def locality_lb_endpoints(
    endpoints: Sequence[Endpoint], istio: Sequence[bool] | None = None
) -> list[LocalityLbEndpoints]:
    """Endpoints grouped by locality, localities and endpoints in a stable order; `istio`
    (one per endpoint) says which get the tlsMode metadata (default: their label)."""
    flags: Sequence[bool | None] = istio if istio is not None else [None] * len(endpoints)
    groups: dict[str, list[tuple[Endpoint, bool | None]]] = {}
    for e, flag in zip(endpoints, flags, strict=True):
        groups.setdefault(e.locality, []).append((e, flag))
    result = []
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda m: (m[0].address, m[0].port))
        result.append(
            LocalityLbEndpoints(
                locality=locality(name),
                lb_endpoints=[lb_endpoint(e, flag) for e, flag in members],
                load_balancing_weight=u32(sum(max(e.weight, 1) for e, _ in members)),
            )
        )
    return result


def cluster_load_assignment(
    name: str, endpoints: Sequence[Endpoint], istio: Sequence[bool] | None = None
) -> ClusterLoadAssignment:
    return ClusterLoadAssignment(
        cluster_name=name, endpoints=locality_lb_endpoints(endpoints, istio)
    )


def _chosen(
    plan: ClusterPlan, view: ProxyView, mtls: EndpointMtls
) -> tuple[list[Endpoint], tuple[bool, ...]]:
    chosen = plan_endpoints(plan, view.endpoints.get(plan.service.hostname, ()))
    host = plan.service.hostname
    return chosen, tuple(mtls.istio(host, e) for e in chosen)


def plan_load_assignment(plan: ClusterPlan, view: ProxyView) -> ClusterLoadAssignment:
    """The assignment for one cluster plan of `view`."""
    chosen, istio = _chosen(plan, view, EndpointMtls(view))
    return cluster_load_assignment(plan.name, chosen, istio)


def _memo_load_assignment(
    plan: ClusterPlan, view: ProxyView, memo: TranslationMemo, mtls: EndpointMtls
) -> ClusterLoadAssignment:
    # An assignment is its name (the slot), the endpoints chosen for it, compared by
    # content, and which of them get mTLS (their PeerAuthentication and DestinationRule
    # decide): an edit to another subset's endpoints keeps this one as built.
    chosen, istio = _chosen(plan, view, mtls)
    return memo.get(
        ("eds", plan.name),
        (tuple(chosen), istio),
        lambda: cluster_load_assignment(plan.name, chosen, istio),
    )


def cluster_load_assignments(
    view: ProxyView,
    memo: TranslationMemo | None = None,
    hosts: Collection[str] | None = None,
) -> dict[str, ClusterLoadAssignment]:
    """One ClusterLoadAssignment per EDS cluster of `view`, keyed (and ordered) by name.

    `hosts` limits the result to the clusters of those service hosts (an endpoint-only push
    rebuilds just those); with a `memo`, assignments whose inputs did not change are reused.
    """
    plans = [
        p
        for p in outbound_cluster_plans(view)
        if p.discovery == EDS and (hosts is None or p.service.hostname in hosts)
    ]
    mtls = EndpointMtls(view)
    if memo is None:
        return {p.name: _assignment(p, view, mtls) for p in plans}
    return {p.name: _memo_load_assignment(p, view, memo, mtls) for p in plans}


def _assignment(plan: ClusterPlan, view: ProxyView, mtls: EndpointMtls) -> ClusterLoadAssignment:
    chosen, istio = _chosen(plan, view, mtls)
    return cluster_load_assignment(plan.name, chosen, istio)
