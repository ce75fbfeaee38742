"""Endpoint builders: how Pods, EndpointSlices and WorkloadEntries become Endpoints of a Service.

Pure functions over typed objects; the registry decides which ones to call and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshplane.api.core.types import EndpointSliceSpec, PodSpec, ServicePortSpec
from meshplane.api.meta import Object
from meshplane.api.networking.service_entry import WorkloadEntrySpec
from meshplane.model.services import Endpoint, Service, ServicePort

# Istio's pod label for locality ("region.zone.subzone").
LOCALITY_LABEL = "istio-locality"
# Istio's endpoint label for "this workload runs a sidecar, speak Istio mTLS to it"; the
# injector's status annotation implies it (auto mTLS reads it off the endpoint).
TLS_MODE_LABEL = "security.istio.io/tlsMode"
SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Kubernetes equality selector: every selector label present with the same value."""
    return all(labels.get(k) == v for k, v in selector.items())


def sort_endpoints(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(sorted(endpoints, key=lambda e: (e.service_port, e.address, e.port, e.workload)))


def workload_entry_labels(we: Object[WorkloadEntrySpec]) -> dict[str, str]:
    """Labels a WorkloadEntry is selected by: metadata labels overridden by spec labels
    (plus the tlsMode label when annotated as running a sidecar)."""
    labels = {**we.meta.labels, **we.spec.labels}
    if SIDECAR_STATUS_ANNOTATION in we.meta.annotations:
        labels.setdefault(TLS_MODE_LABEL, "istio")
    return labels


def pod_labels(pod: Object[PodSpec]) -> dict[str, str]:
    """A pod's labels, plus ``security.istio.io/tlsMode: istio`` when it was injected."""
    labels = dict(pod.meta.labels)
    if SIDECAR_STATUS_ANNOTATION in pod.meta.annotations:
        labels.setdefault(TLS_MODE_LABEL, "istio")
    return labels


def _pod_locality(pod: Object[PodSpec]) -> str:
    return pod.meta.labels.get(LOCALITY_LABEL, "").replace(".", "/")


def from_slices(
    service: Service,
    slices: Iterable[Object[EndpointSliceSpec]],
    pods: Mapping[str, Object[PodSpec]],
) -> tuple[list[Endpoint], set[str]]:
    """Endpoints of a Kubernetes Service from its EndpointSlices (ports matched by name),
    and the names of the Pods they reference (whose labels and identity they carry)."""
    by_name = {p.name: p for p in service.ports}
    out: list[Endpoint] = []
    used_pods: set[str] = set()
    for es in slices:
        for ep in es.spec.endpoints:
            if not ep.addresses:
                continue
            pod = None
            if ep.target_ref is not None and ep.target_ref.kind == "Pod":
                used_pods.add(ep.target_ref.name)
                pod = pods.get(ep.target_ref.name)
            for sp in es.spec.ports:
                svc_port = by_name.get(sp.name)
                if svc_port is None:
                    continue
                out.append(
                    Endpoint(
                        hostname=service.hostname,
                        service_port=svc_port.number,
                        address=ep.addresses[0],  # Kubernetes: consumers use the first
                        port=sp.port,
                        labels=pod_labels(pod) if pod else {},
                        namespace=es.namespace,
                        service_account=pod.spec.service_account if pod else "",
                        locality=_pod_locality(pod) if pod else "",
                        healthy=ep.ready,
                        workload=ep.target_ref.name if ep.target_ref else "",
                    )
                )
    return out, used_pods


def pod_port(port: ServicePortSpec, pod: PodSpec) -> int | None:
    """Where a pod serves a Kubernetes service port (named targetPorts via container ports)."""
    if isinstance(port.target_port, str):
        return pod.named_ports.get(port.target_port)
    return port.target_port or port.port


def from_pods(
    service: Service,
    ports: Iterable[ServicePortSpec],
    selector: Mapping[str, str],
    pods: Iterable[Object[PodSpec]],
) -> list[Endpoint]:
    """Endpoints from the running Pods a selector matches (a Service with no EndpointSlice,
    as with a config directory, or a ServiceEntry's workloadSelector)."""
    out: list[Endpoint] = []
    port_list = list(ports)
    for pod in pods:
        spec = pod.spec
        if (
            not spec.ip
            or spec.phase in ("Succeeded", "Failed")
            or not selects(selector, pod.meta.labels)
        ):
            continue
        for port in port_list:
            target = pod_port(port, spec)
            if target is None:
                continue
            out.append(
                Endpoint(
                    hostname=service.hostname,
                    service_port=port.port,
                    address=spec.ip,
                    port=target,
                    labels=pod_labels(pod),
                    namespace=pod.namespace,
                    service_account=spec.service_account,
                    locality=_pod_locality(pod),
                    healthy=spec.phase == "Running",
                    workload=pod.name,
                )
            )
    return out


def from_workload_entry(
    service: Service,
    we: WorkloadEntrySpec,
    *,
    namespace: str,
    labels: Mapping[str, str],
    workload: str = "",
) -> list[Endpoint]:
    """One Endpoint per service port; the entry's `ports` map (by port name) overrides the
    target port, as Istio does."""
    if not we.address:
        return []
    return [
        Endpoint(
            hostname=service.hostname,
            service_port=port.number,
            address=we.address,
            port=we.ports.get(port.name) or port.target_port or port.number,
            labels=dict(labels),
            namespace=namespace,
            service_account=we.service_account or "default",
            locality=we.locality,
            weight=we.weight or 1,
            workload=workload,
        )
        for port in service.ports
    ]


def from_selected_entries(
    service: Service,
    selector: Mapping[str, str],
    entries: Iterable[Object[WorkloadEntrySpec]],
) -> list[Endpoint]:
    out: list[Endpoint] = []
    for we in entries:
        labels = workload_entry_labels(we)
        if selects(selector, labels):
            out.extend(
                from_workload_entry(
                    service, we.spec, namespace=we.namespace, labels=labels, workload=we.name
                )
            )
    return out


def dns_endpoints(service: Service, address: str) -> list[Endpoint]:
    """DNS resolution with no endpoints: the name itself is resolved by Envoy."""
    return [
        Endpoint(
            hostname=service.hostname,
            service_port=port.number,
            address=address,
            port=port.target_port or port.number,
            namespace=service.namespace,
        )
        for port in service.ports
    ]


def service_port_of(ports: Iterable[ServicePort], number: int) -> ServicePort | None:
    return next((p for p in ports if p.number == number), None)
