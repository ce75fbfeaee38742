"""Cluster plans: the outbound clusters one proxy gets, decided once and shared by the CDS
builder and the EDS path, so both always agree on names, subsets and discovery types."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshplane.api.networking.destination_rule import DestinationRuleSpec, Subset
from meshplane.model.scope import ProxyView
from meshplane.model.services import Service, ServicePort
from meshplane.translators.auto_passthrough import admitted_anywhere, auto_passthrough_servers
from meshplane.translators.mtls import MTLS_NONE, client_mtls, istio_sni
from meshplane.translators.names import config_path, outbound_cluster_name
from meshplane.translators.policies import ClusterPolicy, cluster_policy
from meshplane.translators.trust_domains import expand_spiffe_ids

EDS = "EDS"
STRICT_DNS = "STRICT_DNS"
LOGICAL_DNS = "LOGICAL_DNS"
ORIGINAL_DST = "ORIGINAL_DST"

# ServiceEntry resolution -> Envoy discovery type (istio cluster.go convertResolution).
_DISCOVERY_BY_RESOLUTION = {
    "STATIC": EDS,
    "DNS": STRICT_DNS,
    "DNS_ROUND_ROBIN": LOGICAL_DNS,
    "NONE": ORIGINAL_DST,
}

# Envoy has no UDP proxying in this control plane's scope: such ports get no cluster.
_UNROUTABLE_PROTOCOLS = frozenset({"UDP", "SCTP"})


@dataclass(frozen=True)
class ClusterPlan:
    """One outbound cluster: `outbound|PORT|SUBSET|HOST`."""

    name: str
    service: Service
    port: ServicePort
    subset: str
    policy: ClusterPolicy
    discovery: str
    subset_labels: Mapping[str, str] = field(default_factory=dict)
    # The DestinationRule that shaped it, as Istio's config path (istioctl's DESTINATION RULE).
    config: str = ""
    # Mesh mTLS to the endpoints (mtls.py: "", "auto" or "istio"), the SNI and peer SANs.
    mtls: str = MTLS_NONE
    sni: str = ""
    sans: tuple[str, ...] = ()


def routable(port: ServicePort) -> bool:
    """False for ports this control plane cannot proxy (UDP, SCTP)."""
    return port.protocol.upper() not in _UNROUTABLE_PROTOCOLS


def _discovery(service: Service, policy: ClusterPolicy) -> str:
    lb = policy.load_balancer
    if lb is not None and lb.simple == "PASSTHROUGH":
        # Istio: PASSTHROUGH sends to the caller's original destination, bypassing EDS.
        return ORIGINAL_DST
    return _DISCOVERY_BY_RESOLUTION.get(service.resolution.upper(), EDS)


def _plan(
    service: Service,
    port: ServicePort,
    dr: DestinationRuleSpec | None,
    subset: Subset | None,
    config: str = "",
) -> ClusterPlan:
    policy = cluster_policy(dr.traffic_policy if dr else None, subset, port.number)
    name = subset.name if subset else ""
    return ClusterPlan(
        name=outbound_cluster_name(port.number, service.hostname, name),
        service=service,
        port=port,
        subset=name,
        policy=policy,
        discovery=_discovery(service, policy),
        subset_labels=dict(subset.labels) if subset else {},
        config=config,
    )


def service_cluster_plans(
    service: Service, dr: DestinationRuleSpec | None, config: str = ""
) -> list[ClusterPlan]:
    """The default cluster and one per DestinationRule subset, for every port of `service`."""
    plans: list[ClusterPlan] = []
    for port in sorted(service.ports, key=lambda p: p.number):
        if not routable(port):
            continue
        plans.append(_plan(service, port, dr, None, config))
        for subset in dr.subsets if dr else ():
            plans.append(_plan(service, port, dr, subset, config))
    return plans


def outbound_cluster_plans(view: ProxyView) -> list[ClusterPlan]:
    """Every outbound cluster of `view`, sorted by name."""
    plans: list[ClusterPlan] = []
    for service in view.services:
        rule = view.destination_rules.get(service.hostname)
        if rule is None:
            plans.extend(service_cluster_plans(service, None))
            continue
        config = config_path(rule.namespace, "destination-rule", rule.name)
        plans.extend(service_cluster_plans(service, rule.spec, config))
    plans = [_with_mtls(view, p) for p in plans]
    if view.proxy_type == "router":
        plans.extend(sni_dnat_plans(view, plans))
    return sorted(plans, key=lambda p: p.name)


def sni_dnat_plans(view: ProxyView, plans: list[ClusterPlan]) -> list[ClusterPlan]:
    """A gateway's AUTO_PASSTHROUGH clusters (auto_passthrough.py): each admitted plan again
    under Istio's SNI name, without TLS (the client's own goes through)."""
    servers = auto_passthrough_servers(view.gateways)
    if not servers:
        return []
    return [
        dataclasses.replace(
            plan,
            name=istio_sni(plan.port.number, plan.subset, plan.service.hostname),
            policy=dataclasses.replace(plan.policy, tls=None),
            mtls=MTLS_NONE,
            sni="",
            sans=(),
        )
        for plan in plans
        if admitted_anywhere(servers, plan.service) and plan.discovery != ORIGINAL_DST
    ]


def _with_mtls(view: ProxyView, plan: ClusterPlan) -> ClusterPlan:
    tls = plan.policy.tls
    mode = client_mtls(view, plan.service, tls, plan.discovery == ORIGINAL_DST)
    if mode == MTLS_NONE:
        return plan
    host = plan.service.hostname
    sni = (tls.sni if tls else None) or istio_sni(plan.port.number, plan.subset, host)
    # Istio: the DestinationRule's SANs as written, else the service's accounts (its
    # workloads' SPIFFE IDs and a ServiceEntry's subjectAltNames) in every trust domain alias.
    accounts = (*plan.service.subject_alt_names, *view.service_identities.get(host, ()))
    sans = (tls.subject_alt_names if tls else ()) or expand_spiffe_ids(
        accounts, view.mesh.trust_domain_aliases
    )
    return dataclasses.replace(plan, mtls=mode, sni=sni, sans=sans)
